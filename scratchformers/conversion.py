"""Weight and config mapping between scratchformers and transformers' native GPT-2 and Llama classes.

Our parameter names are the native ones, so the mapping is small and explicit:
- GPT <-> `GPT2LMHeadModel`: same keys; the native `Conv1D` stores weights as (in, out), `nn.Linear` as (out, in),
  so every `c_attn`, `c_proj` and `c_fc` weight is transposed. Square matrices would load without error if we
  forgot, and give wrong outputs, hence the explicit list.
- LLaMA2 <-> `LlamaForCausalLM`: same keys, same layouts.
Every load is strict: a missing, unexpected or mis-shaped tensor raises a `ValueError` naming it.
"""

import copy
import re

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from .configuration_gpt import GPTConfig
from .configuration_llama2 import Llama2Config
from .modeling_gpt import GPTForCausalLM
from .modeling_llama2 import Llama2ForCausalLM

# native GPT-2 Conv1D weights, stored transposed relative to nn.Linear
_GPT2_CONV1D_WEIGHT = re.compile(r"(^|\.)h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")
# buffers that old GPT-2 checkpoints carry and no model needs
_GPT2_IGNORED = re.compile(r"\.attn\.(bias|masked_bias)$")


def gpt2_native_keys(state_dict: dict) -> dict:
    """A native GPT-2 checkpoint's tensors as `GPT2LMHeadModel` names them: old causal-mask buffers dropped, and the
    `transformer.` prefix added where checkpoints saved from `GPT2Model` (e.g. the original `gpt2` upload) lack it."""
    state_dict = {key: value for key, value in state_dict.items() if not _GPT2_IGNORED.search(key)}
    if any(key.startswith("transformer.") for key in state_dict):
        return state_dict
    return {(key if key.startswith("lm_head.") else f"transformer.{key}"): value for key, value in state_dict.items()}

_SHARED_FIELDS = ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id", "initializer_range",
                  "tie_word_embeddings")


def _common(config, extra=()):
    return {name: getattr(config, name) for name in _SHARED_FIELDS + tuple(extra)}


# GPT-2's own names of our GPT fields, from GPTConfig.attribute_map (n_ctx is a second name of n_positions)
_GPT2_NAMES = {gpt2: ours for gpt2, ours in GPTConfig.attribute_map.items() if gpt2 != "n_ctx"}


def gpt_config_to_gpt2(config: GPTConfig) -> GPT2Config:
    """Our `GPTConfig` as transformers' `GPT2Config` (same architecture)."""
    return GPT2Config(**{gpt2: getattr(config, ours) for gpt2, ours in _GPT2_NAMES.items()}, **_common(config))


def gpt2_config_to_gpt(config: GPT2Config) -> GPTConfig:
    """transformers' `GPT2Config` as our `GPTConfig`; refuses GPT-2 options our model does not implement."""
    unsupported = {
        "add_cross_attention": False,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "scale_attn_weights": True,
    }
    for name, supported in unsupported.items():
        if getattr(config, name, supported) != supported:
            raise ValueError(f"GPT2Config.{name}={getattr(config, name)!r} is not supported by scratchformers' GPT.")
    return GPTConfig(**{ours: getattr(config, gpt2) for gpt2, ours in _GPT2_NAMES.items()}, **_common(config))


# the fields Llama2Config and LlamaConfig share, under the same names (the point of HF-standard names)
_LLAMA_FIELDS = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
    "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_parameters", "attention_bias", "mlp_bias",
    "attention_dropout",
)


def _llama_fields(config) -> dict:
    return {name: copy.deepcopy(getattr(config, name)) for name in _LLAMA_FIELDS}


def llama2_config_to_llama(config: Llama2Config) -> LlamaConfig:
    """Our `Llama2Config` as transformers' `LlamaConfig` (`hidden_dropout`, a training-only regulariser that native
    Llama lacks, is left out: inference is the same)."""
    return LlamaConfig(**_llama_fields(config), **_common(config))


def llama_config_to_llama2(config: LlamaConfig) -> Llama2Config:
    """transformers' `LlamaConfig` as our `Llama2Config`, RoPE scaling included."""
    return Llama2Config(**_llama_fields(config), **_common(config))


def gpt2_state_dict_to_gpt(state_dict: dict) -> dict:
    """Native GPT-2 tensors -> ours: drop the old causal-mask buffers, transpose the Conv1D weights."""
    return {
        key: (value.t().contiguous() if _GPT2_CONV1D_WEIGHT.search(key) else value)
        for key, value in state_dict.items()
        if not _GPT2_IGNORED.search(key)
    }


def gpt_state_dict_to_gpt2(state_dict: dict) -> dict:
    """Our GPT tensors -> native GPT-2 (`Conv1D` layout)."""
    return {key: (value.t().contiguous() if _GPT2_CONV1D_WEIGHT.search(key) else value)
            for key, value in state_dict.items()}


def load_state_dict_strict(model: torch.nn.Module, state_dict: dict) -> None:
    """Copy `state_dict` into `model`, raising a `ValueError` that names every missing, unknown or mis-shaped key.

    Tied weights may be absent from `state_dict` (checkpoints store them once).
    严格加载权重：缺失、多余或形状不符的键都会报错并列出名称，绝不静默地部分加载。
    """
    expected = model.state_dict()
    tied = set(getattr(model, "all_tied_weights_keys", None) or {}) if model.config.tie_word_embeddings else set()
    missing = sorted(set(expected) - set(state_dict) - tied)
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(state_dict))
        if state_dict[key].shape != expected[key].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {'; '.join(mismatched)}")
    if problems:
        raise ValueError(f"Cannot load weights into {type(model).__name__}: " + " | ".join(problems))
    model.load_state_dict(state_dict, strict=False)
    if model.config.tie_word_embeddings:
        model.tie_weights()


def gpt_from_gpt2(native: GPT2LMHeadModel) -> GPTForCausalLM:
    """Our `GPTForCausalLM` with the weights of a transformers `GPT2LMHeadModel`.

    把 transformers 的 GPT2LMHeadModel 权重转换为本包的 GPTForCausalLM（Conv1D 权重转置）。
    """
    model = GPTForCausalLM(gpt2_config_to_gpt(native.config)).to(native.dtype)
    load_state_dict_strict(model, gpt2_state_dict_to_gpt(native.state_dict()))
    return model.eval()


def gpt_to_gpt2(model: GPTForCausalLM) -> GPT2LMHeadModel:
    """A transformers `GPT2LMHeadModel` with the weights of our `GPTForCausalLM`."""
    native = GPT2LMHeadModel(gpt_config_to_gpt2(model.config)).to(model.dtype)
    load_state_dict_strict(native, gpt_state_dict_to_gpt2(model.state_dict()))
    return native.eval()


def llama2_from_llama(native: LlamaForCausalLM) -> Llama2ForCausalLM:
    """Our `Llama2ForCausalLM` with the weights of a transformers `LlamaForCausalLM` (same names and layouts).

    把 transformers 的 LlamaForCausalLM 权重转换为本包的 Llama2ForCausalLM（名称与布局相同）。
    """
    model = Llama2ForCausalLM(llama_config_to_llama2(native.config)).to(native.dtype)
    load_state_dict_strict(model, dict(native.state_dict()))
    return model.eval()


def llama2_to_llama(model: Llama2ForCausalLM) -> LlamaForCausalLM:
    """A transformers `LlamaForCausalLM` with the weights of our `Llama2ForCausalLM`."""
    native = LlamaForCausalLM(llama2_config_to_llama(model.config)).to(model.dtype)
    load_state_dict_strict(native, dict(model.state_dict()))
    return native.eval()


__all__ = [
    "gpt_config_to_gpt2",
    "gpt2_config_to_gpt",
    "llama2_config_to_llama",
    "llama_config_to_llama2",
    "gpt2_state_dict_to_gpt",
    "gpt_state_dict_to_gpt2",
    "load_state_dict_strict",
    "gpt_from_gpt2",
    "gpt_to_gpt2",
    "llama2_from_llama",
    "llama2_to_llama",
]

"""Weight and config mapping between scratchformers and transformers' native GPT-2, Llama and BERT classes.

Our parameter names are the native ones, so the mapping is small and explicit:
- GPT <-> `GPT2LMHeadModel`: same keys; the native `Conv1D` stores weights as (in, out), `nn.Linear` as (out, in),
  so every `c_attn`, `c_proj` and `c_fc` weight is transposed. Square matrices would load without error if we
  forgot, and give wrong outputs, hence the explicit list.
- LLaMA2 <-> `LlamaForCausalLM`: same keys, same layouts.
- BERT <-> `BertForMaskedLM` (and `BertModel`, `BertFor{Sequence,Token}Classification`): same layouts, flatter
  names (`bert.layers.0.attention.query` <-> `bert.encoder.layer.0.attention.self.query`), one regex per module.
Every load is strict: a missing, unexpected or mis-shaped tensor raises a `ValueError` naming it.
"""

import copy
import re

import torch
from transformers import BertConfig as NativeBertConfig
from transformers import BertForMaskedLM as NativeBertForMaskedLM
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from .configuration_bert import BertConfig
from .configuration_gpt import GPTConfig
from .configuration_llama2 import Llama2Config
from .modeling_bert import BertForMaskedLM
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
    Llama lacks, is left out: inference is the same). Refuses the speedrun options native Llama does not have."""
    if config.non_llama_options:
        options = ", ".join(f"{name}={value!r}" for name, value in config.non_llama_options.items())
        raise ValueError(
            f"transformers' LlamaForCausalLM has no {options}: this model loads with scratchformers' code only "
            "(AutoModelForCausalLM with trust_remote_code=True)"
        )
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


# native BERT name prefix -> ours ({i} is a layer number)
_BERT_NAMES = [
    ("bert.embeddings.LayerNorm.", "bert.embeddings.norm."),
    ("bert.encoder.layer.{i}.attention.self.", "bert.layers.{i}.attention."),
    ("bert.encoder.layer.{i}.attention.output.dense.", "bert.layers.{i}.attention.dense."),
    ("bert.encoder.layer.{i}.attention.output.LayerNorm.", "bert.layers.{i}.attention_norm."),
    ("bert.encoder.layer.{i}.intermediate.dense.", "bert.layers.{i}.intermediate."),
    ("bert.encoder.layer.{i}.output.dense.", "bert.layers.{i}.output."),
    ("bert.encoder.layer.{i}.output.LayerNorm.", "bert.layers.{i}.output_norm."),
    ("cls.predictions.transform.dense.", "mlm_head.dense."),
    ("cls.predictions.transform.LayerNorm.", "mlm_head.norm."),
    ("cls.predictions.decoder.weight", "mlm_head.decoder.weight"),
    ("cls.predictions.bias", "mlm_head.decoder.bias"),
]
# what native BERT checkpoints hold and no scratchformers head has: the next-sentence head, a second copy of the tied
# decoder bias, and the old position/token-type id buffers
_BERT_IGNORED = re.compile(r"^cls\.seq_relationship\.|^cls\.predictions\.decoder\.bias$|\.(position_ids|token_type_ids)$")


def _rename(key: str, pairs) -> str:
    """`key` with the first matching prefix of `pairs` (source, target) replaced; the longest sources are tried
    first, so `...attention.dense.` wins over `...attention.`."""
    for source, target in sorted(pairs, key=lambda pair: -len(pair[0])):
        match = re.match(re.escape(source).replace(re.escape("{i}"), r"(\d+)"), key)
        if match:
            return target.replace("{i}", match.group(1) if match.groups() else "") + key[match.end():]
    return key


def _rename_all(state_dict: dict, pairs) -> dict:
    """Every key renamed by `_rename`; the tensors of a bare base model (no `bert.` prefix) keep having none."""
    bare = not any(key.startswith(("bert.", "cls.", "mlm_head.", "classifier.")) for key in state_dict)
    renamed = {}
    for key, value in state_dict.items():
        new = _rename(f"bert.{key}" if bare else key, pairs)
        renamed[new.removeprefix("bert.") if bare else new] = value
    return renamed


def bert_state_dict_from_native(state_dict: dict) -> dict:
    """Native BERT tensors (`BertModel`, `BertForMaskedLM`, `BertFor*Classification`) -> ours: renamed, the
    next-sentence head and duplicate buffers dropped."""
    return _rename_all({key: value for key, value in state_dict.items() if not _BERT_IGNORED.search(key)}, _BERT_NAMES)


def bert_native_keys(state_dict: dict) -> dict:
    """A native BERT checkpoint's tensors as `BertForMaskedLM` names them: the `bert.` prefix added where it was
    saved from `BertModel`, and what `BertForMaskedLM` has no place for dropped (the pooler and the next-sentence
    head of `BertForPreTraining` checkpoints such as the original uploads, old id buffers, the duplicate bias)."""
    if not any(key.startswith(("bert.", "cls.")) for key in state_dict):
        state_dict = {f"bert.{key}": value for key, value in state_dict.items()}
    return {key: value for key, value in state_dict.items()
            if not (_BERT_IGNORED.search(key) or key.startswith("bert.pooler."))}


def bert_state_dict_to_native(state_dict: dict) -> dict:
    """Our BERT tensors -> native names (the MLM decoder bias under both of its native names)."""
    native = _rename_all(state_dict, [(ours, theirs) for theirs, ours in _BERT_NAMES])
    if "cls.predictions.bias" in native:
        native["cls.predictions.decoder.bias"] = native["cls.predictions.bias"]
    return native


_BERT_FIELDS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout", "max_position_embeddings",
    "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id", "tie_word_embeddings",
)


def _label_fields(config) -> dict:
    return dict(id2label=dict(config.id2label), label2id=dict(config.label2id), problem_type=config.problem_type)


def bert_config_to_native(config: BertConfig) -> NativeBertConfig:
    """Our `BertConfig` as transformers' `BertConfig` (the same field names)."""
    return NativeBertConfig(**{name: getattr(config, name) for name in _BERT_FIELDS}, **_label_fields(config))


def native_config_to_bert(config: NativeBertConfig) -> BertConfig:
    """transformers' `BertConfig` as ours; refuses what our encoder does not implement (decoder use, cross-attention,
    relative position embeddings of old configs)."""
    for name, supported in {"is_decoder": False, "add_cross_attention": False}.items():
        if getattr(config, name, supported) != supported:
            raise ValueError(f"BertConfig.{name}={getattr(config, name)!r} is not supported by scratchformers' BERT "
                             "(an encoder only).")
    position_type = getattr(config, "position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ValueError(f"BertConfig.position_embedding_type={position_type!r} is not supported by scratchformers' "
                         "BERT (learned absolute positions only).")
    return BertConfig(**{name: getattr(config, name) for name in _BERT_FIELDS}, **_label_fields(config))


def bert_from_native(native, model_class=BertForMaskedLM):
    """Our BERT (`model_class`, default `BertForMaskedLM`) with the weights of a transformers BERT model.

    把 transformers 的 BERT 权重（BertForMaskedLM / BertModel / 分类模型）转换为本包对应的模型（仅改名，布局相同）。
    """
    model = model_class(native_config_to_bert(native.config)).to(native.dtype)
    load_state_dict_strict(model, bert_state_dict_from_native(native.state_dict()))
    return model.eval()


def bert_to_native(model, native_class=NativeBertForMaskedLM):
    """A transformers BERT model (`native_class`, default `BertForMaskedLM`) with the weights of ours. Native BERT
    pools [CLS] only: a model with `classifier_pooling="mean"` converts to the heads that do not pool."""
    if model.config.classifier_pooling != "cls" and native_class.__name__ in ("BertModel", "BertForSequenceClassification"):
        raise ValueError(f"BertConfig.classifier_pooling={model.config.classifier_pooling!r} has no native BERT "
                         f"counterpart for {native_class.__name__} (it pools the [CLS] token); keep this model in "
                         "scratchformers' classes")
    native = native_class(bert_config_to_native(model.config)).to(model.dtype)
    load_state_dict_strict(native, bert_state_dict_to_native(model.state_dict()))
    return native.eval()


__all__ = [
    "bert_config_to_native",
    "native_config_to_bert",
    "bert_state_dict_from_native",
    "bert_native_keys",
    "bert_state_dict_to_native",
    "bert_from_native",
    "bert_to_native",
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

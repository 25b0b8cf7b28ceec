"""Configuration of the LLaMA-2 style model (RMSNorm, RoPE, grouped-query attention, SwiGLU).

This file imports only `transformers` and a sibling file, so `save_pretrained` ships it next to a checkpoint as
remote code.
"""

from huggingface_hub.dataclasses import strict
from transformers import PretrainedConfig
from transformers.activations import ACT2FN

from .configuration_common import check_config_keys

# name -> overrides of the defaults below; the defaults themselves are Llama-2-7B.
LLAMA2_PRESETS = {
    "llama2-tiny": dict(num_hidden_layers=4, hidden_size=128, num_attention_heads=4, num_key_value_heads=2,
                        intermediate_size=384, max_position_embeddings=256),
    "llama2-mini": dict(num_hidden_layers=6, hidden_size=384, num_attention_heads=6, num_key_value_heads=2,
                        intermediate_size=1024, max_position_embeddings=512),
    "llama2-small": dict(num_hidden_layers=8, hidden_size=512, num_attention_heads=8, num_key_value_heads=4,
                         intermediate_size=1376, max_position_embeddings=1024),
    "llama2-7b": dict(num_hidden_layers=32, hidden_size=4096, num_attention_heads=32, num_key_value_heads=32,
                      intermediate_size=11008),
    "llama2-13b": dict(num_hidden_layers=40, hidden_size=5120, num_attention_heads=40, num_key_value_heads=40,
                       intermediate_size=13824),
    "llama2-70b": dict(num_hidden_layers=80, hidden_size=8192, num_attention_heads=64, num_key_value_heads=8,
                       intermediate_size=28672),
}


@strict
class Llama2Config(PretrainedConfig):
    """LLaMA-2 style decoder configuration with the field names of transformers' `LlamaConfig`.

    ```python
    >>> from scratchformers import Llama2Config
    >>> config = Llama2Config.from_preset("llama2-70b")
    >>> config.num_attention_heads // config.num_key_value_heads  # GQA: 8 query heads share one K/V head
    8
    ```
    """

    model_type = "scratch_llama2"
    default_theta = 10000.0
    # how transformers may split the base model's weights over devices (tensor / pipeline parallel), as for Llama
    base_model_tp_plan = {
        "layers.*.self_attn.q_proj": "colwise",
        "layers.*.self_attn.k_proj": "colwise",
        "layers.*.self_attn.v_proj": "colwise",
        "layers.*.self_attn.o_proj": "rowwise",
        "layers.*.mlp.gate_proj": "colwise",
        "layers.*.mlp.up_proj": "colwise",
        "layers.*.mlp.down_proj": "rowwise",
    }
    base_model_pp_plan = {
        "embed_tokens": (["input_ids"], ["inputs_embeds"]),
        "layers": (["hidden_states", "attention_mask"], ["hidden_states"]),
        "norm": (["hidden_states"], ["hidden_states"]),
    }

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None  # None -> num_attention_heads (plain multi-head attention)
    head_dim: int | None = None  # None -> hidden_size // num_attention_heads
    hidden_act: str = "silu"
    max_position_embeddings: int = 4096
    # RoPE as transformers' `LlamaConfig` takes it: {"rope_type": "default", "rope_theta": 10000.0}, or a scaled RoPE
    # ("linear", "dynamic", "yarn", "llama3" with their keys, e.g. "factor"). `rope_theta=...` alone still works.
    rope_parameters: dict | None = None
    rms_norm_eps: float = 1e-5
    attention_bias: bool = False
    mlp_bias: bool = False
    attention_dropout: float | int = 0.0
    # dropout on each block's attention and MLP outputs before they join the residual stream (GPT-2's resid_pdrop);
    # native Llama has none. A regulariser for small models trained for many epochs on a small corpus.
    hidden_dropout: float | int = 0.0
    initializer_range: float = 0.02
    use_cache: bool = True
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    pad_token_id: int | None = None
    tie_word_embeddings: bool = False
    # Options from the modded-nanogpt speedruns, all off by default (native Llama has none of them; a model that
    # uses one loads with our code only, so conversion to `LlamaForCausalLM` and GGUF export refuse it):
    # RMSNorm on each head's queries and keys before RoPE (Qwen3's `q_norm` / `k_norm`)
    qk_norm: bool = False
    # logits = cap * tanh(logits / cap), Gemma-2's name for it
    final_logit_softcapping: float | int | None = None
    # extra token-embedding tables added to the values: table i serves layer i and layer L-1-i (the U-net pairs)
    num_value_embeddings: int = 0
    # U-net skips: layer i's output is added, times a learned scalar, to the input of layer L-1-i (i < L/2)
    unet_skips: bool = False

    def __post_init__(self, **kwargs):
        check_config_keys(self, kwargs, legacy=("rope_theta", "rope_scaling"))
        super().__post_init__(**kwargs)
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "max_position_embeddings"):
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"Llama2Config: {name} must be a positive integer, got {value}.")
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads != 0:
                raise ValueError(
                    f"Llama2Config: hidden_size={self.hidden_size} is not divisible by "
                    f"num_attention_heads={self.num_attention_heads}."
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.head_dim <= 0 or self.head_dim % 2 != 0:
            raise ValueError(
                f"Llama2Config: RoPE rotates pairs of channels, so head_dim must be even and positive, "
                f"got head_dim={self.head_dim}."
            )
        if self.num_attention_heads % self.num_key_value_heads != 0:
            raise ValueError(
                f"Llama2Config: num_attention_heads={self.num_attention_heads} is not divisible by "
                f"num_key_value_heads={self.num_key_value_heads}."
            )
        for name in ("attention_dropout", "hidden_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"Llama2Config: {name} must be in [0, 1), got {getattr(self, name)}.")
        if self.hidden_act not in ACT2FN:
            raise ValueError(
                f"Llama2Config: unknown hidden_act={self.hidden_act!r}; choose one of {sorted(ACT2FN)}."
            )
        if self.final_logit_softcapping is not None and self.final_logit_softcapping <= 0:
            raise ValueError(
                f"Llama2Config: final_logit_softcapping must be positive or None, got {self.final_logit_softcapping}."
            )
        if not 0 <= self.num_value_embeddings <= (self.num_hidden_layers + 1) // 2:
            raise ValueError(
                f"Llama2Config: num_value_embeddings must be in [0, {(self.num_hidden_layers + 1) // 2}] (one table "
                f"per pair of layers i and L-1-i), got {self.num_value_embeddings}."
            )
        if self.rms_norm_eps <= 0 or self.rope_theta <= 0:
            raise ValueError(
                f"Llama2Config: rms_norm_eps and rope_theta must be positive, "
                f"got rms_norm_eps={self.rms_norm_eps}, rope_theta={self.rope_theta}."
            )

    @property
    def rope_theta(self) -> float:
        """RoPE's base, kept in `rope_parameters` as transformers keeps it."""
        return (self.rope_parameters or {}).get("rope_theta", self.default_theta)

    @property
    def non_llama_options(self) -> dict:
        """The options set here that transformers' `LlamaConfig` (and llama.cpp's llama) cannot express."""
        defaults = {"qk_norm": False, "final_logit_softcapping": None, "num_value_embeddings": 0, "unet_skips": False}
        return {name: getattr(self, name) for name, off in defaults.items() if getattr(self, name) != off}

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "Llama2Config":
        """Build a named configuration, e.g. `Llama2Config.from_preset("llama2-7b")`; keywords override fields.

        按名称构建配置（如 `"llama2-tiny"`、`"llama2-7b"`），关键字参数覆盖预设字段。
        """
        if name not in LLAMA2_PRESETS:
            raise ValueError(f"Unknown LLaMA2 preset {name!r}; known presets: {', '.join(LLAMA2_PRESETS)}.")
        return cls(**{**LLAMA2_PRESETS[name], **overrides})


__all__ = ["Llama2Config", "LLAMA2_PRESETS"]

"""Configuration of the GPT-2 style model (Pre-LN, GELU, learned positions, tied embeddings).

This file imports only `transformers` and a sibling file, so `save_pretrained` ships it next to a checkpoint as
remote code.
"""

from huggingface_hub.dataclasses import strict
from transformers import PretrainedConfig
from transformers.activations import ACT2FN

from .configuration_common import check_config_keys

# name -> overrides of the defaults below; the defaults themselves are GPT-2 (124M).
GPT_PRESETS = {
    "gpt-micro": dict(num_hidden_layers=4, hidden_size=128, num_attention_heads=4, max_position_embeddings=256),
    "gpt-mini": dict(num_hidden_layers=6, hidden_size=384, num_attention_heads=6, max_position_embeddings=512),
    "gpt-small": dict(num_hidden_layers=8, hidden_size=512, num_attention_heads=8, max_position_embeddings=1024),
    "gpt2": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, max_position_embeddings=1024),
    "gpt2-xl": dict(num_hidden_layers=48, hidden_size=1600, num_attention_heads=25, max_position_embeddings=1024),
}


@strict
class GPTConfig(PretrainedConfig):
    """GPT-2 style decoder configuration with HF-standard names; `n_embd`, `n_layer`, ... still work.

    ```python
    >>> from scratchformers import GPTConfig
    >>> config = GPTConfig.from_preset("gpt-micro", vocab_size=1000)
    >>> config.n_embd, config.hidden_size
    (128, 128)
    ```
    """

    model_type = "scratch_gpt"
    attribute_map = {
        "n_embd": "hidden_size",
        "n_layer": "num_hidden_layers",
        "n_head": "num_attention_heads",
        "n_positions": "max_position_embeddings",
        "n_ctx": "max_position_embeddings",
        "n_inner": "intermediate_size",
        "activation_function": "hidden_act",
        "layer_norm_epsilon": "layer_norm_eps",
        "resid_pdrop": "hidden_dropout",
        "embd_pdrop": "embedding_dropout",
        "attn_pdrop": "attention_dropout",
    }

    vocab_size: int = 50257
    max_position_embeddings: int = 1024
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int | None = None  # None -> 4 * hidden_size
    hidden_act: str = "gelu_pytorch_tanh"  # GPT-2's tanh GELU ("gelu_new") as one fused kernel
    hidden_dropout: float | int = 0.0
    embedding_dropout: float | int = 0.0
    attention_dropout: float | int = 0.0
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    use_cache: bool = True
    bos_token_id: int | None = 50256
    eos_token_id: int | list[int] | None = 50256
    pad_token_id: int | None = None
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        check_config_keys(self, kwargs)
        super().__post_init__(**kwargs)
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        for name in ("vocab_size", "max_position_embeddings", "hidden_size", "num_hidden_layers",
                     "num_attention_heads", "intermediate_size"):
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"GPTConfig: {name} must be a positive integer, got {value}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"GPTConfig: hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}."
            )
        for name in ("hidden_dropout", "embedding_dropout", "attention_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"GPTConfig: {name} must be in [0, 1), got {value}.")
        if self.hidden_act not in ACT2FN:
            raise ValueError(
                f"GPTConfig: unknown hidden_act={self.hidden_act!r}; choose one of {sorted(ACT2FN)}."
            )
        if self.layer_norm_eps <= 0:
            raise ValueError(f"GPTConfig: layer_norm_eps must be positive, got {self.layer_norm_eps}.")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "GPTConfig":
        """Build a named configuration, e.g. `GPTConfig.from_preset("gpt2")`; keywords override fields.

        按名称构建配置（如 `"gpt-micro"`、`"gpt2"`），关键字参数覆盖预设字段。
        """
        if name not in GPT_PRESETS:
            raise ValueError(f"Unknown GPT preset {name!r}; known presets: {', '.join(GPT_PRESETS)}.")
        return cls(**{**GPT_PRESETS[name], **overrides})


__all__ = ["GPTConfig", "GPT_PRESETS"]

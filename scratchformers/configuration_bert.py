"""Configuration of the BERT-style encoder (post-LN blocks, GELU, learned positions, token types, tied MLM decoder).

The field names are those of transformers' `BertConfig`, so a native config converts field for field. This file
imports only `transformers` and a sibling file, so `save_pretrained` ships it next to a checkpoint as remote code.
"""

from huggingface_hub.dataclasses import strict
from transformers import PretrainedConfig
from transformers.activations import ACT2FN

from .configuration_common import check_config_keys

# name -> overrides of the defaults below; the defaults themselves are BERT-base (110M). tiny ... medium are the
# compact sizes Google released with "Well-Read Students Learn Better" (Turc et al., 2019).
BERT_PRESETS = {
    "bert-tiny": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512),
    "bert-mini": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
    "bert-small": dict(num_hidden_layers=4, hidden_size=512, num_attention_heads=8, intermediate_size=2048),
    "bert-medium": dict(num_hidden_layers=8, hidden_size=512, num_attention_heads=8, intermediate_size=2048),
    "bert-base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
}


@strict
class BertConfig(PretrainedConfig):
    """BERT-style encoder configuration with the field names of transformers' `BertConfig`.

    ```python
    >>> from scratchformers import BertConfig
    >>> config = BertConfig.from_preset("bert-mini", vocab_size=8000)
    >>> config.hidden_size, config.num_hidden_layers, config.type_vocab_size
    (256, 4, 2)
    ```
    """

    model_type = "scratch_bert"
    attribute_map = {"hidden_dropout": "hidden_dropout_prob", "attention_dropout": "attention_probs_dropout_prob"}

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"  # BERT's exact (erf) GELU
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    classifier_dropout: float | int | None = None  # None -> hidden_dropout_prob
    max_position_embeddings: int = 512
    type_vocab_size: int = 2  # segment A / segment B of a sentence pair
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    tie_word_embeddings: bool = True  # the MLM decoder shares the token embedding matrix
    use_cache: bool = False  # an encoder has no KV cache; declared because generic code reads it
    # masked LM with labels: score only the masked positions (logits (N_masked, V) instead of (B, T, V)), as
    # ModernBERT's option of the same name; the vocabulary projection of the other 85% of the tokens is wasted work
    sparse_prediction: bool = False
    # what the sequence classifier's pooler reads: the [CLS] token (BERT) or the mean over the real tokens (ModernBERT's
    # option of the same name). An encoder pretrained with masked-LM only never trains its [CLS] output for anything;
    # "mean" reads the token states the pretraining did train.
    classifier_pooling: str = "cls"

    def __post_init__(self, **kwargs):
        check_config_keys(self, kwargs, legacy=("position_embedding_type",))
        if kwargs.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(
                f"BertConfig: position_embedding_type={kwargs['position_embedding_type']!r} is not supported; "
                "scratchformers' BERT has learned absolute positions only."
            )
        kwargs.pop("position_embedding_type", None)
        super().__post_init__(**kwargs)
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"BertConfig: {name} must be a positive integer, got {value}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"BertConfig: hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}."
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"BertConfig: {name} must be in [0, 1), got {value}.")
        if self.hidden_act not in ACT2FN:
            raise ValueError(f"BertConfig: unknown hidden_act={self.hidden_act!r}; choose one of {sorted(ACT2FN)}.")
        if self.layer_norm_eps <= 0:
            raise ValueError(f"BertConfig: layer_norm_eps must be positive, got {self.layer_norm_eps}.")
        if self.classifier_pooling not in ("cls", "mean"):
            raise ValueError(f"BertConfig: classifier_pooling must be 'cls' or 'mean', got {self.classifier_pooling!r}.")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"BertConfig: pad_token_id={self.pad_token_id} is outside the vocabulary "
                             f"(vocab_size={self.vocab_size}).")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "BertConfig":
        """Build a named configuration, e.g. `BertConfig.from_preset("bert-mini")`; keywords override fields.

        按名称构建配置（如 `"bert-tiny"`、`"bert-base"`），关键字参数覆盖预设字段。
        """
        if name not in BERT_PRESETS:
            raise ValueError(f"Unknown BERT preset {name!r}; known presets: {', '.join(BERT_PRESETS)}.")
        return cls(**{**BERT_PRESETS[name], **overrides})


__all__ = ["BertConfig", "BERT_PRESETS"]

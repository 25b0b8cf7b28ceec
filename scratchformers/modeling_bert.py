"""A BERT-style encoder written from scratch as a first-class transformers model.

Every token attends to every other token (no causal mask), so the model reads a whole sentence at once: it is
trained by filling in masked words (`BertForMaskedLM`) and then fine-tuned to classify sentences
(`BertForSequenceClassification`) or tokens (`BertForTokenClassification`). As in the original BERT: learned
absolute positions plus token-type (segment) embeddings, post-LN blocks (LayerNorm *after* each residual sum), an
exact-erf GELU MLP, a `[CLS]` pooler, and an MLM decoder tied to the token embeddings.

Read top to bottom: embeddings -> attention -> layer -> model -> heads. Parameter names are flatter than native
`BertModel`'s (`layers.0.attention.query` for `encoder.layer.0.attention.self.query`); `conversion.py` maps them
both ways, and the leaf names PEFT targets (`query`, `key`, `value`, `dense`) are BERT's. Imports only torch,
transformers and sibling files, so `save_pretrained` ships it as remote code.
"""

import torch
from torch import nn

from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .configuration_bert import BertConfig
from .modeling_common import ScratchPreTrainedModel, check_positions, check_token_ids, eager_attention_forward


def check_token_type_ids(config, token_type_ids: torch.Tensor) -> None:
    """A clear error for a segment id outside `0 .. type_vocab_size - 1` (eager mode only)."""
    if torch.compiler.is_compiling() or token_type_ids.numel() == 0:
        return
    low, high = torch.aminmax(token_type_ids)
    if low < 0 or high >= config.type_vocab_size:
        bad = int(low) if low < 0 else int(high)
        raise ValueError(f"token_type_ids holds {bad}, outside 0..{config.type_vocab_size - 1} "
                         f"(type_vocab_size={config.type_vocab_size}).")


class BertEmbeddings(nn.Module):
    """Token + position + token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None):
        if inputs_embeds is None:
            check_token_ids(self.config, input_ids)
            inputs_embeds = self.word_embeddings(input_ids)  # (B, T, C)
        B, T = inputs_embeds.shape[:2]
        if position_ids is None:
            if T > self.config.max_position_embeddings and not torch.compiler.is_compiling():
                raise ValueError(
                    f"Input of {T} tokens is longer than the model's max_position_embeddings="
                    f"{self.config.max_position_embeddings}; truncate it, e.g. tokenizer(..., truncation=True, "
                    f"max_length={self.config.max_position_embeddings})."
                )
            position_ids = torch.arange(T, device=inputs_embeds.device).unsqueeze(0)  # (1, T)
        else:
            check_positions(self.config, position_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros((B, T), dtype=torch.long, device=inputs_embeds.device)  # all segment A
        else:
            check_token_type_ids(self.config, token_type_ids)
        embeddings = inputs_embeds + self.position_embeddings(position_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.norm(embeddings))  # (B, T, C)


class BertSelfAttention(nn.Module):
    """Bidirectional multi-head self-attention: separate `query` / `key` / `value` projections and an output `dense`."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.num_key_value_groups = 1
        self.is_causal = False  # every token sees every (non-padding) token
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states, attention_mask=None, **kwargs: Unpack[TransformersKwargs]):
        B, T, C = hidden_states.shape
        q = self.query(hidden_states).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = self.key(hidden_states).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        v = self.value(hidden_states).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        y, attn_weights = attention(
            self, q, k, v, attention_mask,
            dropout=self.config.attention_probs_dropout_prob if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )  # y: (B, T, H, hd)
        return self.dense(y.reshape(B, T, C)), attn_weights


class BertLayer(GradientCheckpointingLayer):
    """Post-LN encoder block: x = norm(x + attn(x)), then x = norm(x + mlp(x)), as in the original BERT."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertSelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, attention_mask=None, **kwargs: Unpack[TransformersKwargs]):
        attn_output, _ = self.attention(hidden_states, attention_mask=attention_mask, **kwargs)
        hidden_states = self.attention_norm(hidden_states + self.dropout(attn_output))  # (B, T, C)
        mlp_output = self.output(self.act(self.intermediate(hidden_states)))  # (B, T, C)
        return self.output_norm(hidden_states + self.dropout(mlp_output))  # (B, T, C)


class BertPreTrainedModel(ScratchPreTrainedModel):
    """Shared loading, saving and weight initialisation of every BERT head."""

    config_class = BertConfig
    config: BertConfig
    base_model_prefix = "bert"
    _no_split_modules = ["BertEmbeddings", "BertLayer"]
    _can_compile_fullgraph = False  # not yet tested under torch.compile(fullgraph=True), unlike the decoders
    _can_record_outputs = {"hidden_states": BertLayer, "attentions": BertSelfAttention}
    auto_heads = {
        "AutoModel": "BertModel",
        "AutoModelForMaskedLM": "BertForMaskedLM",
        "AutoModelForSequenceClassification": "BertForSequenceClassification",
        "AutoModelForTokenClassification": "BertForTokenClassification",
    }

    def _init_weights(self, module):
        super()._init_weights(module)  # N(0, initializer_range) for Linear/Embedding (padding row 0), LayerNorm 1/0
        if isinstance(module, BertMLMHead):
            init.zeros_(module.decoder.bias)


class BertModel(BertPreTrainedModel):
    """The bare encoder: embeddings, `num_hidden_layers` post-LN layers, and (optionally) the `[CLS]` pooler."""

    _input_embed_layer = "word_embeddings"

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        """Encode a batch; returns `BaseModelOutputWithPooling(last_hidden_state, pooler_output, ...)`.

        编码一批文本：输入 token id、注意力掩码（1 = 真实 token，0 = 填充）和句子类型 id，返回每个 token 的隐藏状态
        以及 `[CLS]` 位置经池化层后的句向量。
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        hidden_states = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, C)
        # padding keys are hidden from every query; None when nothing is padded (SDPA then needs no mask at all)
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask)
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask=mask, **kwargs)  # (B, T, C)
        pooled = self.pooler(hidden_states, attention_mask) if self.pooler is not None else None  # (B, C)
        return BaseModelOutputWithPooling(last_hidden_state=hidden_states, pooler_output=pooled)


class BertPooler(nn.Module):
    """tanh(W h + b) of the [CLS] token's state h (or, with `classifier_pooling="mean"`, of the mean state of the
    real tokens): the sentence vector that the classification head reads."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.mean = config.classifier_pooling == "mean"
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states, attention_mask=None):
        if not self.mean:
            return torch.tanh(self.dense(hidden_states[:, 0]))  # (B, C) from the first ([CLS]) token
        if attention_mask is None:
            attention_mask = hidden_states.new_ones(hidden_states.shape[:2])
        weights = attention_mask.to(hidden_states.dtype).unsqueeze(-1)  # (B, T, 1): 1 for real tokens
        return torch.tanh(self.dense((hidden_states * weights).sum(1) / weights.sum(1)))  # (B, C)


class BertMLMHead(nn.Module):
    """Dense -> GELU -> LayerNorm -> `decoder` to vocabulary logits; the decoder's weight is the token embedding."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, hidden_states):
        return self.decoder(self.norm(self.act(self.dense(hidden_states))))  # (B, T, V)


class BertForMaskedLM(BertPreTrainedModel):
    """BERT with the masked-language-model head: predicts the original token at every `[MASK]`."""

    _tied_weights_keys = {"mlm_head.decoder.weight": "bert.embeddings.word_embeddings.weight"}

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.mlm_head = BertMLMHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.mlm_head.decoder

    def set_output_embeddings(self, new_embeddings):
        self.mlm_head.decoder = new_embeddings

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskedLMOutput:
        """Vocabulary logits at every position, plus the loss when `labels` are given (not shifted: the label of
        position t is the original token at t, -100 where nothing was masked). With `config.sparse_prediction` and
        labels, only the masked positions are scored: logits `(N_masked, V)`, the same loss, less work.

        每个位置的词表 logits；给出 `labels` 时计算掩码位置的交叉熵（不移位，未被掩码的位置标为 -100）。
        """
        outputs = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs)
        hidden_states = outputs.last_hidden_state  # (B, T, C)
        if labels is not None and self.config.sparse_prediction:
            scored = labels != -100
            hidden_states, labels = hidden_states[scored], labels[scored]  # (N, C), (N,): the masked positions only
        logits = self.mlm_head(hidden_states)  # (B, T, V), or (N, V) with sparse_prediction
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                              attentions=outputs.attentions)


class BertForSequenceClassification(BertPreTrainedModel):
    """BERT with dropout and a linear `classifier` on the pooled `[CLS]` vector (single-, multi-label, regression)."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        """Class logits `(B, num_labels)` of each sequence, plus the loss (its kind from `config.problem_type`).

        每条序列的类别 logits；给出 `labels` 时按 `problem_type`（单标签、多标签或回归）计算损失。
        """
        outputs = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs)
        logits = self.classifier(self.dropout(outputs.pooler_output))  # (B, num_labels)
        loss = None
        if labels is not None:
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)


class BertForTokenClassification(BertPreTrainedModel):
    """BERT with dropout and a linear `classifier` on every token (NER, POS tagging, ...)."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TokenClassifierOutput:
        outputs = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))  # (B, T, num_labels)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, self.config)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                     attentions=outputs.attentions)


__all__ = [
    "BertPreTrainedModel",
    "BertModel",
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "BertForTokenClassification",
]

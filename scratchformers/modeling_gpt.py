"""A GPT-2 style decoder written from scratch as a first-class transformers model.

Pre-LN blocks (LayerNorm before attention and MLP), a tanh-GELU MLP, learned position embeddings and an LM
head tied to the token embeddings. Parameter names follow GPT-2 (`transformer.h.0.attn.c_attn`, ...) so that
checkpoints convert to and from `GPT2LMHeadModel` by transposing its Conv1D weights, and PEFT can target
`c_attn`, `c_proj` and `c_fc`.

Read top to bottom: building blocks (attention, GELU MLP) -> block -> model -> heads. What both families share
(input preparation, the LM head's forward and loss) is in `modeling_common.py`. Imports only torch, transformers
and sibling files, so `save_pretrained` ships it as remote code.
"""

import torch
from torch import nn

from transformers import GenerationMixin
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.modeling_layers import (
    GenericForQuestionAnswering,
    GenericForSequenceClassification,
    GenericForTokenClassification,
    GradientCheckpointingLayer,
)
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .configuration_gpt import GPTConfig
from .modeling_common import ScratchForCausalLM, ScratchPreTrainedModel, decoder_inputs, eager_attention_forward


class GPTAttention(nn.Module):
    """Causal multi-head self-attention with one fused Q/K/V projection (`c_attn`)."""

    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.num_key_value_groups = 1  # every query head has its own K/V head
        self.is_causal = True
        self.c_attn = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.c_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.c_proj.is_residual_projection = True  # scaled at init, see GPTPreTrainedModel._init_weights
        self.resid_dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, hidden_states, attention_mask=None, cache: Cache | None = None,
                **kwargs: Unpack[TransformersKwargs]):
        B, T, C = hidden_states.shape
        q, k, v = self.c_attn(hidden_states).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        v = v.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx, kwargs=kwargs)  # (B, H, S, hd), S = cached + T

        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        y, attn_weights = attention(
            self,
            q,
            k,
            v,
            attention_mask,
            dropout=self.config.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,  # e.g. the cumulative sequence lengths of a padding-free batch, output_attentions
        )  # y: (B, T, H, hd)
        return self.resid_dropout(self.c_proj(y.reshape(B, T, C))), attn_weights


class GPTMLP(nn.Module):
    """Position-wise feed-forward network: Linear -> GELU -> Linear."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.c_proj = nn.Linear(config.intermediate_size, config.hidden_size)
        self.c_proj.is_residual_projection = True  # scaled at init, see GPTPreTrainedModel._init_weights
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPTBlock(GradientCheckpointingLayer):
    """Pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = GPTAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = GPTMLP(config)

    def forward(self, hidden_states, attention_mask=None, cache: Cache | None = None,
                **kwargs: Unpack[TransformersKwargs]):
        attn_output, _ = self.attn(self.ln_1(hidden_states), attention_mask=attention_mask, cache=cache, **kwargs)
        hidden_states = hidden_states + attn_output  # (B, T, C)
        return hidden_states + self.mlp(self.ln_2(hidden_states))  # (B, T, C)


class GPTPreTrainedModel(ScratchPreTrainedModel):
    """Shared loading, saving and weight initialisation of every GPT head."""

    config_class = GPTConfig
    config: GPTConfig
    base_model_prefix = "transformer"
    _no_split_modules = ["GPTBlock"]
    # `output_hidden_states=True` / `output_attentions=True` collect what these modules return (forward hooks that
    # transformers installs), so no block has to thread those flags through its forward.
    _can_record_outputs = {"hidden_states": GPTBlock, "attentions": GPTAttention}
    auto_heads = {
        "AutoModel": "GPTModel",
        "AutoModelForCausalLM": "GPTForCausalLM",
        "AutoModelForSequenceClassification": "GPTForSequenceClassification",
        "AutoModelForTokenClassification": "GPTForTokenClassification",
        "AutoModelForQuestionAnswering": "GPTForQuestionAnswering",
    }

    def _init_weights(self, module):
        if getattr(module, "is_residual_projection", False):
            # GPT-2: the projections that write into the residual stream start smaller, by 1/sqrt(2 * n_layer),
            # so the residual stream's variance does not grow with depth. (Marked on the Linear itself: transformers
            # skips `_init_weights` for parameter-less parents such as GPTAttention in custom models.)
            std = self.config.initializer_range / (2 * self.config.num_hidden_layers) ** 0.5
            init.normal_(module.weight, mean=0.0, std=std)
            init.zeros_(module.bias)
        else:
            super()._init_weights(module)  # N(0, initializer_range) for Linear/Embedding, ones/zeros for LayerNorm


class GPTModel(GPTPreTrainedModel):
    """The bare GPT decoder: token + position embeddings, `num_hidden_layers` blocks, final LayerNorm."""

    _input_embed_layer = "wte"

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)
        self.wpe = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.drop = nn.Dropout(config.embedding_dropout)
        self.h = nn.ModuleList([GPTBlock(config, i) for i in range(config.num_hidden_layers)])
        self.ln_f = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPast:
        """Run the decoder; returns `BaseModelOutputWithPast(last_hidden_state, cache, hidden_states, attentions)`.

        运行解码器：输入 token id（或嵌入）、注意力掩码、位置和 KV 缓存，返回最后一层的隐藏状态。
        """
        inputs_embeds, position_ids, cache, causal_mask = decoder_inputs(
            self, self.wte, input_ids, inputs_embeds, attention_mask, position_ids, cache, use_cache
        )
        hidden_states = self.drop(inputs_embeds + self.wpe(position_ids))  # (B, T, C)
        for block in self.h:
            hidden_states = block(
                hidden_states, attention_mask=causal_mask, position_ids=position_ids, cache=cache, **kwargs
            )
        return BaseModelOutputWithPast(last_hidden_state=self.ln_f(hidden_states), cache=cache)


class GPTForCausalLM(ScratchForCausalLM, GPTPreTrainedModel, GenerationMixin):
    """GPT with a language-modelling head tied to the token embeddings; works with `generate()`."""

    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        self.transformer = GPTModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()


class GPTForSequenceClassification(GenericForSequenceClassification, GPTPreTrainedModel):
    """GPT with a linear `score` head on the last non-padding token (transformers' generic head)."""

    base_model_prefix = "transformer"


class GPTForTokenClassification(GenericForTokenClassification, GPTPreTrainedModel):
    """GPT with a linear `score` head on every token (transformers' generic head)."""

    base_model_prefix = "transformer"


class GPTForQuestionAnswering(GenericForQuestionAnswering, GPTPreTrainedModel):
    """GPT with start/end span logits for extractive question answering (transformers' generic head)."""

    base_model_prefix = "transformer"

    def get_input_embeddings(self):
        return self.transformer.wte

    def set_input_embeddings(self, value):
        self.transformer.wte = value


__all__ = [
    "GPTPreTrainedModel",
    "GPTModel",
    "GPTForCausalLM",
    "GPTForSequenceClassification",
    "GPTForTokenClassification",
    "GPTForQuestionAnswering",
]

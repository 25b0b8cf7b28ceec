"""A LLaMA-2 style decoder written from scratch as a first-class transformers model.

RMSNorm before attention and MLP, rotary position embeddings (RoPE, "rotate half" layout as in transformers),
grouped-query attention (several query heads share one key/value head) and a SwiGLU MLP. Parameter names follow
transformers' Llama (`model.layers.0.self_attn.q_proj`, ...), so `LlamaForCausalLM` weights load as they are and
PEFT targets `q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj`.

Read top to bottom: building blocks (RMSNorm, RoPE, `repeat_kv`, attention, SwiGLU) -> decoder layer -> model ->
heads. What both families share (input preparation, the LM head's forward and loss) is in `modeling_common.py`.
Imports only torch, transformers and sibling files, so `save_pretrained` ships it as remote code.
"""

from collections.abc import Callable

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
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, dynamic_rope_update
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .configuration_llama2 import Llama2Config
from .modeling_common import ScratchForCausalLM, ScratchPreTrainedModel, decoder_inputs
from .modeling_common import eager_attention_forward as plain_attention_forward


class Llama2RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · weight, computed in float32; no mean subtraction and no bias."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)  # (B, T, C)
        return self.weight * x32.to(x.dtype)


class Llama2RotaryEmbedding(nn.Module):
    """cos/sin tables of RoPE for given positions: channel pair i turns by angle position · theta^(-2i/head_dim).

    `config.rope_parameters["rope_type"]` "default" is the formula of `compute_default_rope_parameters`; scaled
    RoPE ("linear", "dynamic", "yarn", "llama3", ...) takes its frequencies from transformers' `ROPE_INIT_FUNCTIONS`.
    """

    def __init__(self, config: Llama2Config):
        super().__init__()
        self.config = config
        self.max_seq_len_cached = self.original_max_seq_len = config.max_position_embeddings
        self.rope_type = config.rope_parameters["rope_type"]
        rope_init: Callable = self.compute_default_rope_parameters
        if self.rope_type != "default":
            rope_init = ROPE_INIT_FUNCTIONS[self.rope_type]
        inv_freq, self.attention_scaling = rope_init(config)
        # not saved in checkpoints: transformers' `_init_weights` rebuilds both after `from_pretrained`
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("original_inv_freq", inv_freq.clone(), persistent=False)

    @staticmethod
    def compute_default_rope_parameters(config: Llama2Config, device=None, seq_len=None, **kwargs):
        """Plain RoPE's inverse frequencies theta^(-2i/head_dim), i = 0 .. head_dim/2 - 1, and no output scaling."""
        theta, dim = config.rope_parameters["rope_theta"], config.head_dim
        inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))  # (hd/2,)
        return inv_freq.to(device), 1.0

    @dynamic_rope_update  # "dynamic" RoPE recomputes the frequencies when a sequence outgrows the trained length
    def forward(self, x, position_ids):
        freqs = position_ids[..., None].float() * self.inv_freq.float()  # (B, T, hd/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, hd)
        return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)


def rotate_half(x):
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, T, hd): the same rotation for every head
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, n_kv, S, hd) -> (B, n_kv * n_rep, S, hd): each K/V head serves n_rep query heads."""
    if n_rep == 1:
        return x
    B, n_kv, S, hd = x.shape
    return x[:, :, None, :, :].expand(B, n_kv, n_rep, S, hd).reshape(B, n_kv * n_rep, S, hd)


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """GQA written out: each K/V head repeated for its group of query heads, then softmax(Q Kᵀ · scaling + mask) V
    (`modeling_common.eager_attention_forward`, which GPT and BERT use as it is)."""
    key = repeat_kv(key, module.num_key_value_groups)  # (B, H, S, hd)
    value = repeat_kv(value, module.num_key_value_groups)  # (B, H, S, hd)
    return plain_attention_forward(module, query, key, value, attention_mask, scaling, dropout, **kwargs)


class Llama2Attention(nn.Module):
    """Grouped-query self-attention with RoPE on queries and keys."""

    def __init__(self, config: Llama2Config, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = True
        bias, hd = config.attention_bias, self.head_dim
        self.q_proj = nn.Linear(config.hidden_size, config.num_attention_heads * hd, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * hd, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * hd, bias=bias)
        self.o_proj = nn.Linear(config.num_attention_heads * hd, config.hidden_size, bias=bias)
        if config.qk_norm:
            self.q_norm = Llama2RMSNorm(hd, eps=config.rms_norm_eps)
            self.k_norm = Llama2RMSNorm(hd, eps=config.rms_norm_eps)

    def forward(self, hidden_states, position_embeddings, attention_mask=None, cache: Cache | None = None,
                value_embeds: torch.Tensor | None = None, **kwargs: Unpack[TransformersKwargs]):
        B, T, _ = hidden_states.shape
        q = self.q_proj(hidden_states).view(B, T, -1, self.head_dim)  # (B, T, H, hd)
        k = self.k_proj(hidden_states).view(B, T, -1, self.head_dim)  # (B, T, n_kv, hd)
        v = self.v_proj(hidden_states)  # (B, T, n_kv * hd)
        if self.config.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if value_embeds is not None:
            v = v + value_embeds  # (B, T, n_kv * hd)
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, H, T, hd), (B, n_kv, T, hd)
        v = v.view(B, T, -1, self.head_dim).transpose(1, 2)  # (B, n_kv, T, hd)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx, kwargs=kwargs)  # (B, n_kv, S, hd), S = cached + T

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
        return self.o_proj(y.reshape(B, T, -1)), attn_weights


class Llama2MLP(nn.Module):
    """SwiGLU feed-forward network: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: Llama2Config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class Llama2DecoderLayer(GradientCheckpointingLayer):
    """x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: Llama2Config, layer_idx: int):
        super().__init__()
        self.input_layernorm = Llama2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.self_attn = Llama2Attention(config, layer_idx)
        self.post_attention_layernorm = Llama2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mlp = Llama2MLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout)  # identity at the default 0.0, as in native Llama

    def forward(self, hidden_states, position_embeddings, attention_mask=None, cache: Cache | None = None,
                value_embeds: torch.Tensor | None = None, **kwargs: Unpack[TransformersKwargs]):
        attn_output, _ = self.self_attn(
            self.input_layernorm(hidden_states), position_embeddings, attention_mask=attention_mask, cache=cache,
            value_embeds=value_embeds, **kwargs,
        )
        hidden_states = hidden_states + self.dropout(attn_output)  # (B, T, C)
        return hidden_states + self.dropout(self.mlp(self.post_attention_layernorm(hidden_states)))  # (B, T, C)


class Llama2PreTrainedModel(ScratchPreTrainedModel):
    """Shared loading, saving and weight initialisation of every LLaMA2 head."""

    config_class = Llama2Config
    config: Llama2Config
    base_model_prefix = "model"
    _no_split_modules = ["Llama2DecoderLayer"]
    # `output_hidden_states=True` / `output_attentions=True` collect what these modules return (forward hooks that
    # transformers installs), so no layer has to thread those flags through its forward.
    _can_record_outputs = {"hidden_states": Llama2DecoderLayer, "attentions": Llama2Attention}
    auto_heads = {
        "AutoModel": "Llama2Model",
        "AutoModelForCausalLM": "Llama2ForCausalLM",
        "AutoModelForSequenceClassification": "Llama2ForSequenceClassification",
        "AutoModelForTokenClassification": "Llama2ForTokenClassification",
        "AutoModelForQuestionAnswering": "Llama2ForQuestionAnswering",
    }

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, Llama2Model) and module.config.unet_skips:
            init.ones_(module.skip_weights)


class Llama2Model(Llama2PreTrainedModel):
    """The bare LLaMA2 decoder: token embeddings, `num_hidden_layers` layers with RoPE, final RMSNorm."""

    def __init__(self, config: Llama2Config):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList([Llama2DecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = Llama2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = Llama2RotaryEmbedding(config)
        kv_size = config.num_key_value_heads * config.head_dim
        self.value_embeds = nn.ModuleList(
            [nn.Embedding(config.vocab_size, kv_size) for _ in range(config.num_value_embeddings)]
        )
        if config.unet_skips:
            self.skip_weights = nn.Parameter(torch.ones(config.num_hidden_layers // 2))
        self.post_init()

    def value_embeddings_per_layer(self, input_ids) -> list:
        """Layer i's extra values: table i for layer i and for layer L-1-i, None for the layers in between."""
        L, n = len(self.layers), len(self.value_embeds)
        if n == 0:
            return [None] * L
        if input_ids is None:
            raise ValueError("num_value_embeddings > 0 looks values up by token id: pass input_ids, not inputs_embeds")
        tables = [table(input_ids) for table in self.value_embeds]  # n x (B, T, n_kv * hd)
        return [tables[i] if i < n else tables[L - 1 - i] if L - 1 - i < n else None for i in range(L)]

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
        hidden_states, position_ids, cache, causal_mask = decoder_inputs(
            self, self.embed_tokens, input_ids, inputs_embeds, attention_mask, position_ids, cache, use_cache
        )
        position_embeddings = self.rotary_emb(hidden_states, position_ids)  # 2 x (B, T, hd), shared by all layers
        value_embeds = self.value_embeddings_per_layer(input_ids)
        L, skips = len(self.layers), []
        for i, layer in enumerate(self.layers):
            if self.config.unet_skips and i >= L - L // 2:  # the output of layer L-1-i, the last one still kept
                hidden_states = hidden_states + self.skip_weights[L - 1 - i] * skips.pop()
            hidden_states = layer(
                hidden_states, position_embeddings, attention_mask=causal_mask, position_ids=position_ids,
                cache=cache, value_embeds=value_embeds[i], **kwargs,
            )
            if self.config.unet_skips and i < L // 2:
                skips.append(hidden_states)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(hidden_states), cache=cache)


class Llama2ForCausalLM(ScratchForCausalLM, Llama2PreTrainedModel, GenerationMixin):
    """LLaMA2 with a language-modelling head (untied by default, as Llama-2 has it); works with `generate()`."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}
    _pp_plan = {"lm_head": (["hidden_states"], ["logits"])}

    def __init__(self, config: Llama2Config):
        super().__init__(config)
        self.model = Llama2Model(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()


class Llama2ForSequenceClassification(GenericForSequenceClassification, Llama2PreTrainedModel):
    """LLaMA2 with a linear `score` head on the last non-padding token (transformers' generic head, as Llama's)."""


class Llama2ForTokenClassification(GenericForTokenClassification, Llama2PreTrainedModel):
    """LLaMA2 with a linear `score` head on every token (transformers' generic head)."""


class Llama2ForQuestionAnswering(GenericForQuestionAnswering, Llama2PreTrainedModel):
    """LLaMA2 with start/end span logits for extractive question answering (transformers' generic head)."""


__all__ = [
    "Llama2PreTrainedModel",
    "Llama2Model",
    "Llama2ForCausalLM",
    "Llama2ForSequenceClassification",
    "Llama2ForTokenClassification",
    "Llama2ForQuestionAnswering",
]

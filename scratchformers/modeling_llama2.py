"""A LLaMA-2 style decoder written from scratch as a first-class transformers model.

RMSNorm before attention and MLP, rotary position embeddings (RoPE, "rotate half" layout as in transformers),
grouped-query attention (several query heads share one key/value head) and a SwiGLU MLP. Parameter names follow
transformers' Llama (`model.layers.0.self_attn.q_proj`, ...), so `LlamaForCausalLM` weights load as they are and
PEFT targets `q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj`.

Imports only torch, transformers and `configuration_llama2`, so `save_pretrained` ships it as remote code.
"""

import torch
from torch import nn

from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    SequenceClassifierOutputWithPast,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_llama2 import Llama2Config


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
    """cos/sin tables of RoPE for given positions: channel pair i turns by angle position · theta^(-2i/head_dim)."""

    def __init__(self, config: Llama2Config):
        super().__init__()
        self.config = config
        # not saved in checkpoints: rebuilt by `_init_weights` after `from_pretrained`
        self.register_buffer("inv_freq", self.compute_inv_freq(config), persistent=False)

    @staticmethod
    def compute_inv_freq(config: Llama2Config) -> torch.Tensor:
        dim = config.head_dim
        return 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))  # (hd/2,)

    def forward(self, x, position_ids):
        freqs = position_ids[..., None].float() * self.inv_freq.float()  # (B, T, hd/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, hd)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


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
    """softmax(Q Kᵀ · scaling + mask) V, written out; the reference that SDPA must match."""
    key = repeat_kv(key, module.num_key_value_groups)  # (B, H, S, hd)
    value = repeat_kv(value, module.num_key_value_groups)  # (B, H, S, hd)
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, H, T, S)
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask  # 0 where allowed, dtype-min where masked
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value)  # (B, H, T, hd)
    return attn_output.transpose(1, 2).contiguous(), attn_weights  # (B, T, H, hd)


class Llama2Attention(nn.Module):
    """Grouped-query self-attention with RoPE on queries and keys."""

    def __init__(self, config: Llama2Config, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads
        self.num_key_value_heads = config.num_key_value_heads
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = True
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, self.num_key_value_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, self.num_key_value_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=bias)

    def forward(self, hidden_states, position_embeddings, attention_mask=None, cache: Cache | None = None, **kwargs):
        B, T, _ = hidden_states.shape
        q = self.q_proj(hidden_states).view(B, T, -1, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = self.k_proj(hidden_states).view(B, T, -1, self.head_dim).transpose(1, 2)  # (B, n_kv, T, hd)
        v = self.v_proj(hidden_states).view(B, T, -1, self.head_dim).transpose(1, 2)  # (B, n_kv, T, hd)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, n_kv, S, hd), S = cached + T

        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        y, attn_weights = attention(
            self,
            q,
            k,
            v,
            attention_mask,
            dropout=self.config.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
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

    def forward(self, hidden_states, position_embeddings, attention_mask=None, cache: Cache | None = None, **kwargs):
        attn_output, attn_weights = self.self_attn(
            self.input_layernorm(hidden_states), position_embeddings, attention_mask=attention_mask, cache=cache
        )
        hidden_states = hidden_states + attn_output  # (B, T, C)
        hidden_states = hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))  # (B, T, C)
        return hidden_states, attn_weights


class CrossEntropyFromLogits(torch.autograd.Function):
    """Summed cross-entropy of `(N, V)` logits divided by `divisor`; same numbers as `F.cross_entropy`, less memory.

    `F.cross_entropy` keeps an `(N, V)` log-softmax for backward and builds two more `(N, V)` tensors there. This
    keeps only the log-sum-exp of each row and writes the gradient, softmax minus one-hot, in one pass into one new
    tensor. Row blocks of about 2**20 values keep the temporaries small (the logits are the largest tensor of a
    small model's step). Written once per modeling file, so each file stands alone as remote code.
    """

    @staticmethod
    def forward(ctx, logits, labels, ignore_index, divisor):
        rows = max(1, (1 << 20) // logits.shape[1])
        lse = torch.cat([torch.logsumexp(block, dim=-1) for block in logits.split(rows)])  # (N,)
        valid = labels != ignore_index  # (N,)
        labels = labels.masked_fill(~valid, 0)
        picked = logits.gather(1, labels[:, None]).squeeze(1)  # (N,) logit of the right token
        ctx.save_for_backward(logits, lse, labels, valid)
        ctx.rows, ctx.divisor = rows, divisor
        return ((lse - picked) * valid).sum() / divisor

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        logits, lse, labels, valid = ctx.saved_tensors
        scale = (grad_loss / ctx.divisor * valid)[:, None]  # (N, 1), 0 on ignored rows
        grad = torch.empty_like(logits)  # (N, V)
        for start in range(0, logits.shape[0], ctx.rows):
            block = slice(start, start + ctx.rows)
            torch.sub(logits[block], lse[block, None], out=grad[block]).exp_().mul_(scale[block])  # softmax
        grad.scatter_add_(1, labels[:, None], -scale)  # minus one-hot
        return grad, None, None, None


def causal_lm_loss(logits, labels, vocab_size, num_items_in_batch=None, ignore_index=-100, shift_labels=None, **kwargs):
    """transformers' `ForCausalLMLoss` on `CrossEntropyFromLogits`: labels shifted inside, `ignore_index` skipped,
    the sum divided by `num_items_in_batch` when `Trainer` passes it (gradient accumulation), else the mean."""
    logits = logits.float().reshape(-1, vocab_size)  # (B·T, V)
    if shift_labels is None:
        shift_labels = nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]  # token t predicts t + 1
    shift_labels = shift_labels.reshape(-1).to(logits.device)  # (B·T,)
    if num_items_in_batch is None:
        divisor = (shift_labels != ignore_index).sum()
    else:
        divisor = num_items_in_batch.to(logits.device) if torch.is_tensor(num_items_in_batch) else num_items_in_batch
    if torch.compiler.is_compiling():  # inductor fuses the plain cross-entropy itself, and better
        return nn.functional.cross_entropy(logits, shift_labels, ignore_index=ignore_index, reduction="sum") / divisor
    return CrossEntropyFromLogits.apply(logits, shift_labels, ignore_index, divisor)


class Llama2PreTrainedModel(PreTrainedModel):
    """Shared loading, saving and weight initialisation of every LLaMA2 head."""

    config_class = Llama2Config
    config: Llama2Config
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["Llama2DecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def _init_weights(self, module):
        super()._init_weights(module)  # N(0, initializer_range) for Linear/Embedding, ones for RMSNorm
        if isinstance(module, Llama2RotaryEmbedding):
            # a non-persistent buffer: from_pretrained builds the model on the meta device and never loads it
            init.copy_(module.inv_freq, module.compute_inv_freq(module.config))

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self.is_remote_code():
            # remote code loads the checkpoint with any head, not only with the one that saved it
            self.config.auto_map = {
                **(getattr(self.config, "auto_map", None) or {}),
                "AutoConfig": "configuration_llama2.Llama2Config",
                "AutoModel": "modeling_llama2.Llama2Model",
                "AutoModelForCausalLM": "modeling_llama2.Llama2ForCausalLM",
                "AutoModelForSequenceClassification": "modeling_llama2.Llama2ForSequenceClassification",
            }
        return super().save_pretrained(save_directory, *args, **kwargs)


class Llama2Model(Llama2PreTrainedModel):
    """The bare LLaMA2 decoder: token embeddings, `num_hidden_layers` layers with RoPE, final RMSNorm."""

    def __init__(self, config: Llama2Config):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList([Llama2DecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = Llama2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = Llama2RotaryEmbedding(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast | tuple:
        """Run the decoder; returns `BaseModelOutputWithPast(last_hidden_state, cache, hidden_states, attentions)`.

        运行解码器：输入 token id（或嵌入）、注意力掩码、位置和 KV 缓存，返回最后一层的隐藏状态。
        """
        use_cache = self.config.use_cache if use_cache is None else use_cache
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        if output_attentions and self.config._attn_implementation != "eager":
            raise ValueError(
                f"output_attentions=True needs attn_implementation='eager', "
                f"this model uses {self.config._attn_implementation!r}."
            )
        if self.training and self.is_activation_checkpointing:
            use_cache = False  # recomputing a layer must not append to the cache a second time

        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)  # (B, T, C)
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        past_length = cache.get_seq_length() if cache is not None else 0
        seq_length = inputs_embeds.shape[1]
        if past_length + seq_length > self.config.max_position_embeddings:
            raise ValueError(
                f"Input of {past_length + seq_length} tokens ({past_length} cached + {seq_length} new) is longer "
                f"than the model's max_position_embeddings={self.config.max_position_embeddings}."
            )
        if position_ids is None:
            position_ids = torch.arange(past_length, past_length + seq_length, device=inputs_embeds.device)
            position_ids = position_ids.unsqueeze(0)  # (1, T)

        # None (pure causal: SDPA's fast path) or a mask combining causality with padding, shaped for the kernel
        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
        )
        hidden_states = inputs_embeds
        position_embeddings = self.rotary_emb(hidden_states, position_ids)  # 2 x (B, T, hd), shared by all layers

        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            hidden_states, attn_weights = layer(
                hidden_states, position_embeddings, attention_mask=causal_mask, cache=cache
            )
            if output_attentions:
                all_attentions += (attn_weights,)
        hidden_states = self.norm(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)

        output = BaseModelOutputWithPast(
            last_hidden_state=hidden_states,
            cache=cache if use_cache else None,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )
        return output if return_dict else output.to_tuple()


class Llama2ForCausalLM(Llama2PreTrainedModel, GenerationMixin):
    """LLaMA2 with a language-modelling head (untied by default, as Llama-2 has it); works with `generate()`."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    @property
    def loss_function(self):
        """`causal_lm_loss` unless replaced (`model.loss_function = ...`), as transformers lets any model's be."""
        return getattr(self, "_loss_function", causal_lm_loss)

    @loss_function.setter
    def loss_function(self, value):
        self._loss_function = value

    def __init__(self, config: Llama2Config):
        super().__init__(config)
        self.model = Llama2Model(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast | tuple:
        """Next-token logits, plus the loss when `labels` are given (shifted inside; -100 is ignored).

        计算下一个 token 的 logits；给出 `labels` 时在内部移位并计算交叉熵损失（-100 不计入）。
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        hidden_states = outputs.last_hidden_state  # (B, T, C)
        # generate() asks for the last position only: no logits for the whole prompt
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, keep, :])  # (B, T', V)

        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)

        output = CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


class Llama2ForSequenceClassification(Llama2PreTrainedModel):
    """LLaMA2 with a linear `score` head on the last non-padding token, as transformers' Llama does."""

    def __init__(self, config: Llama2Config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = Llama2Model(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutputWithPast | tuple:
        """Class logits `(B, num_labels)`, plus the loss (regression, single- or multi-label) given `labels`.

        句子分类：取最后一个非填充 token 的隐藏状态经 `score` 得到 logits；给出 `labels` 时计算损失。
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.score(outputs.last_hidden_state)  # (B, T, num_labels)
        batch_size = logits.shape[0]
        pad_token_id = self.config.pad_token_id
        if pad_token_id is None and batch_size != 1:
            raise ValueError("Cannot classify a batch of more than one sequence without config.pad_token_id.")
        if pad_token_id is None or input_ids is None:
            last_token = torch.full((batch_size,), -1, device=logits.device)
        else:
            # rightmost non-pad position; works for left and right padding alike
            non_pad = (input_ids != pad_token_id).to(logits.device, torch.int32)  # (B, T)
            positions = torch.arange(input_ids.shape[-1], device=logits.device, dtype=torch.int32)
            last_token = (positions * non_pad).argmax(-1)  # (B,)
        pooled_logits = logits[torch.arange(batch_size, device=logits.device), last_token]  # (B, num_labels)

        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, pooled_logits=pooled_logits, config=self.config)

        output = SequenceClassifierOutputWithPast(
            loss=loss,
            logits=pooled_logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


__all__ = ["Llama2PreTrainedModel", "Llama2Model", "Llama2ForCausalLM", "Llama2ForSequenceClassification"]

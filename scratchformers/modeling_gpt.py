"""A GPT-2 style decoder written from scratch as a first-class transformers model.

Pre-LN blocks (LayerNorm before attention and MLP), a tanh-GELU MLP, learned position embeddings and an LM
head tied to the token embeddings. Parameter names follow GPT-2 (`transformer.h.0.attn.c_attn`, ...) so that
checkpoints convert to and from `GPT2LMHeadModel` by transposing its Conv1D weights, and PEFT can target
`c_attn`, `c_proj` and `c_fc`.

Imports only torch, transformers and `configuration_gpt`, so `save_pretrained` ships it as remote code.
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

from .configuration_gpt import GPTConfig


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """softmax(Q Kᵀ · scaling + mask) V, written out; the reference that SDPA must match."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, H, T, S)
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask  # 0 where allowed, dtype-min where masked
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value)  # (B, H, T, hd)
    return attn_output.transpose(1, 2).contiguous(), attn_weights  # (B, T, H, hd)


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

    def forward(self, hidden_states, attention_mask=None, cache: Cache | None = None, **kwargs):
        B, T, C = hidden_states.shape
        q, k, v = self.c_attn(hidden_states).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        v = v.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, H, S, hd), S = cached + T

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
        y = y.reshape(B, T, C)
        return self.resid_dropout(self.c_proj(y)), attn_weights


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

    def forward(self, hidden_states, attention_mask=None, cache: Cache | None = None, **kwargs):
        attn_output, attn_weights = self.attn(self.ln_1(hidden_states), attention_mask=attention_mask, cache=cache)
        hidden_states = hidden_states + attn_output  # (B, T, C)
        hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states))  # (B, T, C)
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


class GPTPreTrainedModel(PreTrainedModel):
    """Shared loading, saving and weight initialisation of every GPT head."""

    config_class = GPTConfig
    config: GPTConfig
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = True
    _no_split_modules = ["GPTBlock"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

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

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self.is_remote_code():
            # remote code loads the checkpoint with any head, not only with the one that saved it
            self.config.auto_map = {
                **(getattr(self.config, "auto_map", None) or {}),
                "AutoConfig": "configuration_gpt.GPTConfig",
                "AutoModel": "modeling_gpt.GPTModel",
                "AutoModelForCausalLM": "modeling_gpt.GPTForCausalLM",
                "AutoModelForSequenceClassification": "modeling_gpt.GPTForSequenceClassification",
            }
        return super().save_pretrained(save_directory, *args, **kwargs)


class GPTModel(GPTPreTrainedModel):
    """The bare GPT decoder: token + position embeddings, `num_hidden_layers` blocks, final LayerNorm."""

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)
        self.wpe = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.drop = nn.Dropout(config.embedding_dropout)
        self.h = nn.ModuleList([GPTBlock(config, i) for i in range(config.num_hidden_layers)])
        self.ln_f = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self):
        return self.wte

    def set_input_embeddings(self, value):
        self.wte = value

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
            use_cache = False  # recomputing a block must not append to the cache a second time

        if inputs_embeds is None:
            inputs_embeds = self.wte(input_ids)  # (B, T, C)
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

        hidden_states = self.drop(inputs_embeds + self.wpe(position_ids))  # (B, T, C)
        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for block in self.h:
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            hidden_states, attn_weights = block(hidden_states, attention_mask=causal_mask, cache=cache)
            if output_attentions:
                all_attentions += (attn_weights,)
        hidden_states = self.ln_f(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)

        output = BaseModelOutputWithPast(
            last_hidden_state=hidden_states,
            cache=cache if use_cache else None,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )
        return output if return_dict else output.to_tuple()


class GPTForCausalLM(GPTPreTrainedModel, GenerationMixin):
    """GPT with a language-modelling head tied to the token embeddings; works with `generate()`."""

    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    @property
    def loss_function(self):
        """`causal_lm_loss` unless replaced (`model.loss_function = ...`), as transformers lets any model's be."""
        return getattr(self, "_loss_function", causal_lm_loss)

    @loss_function.setter
    def loss_function(self, value):
        self._loss_function = value

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        self.transformer = GPTModel(config)
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
        outputs = self.transformer(
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


class GPTForSequenceClassification(GPTPreTrainedModel):
    """GPT with a linear `score` head on the last non-padding token, as transformers' GPT-2 and Llama do."""

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.transformer = GPTModel(config)
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
        outputs = self.transformer(
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


__all__ = ["GPTPreTrainedModel", "GPTModel", "GPTForCausalLM", "GPTForSequenceClassification"]

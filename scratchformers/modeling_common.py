"""What the model families share, so that each modeling file holds only what makes its family what it is.

- `eager_attention_forward`: attention written out, the reference every SDPA kernel must match;
- `decoder_inputs`: token embeddings, position ids, the KV cache and the causal mask that every decoder layer needs,
  with clear errors for bad token ids and positions;
- `ScratchPreTrainedModel`: the capabilities both families declare, and a `save_pretrained` that lets a checkpoint
  load with any head as remote code;
- `ScratchForCausalLM`: the language-modelling head's forward (labels are shifted inside);
- `causal_lm_loss`: transformers' `ForCausalLMLoss` on a cross-entropy that keeps less in memory.

Imports only torch and transformers. `save_pretrained` copies this file next to the checkpoint together with the
modeling file that imports it, so remote code (`trust_remote_code=True`) finds it there.
各模型族共用的部分：解码器输入准备（嵌入、位置、KV 缓存、因果掩码）、预训练基类、语言模型头和交叉熵损失。
"""

import sys

import torch
from torch import nn

from transformers import AutoModel, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.modeling_utils import slice_logits_to_keep
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg


def check_token_ids(config, input_ids: torch.Tensor) -> None:
    """A clear error for token ids outside `0 .. vocab_size - 1` (an embedding lookup would fail obscurely).

    Skipped while `torch.compile` traces: the check reads the data, which would break the graph.
    """
    if torch.compiler.is_compiling() or input_ids.numel() == 0:
        return
    low, high = torch.aminmax(input_ids)
    if low < 0 or high >= config.vocab_size:
        bad = int(low) if low < 0 else int(high)
        raise ValueError(
            f"token id {bad} is outside the model's vocabulary (ids 0..{config.vocab_size - 1}, "
            f"vocab_size={config.vocab_size}); was the text encoded with this model's tokenizer?"
        )


def check_positions(config, position_ids: torch.Tensor, past_length: int | None = None) -> None:
    """A clear error for positions past `max_position_embeddings` (eager mode only, as `check_token_ids`).

    Positions, not the row length, are checked: a packed row of several sequences restarts its positions. A model
    with "dynamic" RoPE may go past the limit. `past_length` is given when the positions continue the cache, to say how many tokens were cached.
    """
    if torch.compiler.is_compiling() or position_ids.numel() == 0:
        return
    if (getattr(config, "rope_parameters", None) or {}).get("rope_type") == "dynamic":
        return  # dynamic RoPE exists to run past the trained length: it rescales its frequencies there
    last, limit = int(position_ids.max()), config.max_position_embeddings
    if last < limit:
        return
    if past_length is not None:
        new = last + 1 - past_length
        raise ValueError(
            f"Input of {last + 1} tokens ({past_length} cached + {new} new) is longer than the model's "
            f"max_position_embeddings={limit}."
        )
    raise ValueError(f"position {last} is past the model's max_position_embeddings={limit} (positions 0..{limit - 1}).")


def is_padding_free(position_ids, attention_mask) -> bool:
    """True for a flattened batch (positions restarting inside a row, no mask): transformers then keeps the sequences
    apart in the causal mask, but only without a cache, so none is made (native Llama makes one unless
    `use_cache=False`, and its packed sequences then see each other). Not checked while `torch.compile` traces."""
    if position_ids is None or attention_mask is not None or torch.compiler.is_compiling():
        return False
    return bool((position_ids[:, 1:] - position_ids[:, :-1] != 1).any())


def decoder_inputs(model, embed, input_ids, inputs_embeds, attention_mask, position_ids, cache, use_cache):
    """Embeddings `(B, T, C)`, position ids `(B|1, T)`, the KV cache and the causal mask, ready for the layers.

    Position ids continue after the cached tokens unless given (padding-free batches give restarting ones). The
    mask comes from transformers' `create_causal_mask`: None when SDPA can apply causality itself, else a mask
    combining causality with padding (or the 4-D mask given) in the form the attention kernel needs.
    解码器输入：词嵌入、位置编号（接在缓存之后）、KV 缓存与因果掩码。
    """
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
    if inputs_embeds is None:
        check_token_ids(model.config, input_ids)
        inputs_embeds = embed(input_ids)  # (B, T, C)
    if use_cache and cache is None and not is_padding_free(position_ids, attention_mask):
        cache = DynamicCache(config=model.config)
    past_length = None
    if position_ids is None:
        past_length = cache.get_seq_length() if cache is not None else 0
        position_ids = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device) + past_length
        position_ids = position_ids.unsqueeze(0)  # (1, T)
    check_positions(model.config, position_ids, past_length)
    causal_mask = create_causal_mask(
        config=model.config,
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        cache=cache,
        position_ids=position_ids,
    )
    return inputs_embeds, position_ids, cache, causal_mask


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """softmax(Q Kᵀ · scaling + mask) V, written out; the reference that SDPA must match."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, H, T, S)
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask  # 0 where allowed, dtype-min where masked
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value)  # (B, H, T, hd)
    return attn_output.transpose(1, 2).contiguous(), attn_weights  # (B, T, H, hd)


class ScratchPreTrainedModel(PreTrainedModel):
    """What both families support, and a `save_pretrained` that maps every head of the family in `auto_map`.

    A family's base class sets `config_class`, `base_model_prefix`, `_no_split_modules`, `_can_record_outputs`
    (the layer classes whose outputs `output_hidden_states` / `output_attentions` collect) and `auto_heads`.
    """

    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    auto_heads: dict[str, str] = {}  # Auto class name -> this family's class for it

    def __init__(self, config, *inputs, **kwargs):
        super().__init__(config, *inputs, **kwargs)
        # transformers' generic task heads build their base model with `AutoModel.from_config(config)`. Loaded as
        # remote code, the config's class is a copy that nothing registered, so register this family's base for it.
        base = getattr(sys.modules[type(self).__module__], self.auto_heads.get("AutoModel", ""), None)
        if base is not None and base.config_class.__name__ == type(config).__name__:
            AutoModel.register(type(config), base, exist_ok=True)

    def post_init(self):
        super().post_init()
        if getattr(self, "_tied_weights_keys", None) and self.config.tie_word_embeddings:
            # a tied head is not saved: a checkpoint without it is complete (Trainer's resume then ties, not warns)
            self._keys_to_ignore_on_save = list(self._tied_weights_keys)

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self.is_remote_code():
            # remote code loads the checkpoint with any head, not only with the one that saved it
            module = type(self).__module__.rpartition(".")[2]
            config = type(self.config)
            self.config.auto_map = {
                **(getattr(self.config, "auto_map", None) or {}),
                "AutoConfig": f"{config.__module__.rpartition('.')[2]}.{config.__name__}",
                **{auto: f"{module}.{name}" for auto, name in self.auto_heads.items()},
            }
        return super().save_pretrained(save_directory, *args, **kwargs)


class ScratchForCausalLM:
    """The forward of a language-modelling head: `lm_head` on the base model's last hidden states, plus the loss.

    Mixed into each family's `...ForCausalLM`, which builds `self.<base_model_prefix>` and `self.lm_head`.
    """

    @property
    def loss_function(self):
        """`causal_lm_loss` unless replaced (`model.loss_function = ...`), as transformers lets any model's be."""
        return getattr(self, "_loss_function", causal_lm_loss)

    @loss_function.setter
    def loss_function(self, value):
        self._loss_function = value

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CausalLMOutputWithPast:
        """Next-token logits, plus the loss when `labels` are given (shifted inside; -100 is ignored).

        计算下一个 token 的 logits；给出 `labels` 时在内部移位并计算交叉熵损失（-100 不计入）。
        """
        outputs = self.base_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        # generate() asks for the last position only: no logits for the whole prompt
        logits = self.lm_head(slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep))  # (B, T', V)
        cap = getattr(self.config, "final_logit_softcapping", None)
        if cap is not None:
            logits = cap * torch.tanh(logits / cap)  # (B, T', V), every logit inside (-cap, cap)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class CrossEntropyFromLogits(torch.autograd.Function):
    """Summed cross-entropy of `(N, V)` logits divided by `divisor`; same numbers as `F.cross_entropy`, less memory.

    `F.cross_entropy` keeps an `(N, V)` log-softmax for backward and builds two more `(N, V)` tensors there. This
    keeps only the log-sum-exp of each row and writes the gradient, softmax minus one-hot, in one pass into one new
    tensor. Row blocks of about 2**20 values keep the temporaries small (the logits are the largest tensor of a
    small model's step).
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
    the sum divided by `num_items_in_batch` when `Trainer` passes it (gradient accumulation), else the mean.

    因果语言模型损失：标签在内部右移一位（第 t 个 token 预测第 t+1 个），忽略 -100。
    """
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

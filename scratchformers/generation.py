"""Text in, text out: the one place that turns a prompt into a continuation with `model.generate()`.

Used by `scratchformers generate`, the samples printed after pretraining and SFT, and the demo's score. A plain
prompt starts after the BOS token; a chat prompt goes through the tokenizer's chat template and the answer stops at
the end of the assistant's turn (`chat_stop_token_ids`).
文本生成的唯一入口：命令行、预训练/SFT 结束时的样例与演示都调用这里。
"""

from __future__ import annotations

import logging

import torch

from .tokenization_scratch import IM_END

logger = logging.getLogger(__name__)


def chat_stop_token_ids(tokenizer) -> list[int]:
    """The ids that end an assistant turn: the chat template's `<|im_end|>`, and EOS (those the tokenizer has)."""
    im_end = [tokenizer.convert_tokens_to_ids(IM_END)] if IM_END in tokenizer.get_vocab() else []
    return im_end + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])


def answer_in_turns(model, tokenizer) -> None:
    """Make `model.generate()` stop at the end of the assistant's turn (not only at EOS) and pad with the pad token:
    what a chat model (SFT, DPO, GRPO) needs."""
    model.generation_config.eos_token_id = chat_stop_token_ids(tokenizer)
    model.generation_config.pad_token_id = tokenizer.pad_token_id


def prompt_ids(tokenizer, prompt: str, chat: bool = False) -> torch.Tensor:
    """`(1, T)` ids of a prompt: BOS + the text, or the chat template with the generation prompt."""
    if chat:
        encoded = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )
        return encoded["input_ids"]
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return torch.tensor([bos + ids], dtype=torch.long)


@torch.no_grad()
def generate_texts(model, tokenizer, prompt: str, max_new_tokens: int = 100, chat: bool = False, streamer=None,
                   **generate_kwargs) -> list[str]:
    """The continuation(s) of `prompt` (one per `num_return_sequences`), without the prompt and special tokens.

    `generate_kwargs` go to `model.generate` (`do_sample`, `temperature`, `top_k`, `top_p`, `num_beams`,
    `repetition_penalty`, ...). A prompt plus `max_new_tokens` longer than the model's context generates only what
    fits, with a warning; a tokenizer with more tokens than the model's vocabulary is an error.
    生成文本：返回不含提示词的续写；超出模型长度时只生成能容纳的部分并给出警告。
    """
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is {model.config.vocab_size}: "
            "use the tokenizer saved with the model"
        )
    input_ids = prompt_ids(tokenizer, prompt, chat).to(model.device)  # (1, T)
    limit = model.config.max_position_embeddings
    if input_ids.shape[1] >= limit:
        raise ValueError(f"the prompt is {input_ids.shape[1]} tokens, the model reads at most {limit}")
    if input_ids.shape[1] + max_new_tokens > limit:
        fits = limit - input_ids.shape[1]
        logger.warning(
            f"the prompt ({input_ids.shape[1]} tokens) and max_new_tokens={max_new_tokens} exceed the model's "
            f"{limit} positions: generating {fits} tokens"
        )
        max_new_tokens = fits
    was_training = model.training
    model.eval()
    out = model.generate(
        input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=max_new_tokens,
        eos_token_id=chat_stop_token_ids(tokenizer) if chat else tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        streamer=streamer,
        **generate_kwargs,
    )  # (num_return_sequences, T + new)
    model.train(was_training)
    return [tokenizer.decode(sequence[input_ids.shape[1]:], skip_special_tokens=True) for sequence in out]

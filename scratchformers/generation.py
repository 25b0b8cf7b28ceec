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


def chat_answers(model, tokenizer, prompts: list[str], max_new_tokens: int, samples: int = 0, temperature: float = 1.0,
                 batch_size: int = 32, seed: int = 0) -> list[str]:
    """Chat answers to `prompts`, a batch at a time (prompts padded on the left, as `generate` wants): the greedy one
    each (`samples=0`), or `samples` sampled at `temperature` each (prompt by prompt in the returned list)."""
    was_training = model.training
    model.eval()
    answers = []
    sampling = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0, num_return_sequences=samples)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the same draws before and after training, and the caller's generator left as it was
    for start in range(0, len(prompts), batch_size):
        rows = [prompt_ids(tokenizer, p, True)[0] for p in prompts[start:start + batch_size]]  # each (T_i,)
        width = max(len(r) for r in rows)
        room = model.config.max_position_embeddings - width  # an answer stops where the context ends
        if room <= 0:
            raise ValueError(f"a prompt of {width} tokens leaves no room in the model's context "
                             f"({model.config.max_position_embeddings}): {prompts[start:start + batch_size][0]!r:.80}")
        input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)  # (B, T)
        attention_mask = torch.zeros_like(input_ids)  # (B, T)
        for i, r in enumerate(rows):
            input_ids[i, width - len(r):] = r
            attention_mask[i, width - len(r):] = 1
        out = model.generate(input_ids.to(model.device), attention_mask=attention_mask.to(model.device),
                             max_new_tokens=min(max_new_tokens, room),
                             **(sampling if samples else {"do_sample": False}))
        answers += [a.strip() for a in tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)]  # (B*k,)
    torch.random.set_rng_state(generator_state)
    model.train(was_training)
    return answers


def greedy_answers(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 32) -> list[str]:
    """The greedy chat answer to each prompt."""
    return chat_answers(model, tokenizer, prompts, max_new_tokens, batch_size=batch_size)

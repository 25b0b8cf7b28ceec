"""Supervised fine-tuning (SFT): chat-template rendering, loss only on the assistant's tokens, `Trainer`."""

from __future__ import annotations

import torch
from transformers import TrainingArguments

from ..generation import answer_in_turns, generate_texts
from ..tokenization_scratch import load_tokenizer
from .arguments import SFTArguments
from .common import (
    ScratchTrainer,
    check_model_fits,
    load_pretrained,
    no_eval_without_data,
    start_run,
    train_and_save,
)
from .data import SFTCollator, build_sft_dataset, read_sft_jsonl
from .distill import check_distill_settings, load_teachers


def chat(model, tokenizer, user_message: str, max_new_tokens: int = 80, streamer=None, **generate_kwargs) -> str:
    """Answer one user message through the chat template (greedy unless told); returns the assistant's reply."""
    generate_kwargs = {"do_sample": False, **generate_kwargs}
    answer = generate_texts(model, tokenizer, user_message, max_new_tokens, chat=True, streamer=streamer, **generate_kwargs)
    return answer[0].strip()


def run_sft(args: SFTArguments, training_args: TrainingArguments, callbacks=None, verbose: bool = True) -> dict:
    """Fine-tune a pretrained causal LM on instruction or chat data; loss only on assistant tokens.

    JSONL rows hold `instruction`/`input`/`output` or chat `messages`; both go through the tokenizer's chat
    template. Saves model + tokenizer to `output_dir` and returns the final metrics.
    指令微调：数据经对话模板渲染，只对助手回复计算损失；保存模型与分词器。
    """
    if not args.model_name_or_path:
        raise ValueError("sft needs --model_name_or_path (a pretrained model folder, e.g. from `scratchformers pretrain`)")
    if not args.train_file:
        raise ValueError("sft needs --train_file (JSONL with instruction/input/output or messages)")
    if args.sample_max_new_tokens < 0:
        raise ValueError(f"--sample_max_new_tokens must be >= 0 (0: no answers), got {args.sample_max_new_tokens}")
    if args.distill_from:
        check_distill_settings(args.distill_alpha, args.distill_temperature)
    resume = start_run(training_args, args.overwrite)

    model = load_pretrained(args.model_name_or_path)
    tokenizer = load_tokenizer(args.model_name_or_path)
    if args.max_length is None:
        args.max_length = model.config.max_position_embeddings  # the longest sample the model can read
    check_model_fits(model.config, tokenizer, args.max_length)
    answer_in_turns(model, tokenizer)  # the tuned model answers in the chat template

    train_conversations = read_sft_jsonl(args.train_file)
    if args.validation_file:
        eval_conversations = read_sft_jsonl(args.validation_file)
    elif args.validation_split_percentage > 0 and len(train_conversations) >= 20:
        n_eval = max(1, int(len(train_conversations) * args.validation_split_percentage / 100))
        order = torch.randperm(len(train_conversations), generator=torch.Generator().manual_seed(training_args.seed))
        eval_conversations = [train_conversations[i] for i in order[:n_eval].tolist()]
        train_conversations = [train_conversations[i] for i in order[n_eval:].tolist()]
    else:
        eval_conversations = None
    with training_args.main_process_first(desc="rendering SFT data"):
        train_dataset = build_sft_dataset(
            train_conversations, tokenizer, args.max_length, args.num_proc, source=args.train_file
        )
        eval_dataset = None
        if eval_conversations:
            eval_dataset = build_sft_dataset(
                eval_conversations, tokenizer, args.max_length, args.num_proc, source=args.validation_file or "validation"
            )
    if verbose and training_args.process_index == 0:
        print(f"[sft] {len(train_dataset)} training conversations" + (
            f", {len(eval_dataset)} validation" if eval_dataset is not None else ""))
    teachers = load_teachers(args.distill_from, tokenizer, args.max_length, training_args.device)
    if teachers and verbose and training_args.process_index == 0:
        print(f"[sft] distilling {len(teachers)} teacher(s) ({', '.join(args.distill_from)}) on the assistant's "
              f"tokens: loss = {args.distill_alpha} x KL(teachers || model) + {1 - args.distill_alpha:g} x "
              "cross-entropy")
    no_eval_without_data(training_args, eval_dataset)
    trainer = ScratchTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=SFTCollator(tokenizer.pad_token_id),
        callbacks=callbacks,
        teachers=teachers,
        distill_alpha=args.distill_alpha,
        distill_temperature=args.distill_temperature,
    )
    extra = {"base_model": args.model_name_or_path}
    if teachers:
        extra.update(distilled_from=args.distill_from, distill_alpha=args.distill_alpha,
                     distill_temperature=args.distill_temperature)
    metrics = train_and_save(trainer, resume, "SFT", extra)
    if trainer.is_world_process_zero():
        if verbose:
            if "eval_loss" in metrics:
                print(f"[sft] validation loss on assistant tokens {metrics['eval_loss']:.4f} nats/token")
            trainer.model.eval()
            for prompt in args.sample_prompts if args.sample_max_new_tokens else []:
                answer = chat(trainer.model, tokenizer, prompt, args.sample_max_new_tokens)
                print(f"[sft] user: {prompt}\n[sft] assistant: {answer}\n")
            print(f"[sft] model and tokenizer saved to {training_args.output_dir}")
    return metrics

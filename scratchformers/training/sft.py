"""Supervised fine-tuning (SFT): chat-template rendering, loss only on the assistant's tokens, `Trainer`."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, TrainingArguments, set_seed

from ..tokenization_scratch import load_tokenizer
from .arguments import SFTArguments
from .common import ScratchTrainer, check_model_fits, check_output_dir, final_eval_metrics, no_eval_without_data, plot_loss_curve, resolve_checkpoint, write_json
from .data import SFTCollator, build_sft_dataset, read_sft_jsonl


@torch.no_grad()
def chat(model, tokenizer, user_message: str, max_new_tokens: int = 80, streamer=None, **generate_kwargs) -> str:
    """Answer one user message through the chat template; returns the assistant's reply."""
    messages = [{"role": "user", "content": user_message}]
    encoded = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    input_ids = encoded["input_ids"].to(model.device)  # (1, T)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    generate_kwargs = {"do_sample": False, **generate_kwargs}
    out = model.generate(
        input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=max_new_tokens,
        eos_token_id=[im_end, tokenizer.eos_token_id],
        pad_token_id=tokenizer.pad_token_id,
        streamer=streamer,
        **generate_kwargs,
    )  # (1, T + new)
    return tokenizer.decode(out[0, input_ids.shape[1] :], skip_special_tokens=True).strip()


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
    resume = resolve_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    if training_args.process_index == 0:
        check_output_dir(training_args.output_dir, args.overwrite, resume)
    set_seed(training_args.seed)

    tokenizer = load_tokenizer(args.model_name_or_path)
    if not Path(args.model_name_or_path, "config.json").is_file():
        raise FileNotFoundError(f"no model in {args.model_name_or_path}: config.json is missing")
    model = AutoModelForCausalLM.from_pretrained(args.model_name_or_path)
    check_model_fits(model.config, tokenizer, args.max_length)

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
    no_eval_without_data(training_args, eval_dataset)
    trainer = ScratchTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=SFTCollator(tokenizer.pad_token_id),
        callbacks=callbacks,
    )
    train_result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    metrics = {**train_result.metrics, "global_step": trainer.state.global_step, "world_size": training_args.world_size}
    metrics.update(final_eval_metrics(trainer))
    if trainer.is_world_process_zero():
        trainer.save_state()
        write_json(Path(training_args.output_dir) / "all_results.json", metrics)
        plot_loss_curve(trainer.state.log_history, Path(training_args.output_dir) / "loss_curve.png", "SFT")
        if verbose:
            if "eval_loss" in metrics:
                print(f"[sft] validation loss on assistant tokens {metrics['eval_loss']:.4f} nats/token")
            trainer.model.eval()
            for prompt in args.sample_prompts:
                answer = chat(trainer.model, tokenizer, prompt, args.sample_max_new_tokens)
                print(f"[sft] user: {prompt}\n[sft] assistant: {answer}\n")
            print(f"[sft] model and tokenizer saved to {training_args.output_dir}")
    return metrics

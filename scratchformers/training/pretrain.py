"""Pretraining a causal LM with `Trainer`: corpus -> (tokenizer) -> packed blocks -> train -> evaluate -> save."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import TrainingArguments, default_data_collator

from ..families import family_of
from ..utils import config_from_preset
from .arguments import ModelArguments, PretrainDataArguments
from .budget import TimeBudget, parse_duration
from .common import (
    ScratchTrainer,
    get_tokenizer,
    load_config,
    build_causal_lm,
    final_eval_metrics,
    nats_per_character,
    no_eval_without_data,
    parse_config_overrides,
    parse_reference_point,
    plot_loss_vs_time,
    sample_texts,
    start_run,
    train_and_save,
)
from .data import EpochToDataset, LateDropout, RandomWindows, pack_dataset, pack_splits, split_validation
from .distill import check_distill_settings, load_teachers

logger = logging.getLogger(__name__)


def run_pretrain(
    model_args: ModelArguments,
    data_args: PretrainDataArguments,
    training_args: TrainingArguments,
    callbacks=None,
    verbose: bool = True,
) -> dict:
    """Pretrain a GPT or LLaMA2 model from scratch (or continue one) with the HF `Trainer`; a BERT preset or model
    goes to masked-LM pretraining (`scratchformers.training.mlm.run_mlm`).

    Saves the model and tokenizer to `output_dir` (loadable by `AutoModelForCausalLM` and `pipeline`), plus
    `loss_curve.png`, TensorBoard logs (`report_to tensorboard`), `samples.txt` and `all_results.json`; returns the
    final metrics. With validation text, the final metrics include `eval_nats_per_char` (the whole validation text
    scored in windows of the model's context, comparable across tokenizers). With `data_args.time_budget`, training
    stops when the budget is spent, the learning rate follows the time, and `loss_vs_time.png` is drawn.
    用 HF Trainer 从零预训练（或继续训练）GPT / LLaMA2；可按时间预算训练；保存模型、分词器、损失曲线和 TensorBoard 日志。
    """
    if not model_args.model_name_or_path:  # a bad preset or override fails now, before anything is written
        config = config_from_preset(model_args.preset, **parse_config_overrides(model_args.config_overrides))
    else:
        config = load_config(model_args.model_name_or_path)
    if data_args.sample_max_new_tokens < 0:
        raise ValueError(f"--sample_max_new_tokens must be >= 0 (0: no samples), got {data_args.sample_max_new_tokens}")
    if not family_of(config).is_decoder:
        if data_args.distill_from:
            raise ValueError(f"--distill_from trains a causal LM (GPT or LLaMA2); {config.model_type} is an encoder")
        from .mlm import run_mlm

        return run_mlm(model_args, data_args, training_args, callbacks, verbose)
    if data_args.distill_from:  # bad settings fail now, before anything is written
        check_distill_settings(data_args.distill_alpha, data_args.distill_temperature)
    budget = TimeBudget(parse_duration(data_args.time_budget)) if data_args.time_budget else None
    references = [parse_reference_point(text) for text in data_args.reference_points]
    resume = start_run(training_args, data_args.overwrite)
    raw_train, raw_eval = split_validation(data_args, training_args.seed)

    teachers = data_args.distill_from
    tokenizer = get_tokenizer(model_args, raw_train, training_args, resume, teacher=teachers[0] if teachers else None)
    if teachers:  # checked before the corpus is packed
        teachers = load_teachers(teachers, tokenizer, data_args.block_size, training_args.device)
    model = build_causal_lm(
        model_args.model_name_or_path,
        model_args.preset,
        tokenizer,
        data_args.block_size,
        model_args.config_overrides,
        model_args.attn_implementation,
    )
    train_dataset, eval_dataset = pack_splits(pack_dataset, raw_train, raw_eval, tokenizer, data_args, training_args)

    n_params = sum(p.numel() for p in model.parameters())
    if verbose and training_args.process_index == 0:
        print(
            f"[pretrain] {type(model).__name__}: {n_params:,} parameters, vocab {len(tokenizer)}, "
            f"{len(train_dataset)} train blocks x {data_args.block_size} tokens"
            + (f", {len(eval_dataset)} validation blocks" if eval_dataset is not None else "")
        )
    if teachers and verbose and training_args.process_index == 0:
        print(f"[pretrain] distilling {len(teachers)} teacher(s) ({', '.join(data_args.distill_from)}): loss = "
              f"{data_args.distill_alpha} x KL(teachers || model) at temperature {data_args.distill_temperature}"
              f" + {1 - data_args.distill_alpha:g} x cross-entropy")
    no_eval_without_data(training_args, eval_dataset)
    callbacks = list(callbacks or [])
    if data_args.window_sampling == "random":
        train_dataset = RandomWindows(train_dataset, data_args.block_size, training_args.seed)
        callbacks.append(EpochToDataset(train_dataset))
    if data_args.dropout_after_epochs:
        callbacks.append(LateDropout(model, data_args.dropout_after_epochs))
    trainer = ScratchTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=default_data_collator,
        callbacks=callbacks,
        time_budget=budget,
        use_muon=data_args.use_muon,
        teachers=teachers,
        distill_alpha=data_args.distill_alpha,
        distill_temperature=data_args.distill_temperature,
    )

    def evaluate(trainer):
        metrics = final_eval_metrics(trainer)
        if budget is not None:
            metrics.update(
                time_budget_seconds=budget.seconds,
                train_wall_seconds=round(budget.elapsed(), 2),
                final_learning_rate=trainer.lr_scheduler.get_last_lr()[0],
            )
        if raw_eval is not None and trainer.is_world_process_zero():
            scored = nats_per_character(trainer.model, tokenizer, raw_eval["text"])
            metrics.update({f"eval_{key}": value for key, value in scored.items()})
        return metrics

    extra = {"num_parameters": n_params}
    if teachers:
        extra.update(distilled_from=data_args.distill_from, distill_alpha=data_args.distill_alpha,
                     distill_temperature=data_args.distill_temperature)
    metrics = train_and_save(trainer, resume, "pretraining", extra, evaluate)
    output_dir = Path(training_args.output_dir)
    if trainer.is_world_process_zero():
        drawn = None
        if budget is not None and raw_eval is not None:
            chars_per_token = metrics["eval_characters"] / metrics["eval_tokens"]
            history = trainer.state.log_history + [
                {"elapsed_seconds": metrics["train_wall_seconds"], "eval_loss": metrics["eval_nats_per_token"]}
            ]
            drawn = plot_loss_vs_time(history, output_dir / "loss_vs_time.png", chars_per_token, references,
                                      "pretraining")
        samples = []
        if data_args.sample_max_new_tokens:
            samples = sample_texts(
                trainer.model, tokenizer, data_args.sample_prompts, data_args.sample_max_new_tokens, training_args.seed
            )
            if data_args.sample_max_chars:
                samples = [text[: data_args.sample_max_chars] for text in samples]
            (output_dir / "samples.txt").write_text(
                "".join(f"--- prompt {p!r}\n{text}\n\n" for p, text in zip(data_args.sample_prompts, samples)),
                encoding="utf-8",
            )
        # an earlier run's files in a folder reused with --overwrite or resumed, which this run did not write again
        stale = [name for name, written in (("loss_vs_time.png", drawn), ("samples.txt", samples))
                 if not written and (output_dir / name).is_file()]
        for name in stale:
            (output_dir / name).unlink()
        if verbose:
            if stale:
                print(f"[pretrain] removed {' and '.join(stale)} of an earlier run: this run wrote none")
            if budget is not None:
                print(
                    f"[pretrain] trained {metrics['train_wall_seconds']:.0f} s of a {budget.seconds:.0f} s budget: "
                    f"{metrics['global_step']} steps"
                )
            if "eval_loss" in metrics:
                print(
                    f"[pretrain] validation loss {metrics['eval_loss']:.4f} nats/token "
                    f"(perplexity {metrics['eval_perplexity']:.2f})"
                )
            if "eval_nats_per_char" in metrics:
                print(
                    f"[pretrain] whole validation text: {metrics['eval_nats_per_char']:.4f} nats/char "
                    f"({metrics['eval_characters']:,} characters, context {metrics['eval_context']})"
                )
            for prompt, text in zip(data_args.sample_prompts, samples):
                print(f"[pretrain] sample (prompt {prompt!r}):\n{text}\n")
            saved = "samples.txt and loss curves" if samples else "loss curves"
            print(f"[pretrain] model, tokenizer, {saved} saved to {training_args.output_dir}")
    return metrics

"""Masked-LM pretraining of an encoder with `Trainer`: corpus -> (WordPiece tokenizer) -> [CLS] ... [SEP] blocks ->
15% of the tokens masked anew in every batch -> train -> evaluate -> fill-mask samples -> save.

`scratchformers pretrain --preset bert-mini ...` comes here: the family of the preset (or of the model folder) says
whether a model is pretrained as a causal LM (`pretrain.py`) or as a masked LM.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling, TrainingArguments, pipeline

from .arguments import ModelArguments, PretrainDataArguments
from .budget import TimeBudget, parse_duration
from .common import (
    ScratchTrainer,
    build_config,
    get_tokenizer,
    check_model_fits,
    load_pretrained,
    no_eval_without_data,
    start_run,
    train_and_save,
)
from .data import LateDropout, WholeWordMaskCollator, pack_mlm_dataset, pack_splits, split_validation


def masked_token_accuracy(eval_prediction) -> dict:
    """Share of masked tokens whose arg-max prediction is the original token (predictions are arg-maxes already)."""
    predictions, labels = eval_prediction.predictions, eval_prediction.label_ids
    masked = labels != -100
    if not masked.any():
        return {"masked_accuracy": 0.0}
    return {"masked_accuracy": float((predictions[masked] == labels[masked]).mean())}


def _argmax(logits, labels):
    """Predicted ids `(B, T)` instead of the logits, kept for the whole validation set. With `sparse_prediction`
    the logits are one row per masked token: put them back at their positions (Trainer cuts batches by rows)."""
    predictions = logits.argmax(dim=-1)
    if predictions.shape != labels.shape:
        predictions = torch.full_like(labels, -100).masked_scatter(labels != -100, predictions)
    return predictions


def mlm_collator(tokenizer, args: PretrainDataArguments, seed: int | None = None):
    """transformers' MLM collator: `mlm_probability` of the real tokens (never [CLS], [SEP], [PAD]) become labels;
    of those 80% are replaced by [MASK], 10% by a random token, 10% kept; whole words with `--whole_word_mask`."""
    if not 0 < args.mlm_probability < 1:
        raise ValueError(f"--mlm_probability must be between 0 and 1, got {args.mlm_probability}")
    if args.whole_word_mask:
        return WholeWordMaskCollator(tokenizer, mlm_probability=args.mlm_probability, seed=seed)
    return DataCollatorForLanguageModeling(tokenizer, mlm_probability=args.mlm_probability, seed=seed)


def fill_mask_samples(model, tokenizer, texts: list[str], top_k: int = 3) -> list[str]:
    """For a few validation texts: mask one word in the middle and show the model's top guesses (`pipeline`)."""
    fill = pipeline("fill-mask", model=model, tokenizer=tokenizer, device=model.device, top_k=top_k)
    lines = []
    for text in texts:
        words = tokenizer.tokenize(text)[: model.config.max_position_embeddings - 2]
        candidates = [i for i, token in enumerate(words) if token.isalnum()]
        if len(candidates) < 3:
            continue
        i = candidates[len(candidates) // 2]
        masked = tokenizer.convert_tokens_to_string(words[:i] + [tokenizer.mask_token] + words[i + 1:])
        guesses = ", ".join(f"{g['token_str']} ({g['score']:.2f})" for g in fill(masked))
        lines.append(f"{masked}\n  answer: {words[i]} | model: {guesses}")
    return lines


def run_mlm(
    model_args: ModelArguments,
    data_args: PretrainDataArguments,
    training_args: TrainingArguments,
    callbacks=None,
    verbose: bool = True,
) -> dict:
    """Pretrain a BERT-style encoder with the masked-LM objective (or continue one) on the HF `Trainer`.

    Saves the model and tokenizer to `output_dir` (`pipeline("fill-mask", output_dir)` and
    `AutoModelForSequenceClassification.from_pretrained(output_dir)` load it), `loss_curve.png`, `samples.txt`
    (fill-mask guesses on validation text) and `all_results.json` with `eval_loss` and `eval_masked_accuracy`.
    With `data_args.time_budget`, training stops when the budget is spent and the learning rate follows the time.
    用掩码语言模型目标（随机遮住 15% 的 token 并预测原词）从零预训练 BERT 风格编码器；可按时间预算训练。
    """
    budget = TimeBudget(parse_duration(data_args.time_budget)) if data_args.time_budget else None
    resume = start_run(training_args, data_args.overwrite)
    raw_train, raw_eval = split_validation(data_args, training_args.seed)
    tokenizer = get_tokenizer(model_args, raw_train, training_args, resume, default_type="wordpiece")
    kwargs = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    if model_args.model_name_or_path:
        model = load_pretrained(model_args.model_name_or_path, AutoModelForMaskedLM, **kwargs)
    else:
        # sparse_prediction: the vocabulary projection of the 85% of tokens that carry no label is skipped (about
        # twice the steps per second for bert-mini on a CPU); --config_overrides sparse_prediction=false turns it off
        config = build_config(model_args.preset, tokenizer, model_args.config_overrides,
                              max_position_embeddings=data_args.block_size, sparse_prediction=True)
        model = AutoModelForMaskedLM.from_config(config, **kwargs)
    check_model_fits(model.config, tokenizer, data_args.block_size)

    train_dataset, eval_dataset = pack_splits(pack_mlm_dataset, raw_train, raw_eval, tokenizer, data_args,
                                              training_args)
    n_params = sum(p.numel() for p in model.parameters())
    if verbose and training_args.process_index == 0:
        print(
            f"[mlm] {type(model).__name__}: {n_params:,} parameters, vocab {len(tokenizer)}, {len(train_dataset)} "
            f"train blocks x {data_args.block_size} tokens, {data_args.mlm_probability:.0%} masked"
            + (" (whole words)" if data_args.whole_word_mask else "")
            + (f", {len(eval_dataset)} validation blocks" if eval_dataset is not None else "")
        )
    no_eval_without_data(training_args, eval_dataset)
    callbacks = list(callbacks or [])
    if data_args.dropout_after_epochs:
        callbacks.append(LateDropout(model, data_args.dropout_after_epochs))
    trainer = ScratchTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=mlm_collator(tokenizer, data_args),
        compute_metrics=masked_token_accuracy,
        preprocess_logits_for_metrics=_argmax,
        callbacks=callbacks,
        time_budget=budget,
        use_muon=data_args.use_muon,
    )

    def evaluate(trainer):
        metrics = {}
        if eval_dataset is not None:
            # the final figure on masks drawn from a fixed seed, so that two runs are scored on the same masks
            trainer.data_collator = mlm_collator(tokenizer, data_args, seed=training_args.seed)
            metrics = trainer.evaluate()
        if budget is not None:
            metrics.update(time_budget_seconds=budget.seconds, train_wall_seconds=round(budget.elapsed(), 2))
        return metrics

    metrics = train_and_save(trainer, resume, "masked-LM pretraining", {"num_parameters": n_params}, evaluate)
    if trainer.is_world_process_zero():
        output_dir = Path(training_args.output_dir)
        source = raw_eval if raw_eval is not None else raw_train
        samples = fill_mask_samples(trainer.model.eval(), tokenizer, source["text"][:5])
        (output_dir / "samples.txt").write_text("\n\n".join(samples) + "\n", encoding="utf-8")
        if verbose:
            if budget is not None:
                print(f"[mlm] trained {metrics['train_wall_seconds']:.0f} s of a {budget.seconds:.0f} s budget: "
                      f"{metrics['global_step']} steps")
            if "eval_loss" in metrics:
                print(f"[mlm] validation: loss {metrics['eval_loss']:.4f} on masked tokens, "
                      f"{metrics['eval_masked_accuracy']:.1%} of them predicted exactly")
            for sample in samples[:3]:
                print(f"[mlm] fill-mask: {sample}")
            print(f"[mlm] model, tokenizer and samples.txt saved to {output_dir}; try "
                  f"pipeline('fill-mask', model={str(output_dir)!r})")
    return metrics


__all__ = ["run_mlm", "mlm_collator", "masked_token_accuracy", "fill_mask_samples"]

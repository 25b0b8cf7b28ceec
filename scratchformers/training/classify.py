"""Sequence-classification fine-tuning from CSV (`text,label`) with accuracy, for every family, fully or with LoRA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    TrainingArguments,
)

from ..tokenization_scratch import load_tokenizer
from .arguments import ClassifyArguments
from .common import (
    ScratchTrainer,
    build_config,
    check_model_fits,
    load_pretrained,
    no_eval_without_data,
    start_run,
    train_and_save,
)
from .data import load_classification_csv


def accuracy(eval_prediction) -> dict:
    """Share of rows whose arg-max logit is the gold label."""
    logits, labels = eval_prediction.predictions, eval_prediction.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def with_lora(model, args: ClassifyArguments):
    """The model as `--lora` asks: unchanged, wrapped by PEFT, or with `scratchformers.lora` layers added. Both LoRAs
    adapt the family's default targets (every linear layer of the blocks) and train the classification head."""
    from ..lora import LoraSettings, add_lora, family_target_modules

    if args.lora not in ("none", "peft", "hand"):
        raise ValueError(f"--lora must be none, peft or hand, got {args.lora!r}")
    if args.lora_embeddings and args.lora == "none":
        raise ValueError("--lora_embeddings adapts the embedding with LoRA: pass --lora peft or --lora hand too")
    targets = family_target_modules(model, embeddings=True) if args.lora_embeddings else None  # None: the defaults
    if args.lora == "peft":
        from ..peft_utils import get_peft_lora_model

        return get_peft_lora_model(model, task_type="SEQ_CLS", r=args.lora_r, lora_alpha=args.lora_alpha,
                                   lora_dropout=0.0, target_modules=targets)
    if args.lora == "hand":
        return add_lora(model, LoraSettings(r=args.lora_r, lora_alpha=args.lora_alpha, task_type="SEQ_CLS",
                                            target_modules=targets))
    return model


def save_merged_and_adapter(model, output_dir) -> None:
    """After hand-rolled LoRA: the adapter to `output_dir/adapter` (PEFT's format) and, in `output_dir`, the model
    with every update merged into its weights, an ordinary classifier that loads without any LoRA code."""
    import copy

    from ..lora import save_lora_adapter, unload_lora

    save_lora_adapter(model, Path(output_dir) / "adapter", overwrite=True)
    unload_lora(copy.deepcopy(model), merge=True).save_pretrained(output_dir)


def run_classify(args: ClassifyArguments, training_args: TrainingArguments, callbacks=None, verbose=True) -> dict:
    """Fine-tune a sequence classifier of any family (GPT, LLaMA2: last token; BERT: [CLS]) on CSV text,label files.

    Reports accuracy on the validation (and test) file; saves model + tokenizer with id2label/label2id. With
    `args.lora` "peft" the folder holds the PEFT adapter, with "hand" the merged model and `adapter/`.
    在 text,label 格式的 CSV 上微调序列分类模型（各模型族均可），报告准确率。
    """
    if not args.train_file:
        raise ValueError("classify needs --train_file (CSV with columns text,label)")
    resume = start_run(training_args, args.overwrite)

    files = {"train": args.train_file}
    if args.validation_file:
        files["validation"] = args.validation_file
    if args.test_file:
        files["test"] = args.test_file
    data, label_names = load_classification_csv(files, args.text_column, args.label_column, args.labels or None)

    tokenizer_source = args.tokenizer_name_or_path or args.model_name_or_path
    if not tokenizer_source:
        raise ValueError("classify needs --tokenizer_name_or_path when no --model_name_or_path is given")
    tokenizer = load_tokenizer(tokenizer_source)
    label_kwargs = dict(
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        pad_token_id=tokenizer.pad_token_id,  # the head pools the last non-pad token
    )
    if args.model_name_or_path:
        model = load_pretrained(args.model_name_or_path, AutoModelForSequenceClassification, **label_kwargs)
    else:
        config = build_config(args.preset, tokenizer, args.config_overrides, **label_kwargs)
        model = AutoModelForSequenceClassification.from_config(config)
    max_length = args.max_length or min(256, model.config.max_position_embeddings)
    check_model_fits(model.config, tokenizer, max_length)
    model = with_lora(model, args)

    def tokenize(batch):
        return tokenizer(batch[args.text_column], truncation=True, max_length=max_length)

    with training_args.main_process_first(desc="tokenizing"):
        data = data.map(tokenize, batched=True, remove_columns=[args.text_column], desc="Tokenizing")

    no_eval_without_data(training_args, data.get("validation"))
    trainer = ScratchTrainer(
        model=model,
        args=training_args,
        train_dataset=data["train"],
        eval_dataset=data.get("validation"),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy,
        callbacks=callbacks,
    )

    def evaluate(trainer):
        metrics = trainer.evaluate() if "validation" in data else {}
        if "test" in data:
            metrics.update(trainer.evaluate(data["test"], metric_key_prefix="test"))
        return metrics

    metrics = train_and_save(trainer, resume, "classification", {"labels": label_names}, evaluate)
    if args.lora == "hand" and trainer.is_world_process_zero():
        save_merged_and_adapter(model, training_args.output_dir)
    if trainer.is_world_process_zero():
        if verbose:
            for split in ("eval", "test"):
                if f"{split}_accuracy" in metrics:
                    name = "validation" if split == "eval" else "test"
                    print(f"[classify] {name} accuracy {metrics[f'{split}_accuracy']:.4f} (labels {label_names})")
            print(f"[classify] model and tokenizer saved to {training_args.output_dir}")
    return metrics

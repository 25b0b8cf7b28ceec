"""What a gpt-mini reaches on tinyshakespeare in N CPU minutes, in nats per CHARACTER (comparable with nanoGPT).

nanoGPT's character-level Shakespeare model reports a validation loss of about 1.47 nats per character (GPU, 5000
iterations). Our models use a BPE tokenizer, so the per-token loss is not comparable; this script reports
    total nats over every validation token / number of validation characters
with the same split as nanoGPT (first 90% of the characters train, last 10% validate).

Training stops at the wall-clock budget; the learning rate follows a cosine over the elapsed *time* (not steps) so
that it has decayed when the budget ends. Run from the repository root:

    python benchmarks/tinyshakespeare_10min.py --data ../shared/data/en_tinyshakespeare.txt --minutes 10

Writes results.json and loss_curve.png into --output_dir. The shared data is read, never copied into the repo.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import AutoModelForCausalLM, TrainerCallback, TrainingArguments, default_data_collator, set_seed

import scratchformers
from scratchformers.tokenization_scratch import train_tokenizer
from scratchformers.training.common import ScratchTrainer, build_config, plot_loss_curve
from scratchformers.training.data import load_text_dataset, pack_dataset


class TimeBudget(TrainerCallback):
    """Stops training once `seconds` of training wall-clock time have passed."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = None

    def fraction(self) -> float:
        return 0.0 if self.start is None else min(1.0, (time.perf_counter() - self.start) / self.seconds)

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.fraction() >= 1.0:
            control.should_training_stop = True
            control.should_save = False


class TimedTrainer(ScratchTrainer):
    """Warmup over the first 2% of the time budget, then cosine decay to 10% over the remaining time."""

    budget: TimeBudget

    def create_scheduler(self, num_training_steps, optimizer=None):
        def lr_factor(_step):
            f = self.budget.fraction()
            if f < 0.02:
                return max(f / 0.02, 0.01)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (f - 0.02) / 0.98))

        self.lr_scheduler = LambdaLR(optimizer or self.optimizer, lr_factor)
        return self.lr_scheduler


@torch.no_grad()
def nats_per_character(model, tokenizer, text: str, block_size: int, batch_size: int = 8) -> dict:
    """Cross-entropy summed over every token of `text` (each predicted with up to block_size tokens of context,
    the first from <|endoftext|>), divided by len(text)."""
    model.eval()
    ids = [tokenizer.eos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]
    starts = list(range(0, len(ids) - 1, block_size))
    total_nats, total_tokens = 0.0, 0
    for i in range(0, len(starts), batch_size):
        chunks = [ids[s : s + block_size + 1] for s in starts[i : i + batch_size]]
        length = max(len(c) for c in chunks)
        inputs = torch.full((len(chunks), length - 1), tokenizer.pad_token_id)  # (B, T)
        targets = torch.full((len(chunks), length - 1), -100)  # (B, T)
        for row, chunk in enumerate(chunks):
            inputs[row, : len(chunk) - 1] = torch.tensor(chunk[:-1])
            targets[row, : len(chunk) - 1] = torch.tensor(chunk[1:])
        logits = model(input_ids=inputs.to(model.device)).logits.float()  # (B, T, V)
        nats = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), targets.flatten().to(model.device), ignore_index=-100, reduction="sum"
        )
        total_nats += nats.item()
        total_tokens += int((targets != -100).sum())
    assert total_tokens == len(ids) - 1
    return {
        "val_nats_per_char": total_nats / len(text),
        "val_nats_per_token": total_nats / total_tokens,
        "val_tokens": total_tokens,
        "val_chars": len(text),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/en_tinyshakespeare.txt")
    parser.add_argument("--minutes", type=float, default=10.0, help="training wall-clock budget")
    parser.add_argument("--preset", default="gpt-mini")
    parser.add_argument("--config_overrides", default=None)
    parser.add_argument("--vocab_size", type=int, default=1024)
    parser.add_argument("--block_size", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--output_dir", default="benchmark_output/tinyshakespeare")
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args()

    data = Path(args.data)
    if not data.is_file():
        raise SystemExit(f"tinyshakespeare not found at {data}; pass --data PATH/en_tinyshakespeare.txt")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(args.seed)
    text = data.read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)  # nanoGPT's split
    train_text, val_text = text[:cut], text[cut:]
    (out / "train.txt").write_text(train_text, encoding="utf-8")

    tokenizer = train_tokenizer([train_text], vocab_size=args.vocab_size, show_progress=False)
    tokenizer.save_pretrained(out / "model")
    train_dataset = pack_dataset(
        load_text_dataset([str(out / "train.txt")], split_by="document"), tokenizer, args.block_size
    )
    config = build_config(args.preset, tokenizer, args.config_overrides)
    model = AutoModelForCausalLM.from_config(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.preset}: {n_params:,} parameters; {len(train_dataset)} blocks of {args.block_size} tokens; "
          f"vocab {len(tokenizer)}; torch threads {torch.get_num_threads()}; budget {args.minutes} min")

    budget = TimeBudget(args.minutes * 60)
    training_args = TrainingArguments(
        output_dir=str(out / "run"),
        max_steps=1_000_000,  # the time budget stops training
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weight_decay=0.1,
        adam_beta2=0.99,
        max_grad_norm=1.0,
        logging_steps=20,
        save_strategy="no",
        eval_strategy="no",
        report_to=["tensorboard"],
        use_cpu=True,
        seed=args.seed,
        disable_tqdm=True,
    )
    trainer = TimedTrainer(
        model=model, args=training_args, train_dataset=train_dataset, data_collator=default_data_collator,
        processing_class=tokenizer, callbacks=[budget],
    )
    trainer.budget = budget
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    trainer.save_model(out / "model")
    result = nats_per_character(trainer.model, tokenizer, val_text, args.block_size)
    tokens_seen = trainer.state.global_step * args.batch_size * args.block_size
    result.update(
        preset=args.preset,
        parameters=n_params,
        vocab_size=len(tokenizer),
        steps=trainer.state.global_step,
        train_tokens_seen=tokens_seen,
        epochs=tokens_seen / (len(train_dataset) * args.block_size),
        train_seconds=round(train_seconds, 1),
        torch_threads=torch.get_num_threads(),
        cpu_count=os.cpu_count(),
        load_average_at_end=os.getloadavg(),
        machine=platform.processor() or platform.machine(),
        torch=torch.__version__,
        scratchformers=scratchformers.__version__,
    )
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_loss_curve(trainer.state.log_history, out / "loss_curve.png", "tinyshakespeare, time-budgeted")
    print(json.dumps(result, indent=2))
    print(f"validation loss: {result['val_nats_per_char']:.3f} nats/char ({result['val_nats_per_token']:.3f} "
          f"nats/token) after {result['steps']} steps in {train_seconds / 60:.1f} min")


if __name__ == "__main__":
    main()

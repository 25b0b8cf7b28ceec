"""Full fine-tuning vs PEFT LoRA vs hand-rolled LoRA (scratchformers.lora), on every model family.

For each family (GPT, LLaMA2, BERT) the script
1. trains a tokenizer on the task texts (byte-level BPE for the decoders, WordPiece for BERT),
2. pretrains a small base on the same texts (packed blocks; a causal LM, or a masked LM for BERT), so that
   fine-tuning starts from a model that has seen the language, as it would in practice,
3. fine-tunes three copies of that base on each task, interleaved step by step in this one process with the same
   batches: full fine-tuning, PEFT LoRA (`get_peft_model`) and hand-rolled LoRA (`scratchformers.lora.add_lora`).
   Both LoRA runs get the same seed, hence the same A (both initialise like PEFT), so their loss curves should
   coincide; the report gives the largest difference.

Tasks (from --data-dir, by default ../shared/data):
- sft_en: GSM8K instruction tuning (causal LM, loss on the answer tokens only), eval loss on the GSM8K test split;
- cls_en: SST-2 sentiment, accuracy on the SST-2 test split;
- cls_zh: ChnSentiCorp sentiment (hotel reviews), accuracy on its test split.
BERT, an encoder, runs the classification tasks only.

Measured per (family, task, method): trainable parameters, checkpoint size (full: model.safetensors; LoRA:
adapter_model.safetensors, with `score` for classification), median training step time (forward + backward +
AdamW, interleaved round-robin so machine load hits all methods alike; the first steps are warmup), peak memory
of one training step (the highest sum of live tensor bytes torch allocates during a step, from torch.profiler's
memory events, as benchmarks/bench_models.py measures it) plus the parameter and AdamW-state bytes that live
across steps, loss curves, eval loss (SFT) and test accuracy (classification).

Run from the repository root:
    python benchmarks/lora_report.py                 # default size (~10 min), writes benchmarks/lora_report/
    python benchmarks/lora_report.py --quick         # smoke size, about a minute
Options: --families gpt llama2 bert, --tasks sft_en cls_en cls_zh, --steps, --pretrain-steps, --data-dir, --out,
--threads (default 1), --render-only (rewrite report.md and plots from results.json).
"""

import argparse
import csv
import datetime
import itertools
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import scratchformers as sf
from scratchformers import lora
from scratchformers.peft_utils import get_peft_lora_model

TASKS = {
    "sft_en": dict(kind="sft", train="sft_en_gsm8k_train.jsonl", test="sft_en_gsm8k_test.jsonl",
                   title="SFT, GSM8K (en)"),
    "cls_en": dict(kind="cls", train="cls_en_sst2_train.csv", test="cls_en_sst2_test.csv",
                   title="Sentiment, SST-2 (en)"),
    "cls_zh": dict(kind="cls", train="cls_zh_chnsenticorp_train.csv", test="cls_zh_chnsenticorp_test.csv",
                   title="Sentiment, ChnSentiCorp (zh)"),
}
METHODS = ("full", "peft", "hand")
METHOD_TITLES = {"full": "full fine-tuning", "peft": "PEFT LoRA", "hand": "hand-rolled LoRA"}
SIZES = {
    "quick": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                  intermediate_size=64, vocab_size=300, seq_len=32, batch_size=4, n_train=48, n_test=16,
                  pretrain_steps=4, steps=6, warmup_steps=2, r=4, lora_alpha=8),
    "default": dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                    intermediate_size=192, vocab_size=1024, seq_len=64, batch_size=16, n_train=3000, n_test=400,
                    pretrain_steps=600, steps=400, warmup_steps=10, r=8, lora_alpha=16),
}
LR = {"pretrain": 2e-3, "full": 5e-4, "peft": 2e-3, "hand": 2e-3}
FAMILIES = ("gpt", "llama2", "bert")
ENCODERS = ("bert",)  # masked-LM pretraining, classification tasks only


def log(*args):
    print(f"[lora_report {time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------- data


def read_sft(path: Path, n: int, seed: int) -> list[tuple[str, str]]:
    pairs = []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                prompt = f"Question: {row['instruction']}\n{row.get('input') or ''}".rstrip() + "\nAnswer: "
                pairs.append((prompt, row["output"]))
            except (json.JSONDecodeError, KeyError) as err:
                raise ValueError(f"{path}:{line_number}: not an SFT record with instruction/output ({err})") from err
    random.Random(seed).shuffle(pairs)
    return pairs[:n]


def read_cls(path: Path, n: int, seed: int) -> list[tuple[str, int]]:
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for line_number, row in enumerate(csv.DictReader(f), 2):
            if row.get("label") not in ("0", "1") or not row.get("text"):
                raise ValueError(f"{path}:{line_number}: expected text and a 0/1 label, got {row}")
            rows.append((row["text"], int(row["label"])))
    random.Random(seed).shuffle(rows)
    return rows[:n]


def load_task_data(data_dir: Path, task: str, size: dict, seed: int) -> dict:
    spec = TASKS[task]
    reader = read_sft if spec["kind"] == "sft" else read_cls
    paths = [data_dir / spec["train"], data_dir / spec["test"]]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (task {task}); pass --data-dir or --tasks")
    return dict(train=reader(paths[0], size["n_train"], seed), test=reader(paths[1], size["n_test"], seed))


def task_texts(task: str, data: dict) -> list[str]:
    if TASKS[task]["kind"] == "sft":
        return [prompt + answer for prompt, answer in data["train"]]
    return [text for text, _ in data["train"]]


def build_tokenizer(texts: list[str], vocab_size: int, kind: str = "bpe"):
    """A byte-level BPE tokenizer (or WordPiece, `kind="wordpiece"`, for BERT): scratchformers' own trainer if
    present, else the BPE recipe inline."""
    try:
        from scratchformers.tokenization_scratch import train_tokenizer_from_iterator

        # a generator: in a *list*, train_tokenizer reads a one-word string containing "/" as a file path, and
        # Chinese reviews have no spaces
        tokenizer = train_tokenizer_from_iterator((t for t in texts), vocab_size=vocab_size, show_progress=False,
                                                  tokenizer_type=kind)
        return tokenizer, f"scratchformers.tokenization_scratch ({kind})"
    except ImportError:
        pass
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>",
                                        bos_token="<|endoftext|>", pad_token="<|pad|>")
    return tokenizer, "tokenizers ByteLevel BPE (inline)"


def pad_batch(rows: list[list[int]], pad_id: int, fill: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [fill] * (width - len(r)) for r in rows])


def encode_sft(tokenizer, pairs, seq_len: int) -> list[dict]:
    """input_ids / labels per example; the prompt is masked out of the loss (-100)."""
    examples = []
    for prompt, answer in pairs:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        p = p[-(seq_len // 2):] if len(p) + len(a) > seq_len else p  # keep room for the answer
        ids = (p + a)[:seq_len]
        labels = ([-100] * len(p) + a)[:seq_len]
        if any(label != -100 for label in labels[1:]):
            examples.append(dict(input_ids=ids, labels=labels))
    return examples


def encode_cls(tokenizer, rows, seq_len: int) -> list[dict]:
    if tokenizer.cls_token_id is not None:  # BERT: [CLS] text [SEP], the classifier reads [CLS]
        return [dict(input_ids=tokenizer(text, truncation=True, max_length=seq_len)["input_ids"], label=label)
                for text, label in rows]
    return [dict(input_ids=tokenizer(text, add_special_tokens=False)["input_ids"][:seq_len] or
                 [tokenizer.eos_token_id], label=label) for text, label in rows]


def collate(examples: list[dict], pad_id: int) -> dict:
    ids = pad_batch([e["input_ids"] for e in examples], pad_id, pad_id)  # (B, T)
    batch = dict(input_ids=ids, attention_mask=pad_batch([[1] * len(e["input_ids"]) for e in examples], pad_id, 0))
    if "labels" in examples[0]:
        batch["labels"] = pad_batch([e["labels"] for e in examples], pad_id, -100)  # (B, T)
    else:
        batch["labels"] = torch.tensor([e["label"] for e in examples])  # (B,)
    return batch


def batches(examples: list[dict], batch_size: int, steps: int, pad_id: int, seed: int) -> list[dict]:
    if not examples:
        raise ValueError("no training examples left after tokenization; raise --n-train or the sequence length")
    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < steps * batch_size:
        epoch = list(range(len(examples)))
        rng.shuffle(epoch)
        order += epoch
    return [collate([examples[i] for i in order[s * batch_size:(s + 1) * batch_size]], pad_id) for s in range(steps)]


def packed_blocks(tokenizer, texts: list[str], seq_len: int) -> torch.Tensor:
    separator = tokenizer.sep_token_id if tokenizer.eos_token_id is None else tokenizer.eos_token_id
    stream = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"] + [separator]
    n = len(stream) // seq_len
    if n == 0:
        raise ValueError(f"the pretraining texts give {len(stream)} tokens, fewer than one block of {seq_len}")
    return torch.tensor(stream[: n * seq_len]).view(n, seq_len)  # (N, T)


# --------------------------------------------------------------------------------------------------- models


def make_config(family: str, size: dict, tokenizer):
    common = dict(vocab_size=len(tokenizer), hidden_size=size["hidden_size"], num_hidden_layers=size["num_hidden_layers"],
                  num_attention_heads=size["num_attention_heads"], intermediate_size=size["intermediate_size"],
                  max_position_embeddings=max(64, size["seq_len"]), bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    if family == "gpt":
        return sf.GPTConfig(**common)
    if family == "bert":
        common.update(bos_token_id=None, eos_token_id=None, sparse_prediction=True)
        return sf.BertConfig(**common)
    return sf.Llama2Config(num_key_value_heads=size["num_key_value_heads"], **common)


def pretrain_base(family: str, size: dict, tokenizer, texts: list[str], folder: Path, seed: int) -> list[float]:
    """A causal LM (a masked LM for BERT: 15% of the tokens masked by transformers' collator) trained on `texts`."""
    from transformers import DataCollatorForLanguageModeling

    torch.manual_seed(seed)
    model = sf.FAMILIES[f"scratch_{family}"].pretraining_model(make_config(family, size, tokenizer))
    blocks = packed_blocks(tokenizer, texts, size["seq_len"])
    masker = DataCollatorForLanguageModeling(tokenizer, seed=seed) if family in ENCODERS else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR["pretrain"], weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for step in range(size["pretrain_steps"]):
        rows = torch.randint(0, len(blocks), (size["batch_size"],), generator=generator)
        batch = masker([{"input_ids": row} for row in blocks[rows]]) if masker else dict(input_ids=blocks[rows],
                                                                                            labels=blocks[rows])
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 50 == 0:
            log(f"pretrain {family} step {step} loss {loss.item():.3f}")
    model.save_pretrained(folder)
    return losses


def load_for_task(family: str, kind: str, folder: Path, seed: int):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    torch.manual_seed(seed)  # the new classification head gets the same initial weights in every method
    if kind == "sft":
        return AutoModelForCausalLM.from_pretrained(folder)
    return AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)


def make_method(method: str, family: str, kind: str, base_folder: Path, size: dict, seed: int):
    model = load_for_task(family, kind, base_folder, seed)
    task_type = "CAUSAL_LM" if kind == "sft" else "SEQ_CLS"
    # with lora_embeddings, the input embedding too (LoRAEmbedding / PEFT's Embedding layer)
    targets = lora.family_target_modules(model, embeddings=size.get("lora_embeddings", False))
    # e.g. a BERT pooler that masked-LM never trained: in full (modules_to_save), without an adapter (exclude_modules)
    extra = {key: size[key] for key in ("modules_to_save", "exclude_modules") if size.get(key)}
    torch.manual_seed(seed + 1)  # same seed for both LoRA variants -> the same A matrices
    if method == "peft":
        model = get_peft_lora_model(model, task_type=task_type, r=size["r"], lora_alpha=size["lora_alpha"],
                                    lora_dropout=0.0, target_modules=targets, **extra)
    elif method == "hand":
        lora.add_lora(model, lora.LoraSettings(r=size["r"], lora_alpha=size["lora_alpha"], lora_dropout=0.0,
                                               target_modules=targets, task_type=task_type, **extra))
    return model.train()


def peak_step_memory(step) -> int:
    """Highest sum of live tensor bytes torch allocated during `step()`, relative to its start (profiler events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    return max(itertools.accumulate((n for _, n in events), initial=0))


def trainable_count(method: str, model) -> tuple[int, int]:
    if method == "peft":
        return model.get_nb_trainable_parameters()
    return lora.count_trainable_parameters(model)


def checkpoint_bytes(method: str, model, folder: Path) -> int:
    if method == "full":
        model.save_pretrained(folder)
    elif method == "peft":
        model.save_pretrained(folder)
    else:
        lora.save_lora_adapter(model, folder, overwrite=True)  # the run's own scratch folder (--work reuses it)
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


@torch.no_grad()
def evaluate(model, kind: str, examples: list[dict], batch_size: int, pad_id: int) -> float:
    """SFT: mean answer-token loss; classification: accuracy."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start:start + batch_size], pad_id)
        out = model(**batch)
        if kind == "sft":
            tokens = int((batch["labels"][:, 1:] != -100).sum())
            total, count = total + out.loss.item() * tokens, count + tokens
        else:
            total, count = total + int((out.logits.argmax(-1) == batch["labels"]).sum()), count + len(batch["labels"])
    model.train()
    return total / max(count, 1)


def run_task(family: str, task: str, data: dict, tokenizer, base_folder: Path, size: dict, steps: int,
             work: Path, seed: int, lr: dict | None = None) -> dict:
    """Fine-tune the three methods on one task, interleaved step by step with the same batches; `lr` (method ->
    learning rate) defaults to `LR`."""
    lr = {**LR, **(lr or {})}
    kind = TASKS[task]["kind"]
    encode = encode_sft if kind == "sft" else encode_cls
    train = encode(tokenizer, data["train"], size["seq_len"])
    test = encode(tokenizer, data["test"], size["seq_len"])
    pad_id = tokenizer.pad_token_id
    train_batches = batches(train, size["batch_size"], steps, pad_id, seed)

    models = {m: make_method(m, family, kind, base_folder, size, seed) for m in METHODS}
    optimizers = {m: torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr[m],
                                       weight_decay=0.0) for m, model in models.items()}
    losses = {m: [] for m in METHODS}
    seconds = {m: [] for m in METHODS}
    peaks = {m: [] for m in METHODS}

    def train_step(m, batch):
        loss = models[m](**batch).loss
        loss.backward()
        optimizers[m].step()
        optimizers[m].zero_grad(set_to_none=True)
        return loss.item()

    memory_steps = {size["warmup_steps"], size["warmup_steps"] + 1}
    for step, batch in enumerate(train_batches):
        order = METHODS[step % 3:] + METHODS[:step % 3]  # round-robin: nobody always goes first
        for m in order:
            torch.manual_seed(seed * 1_000_003 + step)  # the same dropout masks for every method at this step
            start = time.perf_counter()
            losses[m].append(train_step(m, batch))
            seconds[m].append(time.perf_counter() - start)
        if step in memory_steps:  # after warmup, so AdamW states exist; measured outside the timed steps
            for m in order:
                torch.manual_seed(seed * 1_000_003 + steps + step)
                peaks[m].append(peak_step_memory(lambda m=m: train_step(m, batch)))
        if step % 50 == 0:
            log(f"{family} {task} step {step} " + " ".join(f"{m}={losses[m][-1]:.3f}" for m in METHODS))

    results = {}
    for m, model in models.items():
        trainable, total = trainable_count(m, model)
        param_bytes = sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())
        state_bytes = sum(t.numel() * t.element_size() for s in optimizers[m].state.values()
                          for t in s.values() if torch.is_tensor(t) and t.dim() > 0)
        timed = seconds[m][size["warmup_steps"]:] or seconds[m]
        results[m] = dict(
            trainable=trainable, total=total, checkpoint_bytes=checkpoint_bytes(m, model, work / f"{family}-{task}-{m}"),
            step_ms_median=1000 * statistics.median(timed), step_ms_mean=1000 * statistics.fmean(timed),
            step_peak_bytes=max(peaks[m]) if peaks[m] else None, param_bytes=param_bytes, optimizer_bytes=state_bytes,
            losses=losses[m], metric=evaluate(model, kind, test, size["batch_size"], pad_id),
        )
        if results[m]["step_peak_bytes"] is not None:
            results[m]["total_peak_bytes"] = param_bytes + state_bytes + results[m]["step_peak_bytes"]

    # The hand-rolled adapter folder must load in PEFT and reproduce the hand-rolled model's outputs.
    from peft import PeftModel

    probe = collate(test[: size["batch_size"]], pad_id)
    models["hand"].eval()
    reloaded = PeftModel.from_pretrained(load_for_task(family, kind, base_folder, seed), work / f"{family}-{task}-hand")
    with torch.no_grad():
        diff = (reloaded.eval()(**probe).logits - models["hand"](**probe).logits).abs().max().item()
    results["hand_adapter_in_peft_max_abs_diff"] = diff
    results["peft_vs_hand_max_loss_diff"] = max(abs(a - b) for a, b in zip(losses["peft"], losses["hand"]))
    results["metric_name"] = "eval loss" if kind == "sft" else "test accuracy"
    if kind == "cls":
        labels = [e["label"] for e in test]
        results["majority_baseline"] = max(labels.count(0), labels.count(1)) / len(labels)
    return results


# --------------------------------------------------------------------------------------------------- report


def mib(n) -> str:
    return "n/a" if n is None else f"{n / 2**20:.2f}"


def human(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def make_plots(result: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    keys = [(f, t) for f in result["families"] for t in result["tasks"] if t in runs.get(f, {})]
    colors = {"full": "tab:gray", "peft": "tab:blue", "hand": "tab:orange"}
    files = []

    fig, axes = plt.subplots(len(result["families"]), len(result["tasks"]), squeeze=False,
                             figsize=(4.2 * len(result["tasks"]), 3.2 * len(result["families"])))
    for i, family in enumerate(result["families"]):
        for j, task in enumerate(result["tasks"]):
            ax = axes[i][j]
            if task not in runs[family]:  # an encoder has no SFT run
                ax.set_axis_off()
                continue
            for m in METHODS:
                style = "--" if m == "hand" else "-"
                ax.plot(runs[family][task][m]["losses"], style, color=colors[m], label=METHOD_TITLES[m], lw=1.2)
            ax.set_title(f"{family}: {TASKS[task]['title']}", fontsize=9)
            ax.set_xlabel("step")
            ax.set_ylabel("training loss")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=110)
    plt.close(fig)
    files.append("loss_curves.png")

    def bars(name, title, value, ylabel, log_scale=False, subset=None):
        chosen = [k for k in keys if subset is None or TASKS[k[1]]["kind"] == subset]
        fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(chosen)), 3.4))
        width = 0.27
        for n, m in enumerate(METHODS):
            ax.bar([x + (n - 1) * width for x in range(len(chosen))], [value(runs[f][t][m]) for f, t in chosen],
                   width, color=colors[m], label=METHOD_TITLES[m])
        ax.set_xticks(range(len(chosen)), [f"{f}\n{t}" for f, t in chosen], fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        if log_scale:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        files.append(name)

    bars("trainable_params.png", "Trainable parameters (log scale)", lambda r: r["trainable"], "parameters", True)
    bars("checkpoint_size.png", "Checkpoint size (log scale)", lambda r: r["checkpoint_bytes"] / 2**20, "MiB", True)
    bars("step_time.png", "Median training step time (interleaved)", lambda r: r["step_ms_median"], "ms")
    if all(runs[f][t][m].get("total_peak_bytes") for f, t in keys for m in METHODS):
        bars("peak_memory.png", "Peak training memory: params + AdamW state + step peak",
             lambda r: r["total_peak_bytes"] / 2**20, "MiB")
    if any(TASKS[t]["kind"] == "cls" for _, t in keys):
        bars("accuracy.png", "Test accuracy (classification)", lambda r: r["metric"], "accuracy", subset="cls")
    return files


def load_note(result: dict) -> str:
    if "load_average_start" not in result:  # results.json of runs before the load was recorded
        return "not recorded for this run"
    return f"1/5/15-minute load average {result['load_average_start']} at the start, {result['load_average_end']} at the end"


def markdown(result: dict, plots: list[str]) -> str:
    """The report's Markdown: the numbers from `result`, the words in templates/lora_report.md.j2."""
    import jinja2

    method_rows, ratio_rows = [], []
    pairs = [(f, t) for f in result["families"] for t in result["tasks"] if t in result["runs"][f]]
    for family, task in pairs:
        run = result["runs"][family][task]
        for m in METHODS:
            r = run[m]
            method_rows.append(dict(
                family=family, task=task, method=METHOD_TITLES[m], trainable=r["trainable"],
                share=100 * r["trainable"] / r["total"], checkpoint_mib=r["checkpoint_bytes"] / 2**20,
                step_ms=r["step_ms_median"], peak=mib(r.get("total_peak_bytes")), step_peak=mib(r["step_peak_bytes"]),
                metric=f"{run['metric_name']} {r['metric']:.3f}"))
        hand, peft = run["hand"], run["peft"]
        ratio_rows.append(dict(
            family=family, task=task, time=hand["step_ms_median"] / peft["step_ms_median"],
            peak=f"{hand['step_peak_bytes'] / peft['step_peak_bytes']:.3f}" if hand["step_peak_bytes"] else "n/a",
            total=(f"{hand['total_peak_bytes'] / peft['total_peak_bytes']:.3f}"
                   if hand.get("total_peak_bytes") else "n/a"),
            loss_diff=run["peft_vs_hand_max_loss_diff"], logit_diff=run["hand_adapter_in_peft_max_abs_diff"]))
    ratios = [row["time"] for row in ratio_rows]
    memory = [result["runs"][f][t]["hand"]["total_peak_bytes"] / result["runs"][f][t]["peft"]["total_peak_bytes"]
              for f, t in pairs if result["runs"][f][t]["hand"].get("total_peak_bytes")]
    cls_runs = [(f, t) for f, t in pairs if TASKS[t]["kind"] == "cls"]
    majority = ", ".join(f"{t} {result['runs'][f][t]['majority_baseline']:.3f}" for f, t in cls_runs
                         if f == result["families"][0])
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                                     keep_trailing_newline=True)
    return environment.get_template("lora_report.md.j2").render(
        result=result, s=result["settings"], lr=LR, load_note=load_note(result), method_rows=method_rows,
        ratio_rows=ratio_rows, median_ratio=statistics.median(ratios), slower=sum(r > 1.0 for r in ratios),
        verdict=("at least as fast as PEFT" if statistics.median(ratios) <= 1.0 else
                 "SLOWER than PEFT in this run (see below: on a shared machine single ratios near 1.0 are noise)"),
        memory_max=max(memory) if memory else None, majority=majority, plots=plots,
    )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "lora_report"))
    parser.add_argument("--quick", action="store_true", help="smoke size (about a minute)")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--steps", type=int, help="fine-tuning steps per method (overrides the size)")
    parser.add_argument("--pretrain-steps", type=int, help="base LM pretraining steps (overrides the size)")
    parser.add_argument("--n-train", type=int)
    parser.add_argument("--n-test", type=int)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: steady timings on a shared machine, where 2 threads oversubscribe)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite report.md and the plots from <out>/results.json without training")
    return parser.parse_args(argv)


def write_report(result: dict, out: Path):
    plots = make_plots(result, out)
    (out / "report.md").write_text(markdown(result, plots), encoding="utf-8")
    (out / "results.json").write_text(json.dumps(result, indent=1), encoding="utf-8")


def main(argv=None) -> dict:
    previous_threads = torch.get_num_threads()
    try:
        return run(argv)
    finally:
        torch.set_num_threads(previous_threads)


def run(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    size = dict(SIZES["quick" if args.quick else "default"], size="quick" if args.quick else "default")
    for key in ("steps", "pretrain_steps", "n_train", "n_test"):
        if getattr(args, key) is not None:
            if getattr(args, key) < 1:
                raise ValueError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
            size[key] = getattr(args, key)
    if size["steps"] <= size["warmup_steps"] + 1:
        size["warmup_steps"] = max(0, size["steps"] // 3)
    started = time.time()
    data_dir, out = Path(args.data_dir), Path(args.out)
    if args.render_only:
        result = json.loads((out / "results.json").read_text(encoding="utf-8"))
        write_report(result, out)
        return result
    out.mkdir(parents=True, exist_ok=True)

    data = {task: load_task_data(data_dir, task, size, args.seed) for task in args.tasks}
    texts = [text for task in args.tasks for text in task_texts(task, data[task])]
    tokenizers = {}
    for kind in dict.fromkeys("wordpiece" if family in ENCODERS else "bpe" for family in args.families):
        tokenizers[kind] = build_tokenizer(texts, size["vocab_size"], kind)
        log(f"tokenizer: {tokenizers[kind][1]}, vocab {len(tokenizers[kind][0])}")
    result = dict(settings=size, families=args.families, tasks=args.tasks, runs={}, pretrain_losses={},
                  tokenizer=", ".join(name for _, name in tokenizers.values()),
                  vocab_size=" / ".join(str(len(tokenizer)) for tokenizer, _ in tokenizers.values()),
                  threads=torch.get_num_threads(), argv=argv,
                  date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
                  load_average_start=[round(x, 2) for x in os.getloadavg()])
    with tempfile.TemporaryDirectory(prefix="lora_report_") as tmp:
        work = Path(tmp)
        for family in args.families:
            tokenizer = tokenizers["wordpiece" if family in ENCODERS else "bpe"][0]
            base = work / f"base-{family}"
            result["pretrain_losses"][family] = pretrain_base(family, size, tokenizer, texts, base, args.seed)
            result["runs"][family] = {}
            for task in args.tasks:
                if family in ENCODERS and TASKS[task]["kind"] != "cls":
                    continue
                log(f"fine-tune {family} {task}")
                result["runs"][family][task] = run_task(family, task, data[task], tokenizer, base, size,
                                                        size["steps"], work, args.seed)
    result["elapsed_s"] = time.time() - started
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    write_report(result, out)
    log(f"wrote {out / 'report.md'} in {result['elapsed_s'] / 60:.1f} min")
    return result


if __name__ == "__main__":
    main()

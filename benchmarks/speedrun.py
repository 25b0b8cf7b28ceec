"""The best small model per CPU-minute: run the documented recipe command on a time budget and compare.

For each corpus this runs, one after the other on the same machine,

    scratchformers pretrain --config recipes/tinyshakespeare.yaml --train_files TRAIN --validation_files VAL \\
        --time_budget BUDGET --output_dir OUT

for the shipped recipe (LLaMA2 family), the same recipe on the GPT family (recipes/tinyshakespeare-gpt.yaml), and the
gpt-mini recipe this package used before (benchmarks/tinyshakespeare_10min.py until December 2026: gpt-mini, BPE 1024,
block 256, batch 16, AdamW 1e-3, cosine to 10%), all at the same budget. The figure is the validation loss in nats
per CHARACTER over the whole validation text (each model scores it in windows of its own context), so tokenizers of
any kind compare, and nanoGPT's character-level results are shown beside it:

    nanoGPT "baby GPT" (4 layers, 128 wide, block 64, batch 12, lr 1e-3), torch 2.13 on 2 CPU cores:
    1.886 after 1 min 35 s (2,000 iterations), 1.519 after 9 min 6 s (12,000 iterations); its 6-layer/384-wide model
    reaches 1.4697 on an A100 GPU.

Corpora (from ../shared/data, read, never copied): tinyshakespeare (nanoGPT's split: first 90% of the characters
train, last 10% validate), TinyStories (the train sample; the valid sample validates), 红楼梦 (last 10% validates).

    python benchmarks/speedrun.py --budget 10m                      # tinyshakespeare, the three runs
    python benchmarks/speedrun.py --budget 2m --runs recipe,recipe-gpt
    python benchmarks/speedrun.py --budget 10m --corpora tinystories,hongloumeng --runs recipe,gpt-mini-before
    python benchmarks/speedrun.py --budget 2m --runs recipe --repeats 4   # the spread: a short budget is noisier

Writes benchmarks/results/speedrun_<date>_<budget>.json and prints a Markdown table; each run's folder (model,
loss_vs_time.png, samples.txt, all_results.json) stays under --output_dir.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NANOGPT_REFERENCES = [("nanoGPT baby GPT, 2 CPU cores", 95, 1.886), ("nanoGPT baby GPT, 2 CPU cores", 546, 1.519)]
RUNS = {
    "recipe": ["--config", str(ROOT / "recipes" / "tinyshakespeare.yaml")],
    "recipe-gpt": ["--config", str(ROOT / "recipes" / "tinyshakespeare-gpt.yaml")],
    "gpt-mini-before": [
        "--preset", "gpt-mini", "--tokenizer_type", "bpe", "--vocab_size", "1024", "--block_size", "256",
        "--split_by", "document", "--per_device_train_batch_size", "16", "--learning_rate", "1e-3",
        "--lr_scheduler_type", "cosine_with_min_lr", "--lr_scheduler_kwargs", '{"min_lr_rate": 0.1}',
        "--warmup_steps", "0.02", "--weight_decay", "0.1", "--adam_beta2", "0.99", "--max_grad_norm", "1.0",
        "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "20", "--report_to", "none",
        "--sample_max_new_tokens", "150", "--sample_max_chars", "300",
    ],
}


def corpus_files(name: str, data_dir: Path, work: Path) -> tuple[Path, Path]:
    """(train, validation) files of a corpus; single-file corpora are cut by `scratchformers split-text`."""
    if name == "tinystories":
        return data_dir / "en_tinystories_train_sample.txt", data_dir / "en_tinystories_valid_sample.txt"
    source = {"tinyshakespeare": "en_tinyshakespeare.txt", "hongloumeng": "zh_hongloumeng.txt"}[name]
    folder = work / "data" / name
    if not (folder / "validation.txt").is_file():
        subprocess.run(
            [sys.executable, "-m", "scratchformers.cli", "split-text", "--input_file", str(data_dir / source),
             "--output_dir", str(folder), "--validation_percentage", "10"],
            check=True,
        )
    return folder / "train.txt", folder / "validation.txt"


def run_one(run: str, corpus: str, budget: str, train: Path, validation: Path, out: Path, repeat: int = 1) -> dict:
    command = [
        sys.executable, "-m", "scratchformers.cli", "pretrain", *RUNS[run],
        "--train_files", str(train), "--validation_files", str(validation),
        "--time_budget", budget, "--output_dir", str(out), "--overwrite", "--disable_tqdm", "true",
    ]
    print("$", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    result = json.loads((out / "all_results.json").read_text())
    config = json.loads((out / "config.json").read_text())
    return {
        "run": run,
        "corpus": corpus,
        "repeat": repeat,
        "model_type": config["model_type"],
        "layers_x_width": f"{config['num_hidden_layers']}x{config['hidden_size']}",
        "context": config["max_position_embeddings"],
        "vocab_size": config["vocab_size"],
        "num_parameters": result["num_parameters"],
        "steps": result["global_step"],
        "train_wall_seconds": result["train_wall_seconds"],
        "nats_per_char": result["eval_nats_per_char"],
        "nats_per_token": result["eval_nats_per_token"],
        "chars_per_token": result["eval_characters"] / result["eval_tokens"],
        "command_seconds": round(time.perf_counter() - start, 1),
        "load_average_after": os.getloadavg(),
        "output_dir": str(out),
    }


def markdown(results: list[dict], budget: str) -> str:
    lines = [
        f"| corpus | run | family | layers x width | context | vocab | params | steps in {budget} | nats/char |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['corpus']} | {r['run']} | {r['model_type']} | {r['layers_x_width']} | {r['context']} | "
            f"{r['vocab_size']} | {r['num_parameters'] / 1e6:.2f}M | {r['steps']} | **{r['nats_per_char']:.3f}** |"
        )
    return "\n".join(lines)


def spread(results: list[dict]) -> list[dict]:
    """Mean, min and max nats/char of each (corpus, run) that ran more than once."""
    groups: dict[tuple[str, str], list[float]] = {}
    for r in results:
        groups.setdefault((r["corpus"], r["run"]), []).append(r["nats_per_char"])
    return [dict(corpus=corpus, run=run, repeats=len(values), mean=statistics.fmean(values), min=min(values),
                 max=max(values)) for (corpus, run), values in groups.items() if len(values) > 1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="10m", help="time budget of each run: 120s, 2m, 10m, ...")
    parser.add_argument("--corpora", default="tinyshakespeare", help="comma-separated: tinyshakespeare,tinystories,hongloumeng")
    parser.add_argument("--runs", default="recipe,recipe-gpt,gpt-mini-before", help=f"comma-separated of {list(RUNS)}")
    parser.add_argument("--data_dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--output_dir", default="benchmark_output/speedrun")
    parser.add_argument("--results_dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--repeats", type=int, default=1, help="runs of each command, one after the other (the "
                        "table adds their mean, min and max)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be at least 1, got {args.repeats}")

    data_dir, work = Path(args.data_dir), Path(args.output_dir)
    runs = args.runs.split(",")
    unknown = [r for r in runs if r not in RUNS]
    if unknown:
        raise SystemExit(f"unknown --runs {unknown}; choose from {list(RUNS)}")
    if not data_dir.is_dir():
        raise SystemExit(f"shared corpora not found in {data_dir}; pass --data_dir")
    started = datetime.datetime.now()
    results = []
    for corpus in args.corpora.split(","):
        train, validation = corpus_files(corpus, data_dir, work)
        for run in runs:
            for repeat in range(1, args.repeats + 1):
                name = f"{run}_{args.budget}" + (f"_{repeat}" if args.repeats > 1 else "")
                results.append(run_one(run, corpus, args.budget, train, validation, work / corpus / name, repeat))
                print(markdown(results[-1:], args.budget), flush=True)
    record = {
        "date": started.isoformat(timespec="seconds"),
        "budget": args.budget,
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
        "nanogpt_references": NANOGPT_REFERENCES,
        "repeats": args.repeats,
        "results": results,
        "spread": spread(results),
    }
    try:
        import torch

        record["machine"]["torch"] = torch.__version__
        record["machine"]["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"speedrun_{started:%Y%m%d-%H%M%S}_{args.budget}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    summary = "".join(f"\n{g['corpus']} {g['run']}: mean {g['mean']:.3f} over {g['repeats']} runs "
                      f"({g['min']:.3f}-{g['max']:.3f})" for g in record["spread"])
    print(f"\n{markdown(results, args.budget)}\n{summary}\n\nnanoGPT (character level, same split): " + "; ".join(
        f"{value} after {seconds // 60}:{seconds % 60:02d}" for _, seconds, value in NANOGPT_REFERENCES
    ) + f"\nresults: {path}")
    return record


if __name__ == "__main__":
    main()

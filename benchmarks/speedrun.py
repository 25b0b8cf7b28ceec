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
    python benchmarks/speedrun.py --budget 10m --runs recipe --ensemble 3  # 3 models side by side, one ensemble

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


def pretrain_command(run: str, budget: str, train: Path, validation: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "scratchformers.cli", "pretrain", *RUNS[run],
        "--train_files", str(train), "--validation_files", str(validation),
        "--time_budget", budget, "--output_dir", str(out), "--overwrite", "--disable_tqdm", "true",
    ]


def run_one(run: str, corpus: str, budget: str, train: Path, validation: Path, out: Path, repeat: int = 1) -> dict:
    command = pretrain_command(run, budget, train, validation, out)
    print("$", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return run_record(run, corpus, out, repeat, start)


def run_record(run: str, corpus: str, out: Path, repeat: int, start: float) -> dict:
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
        "characters": result["eval_characters"],
        "tokens": result["eval_tokens"],
        "command_seconds": round(time.perf_counter() - start, 1),
        "load_average_after": os.getloadavg(),
        "output_dir": str(out),
    }


def run_ensemble(run: str, corpus: str, budget: str, train: Path, validation: Path, out: Path, members: int,
                 repeat: int = 1) -> dict:
    """`members` copies of the run's command side by side on the same cores and budget (seeds 1..N, torch threads
    = cores // N, at least 1), then their models scored together as one ensemble: each next-token distribution
    the mean of theirs, over the same validation windows each member was scored on."""
    from transformers import AutoModelForCausalLM

    from scratchformers.tokenization_scratch import load_tokenizer
    from scratchformers.training.common import load_pretrained, nats_per_character
    from scratchformers.training.data import load_text_dataset

    threads = max(1, (os.cpu_count() or 1) // members)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    processes, folders = [], []
    for seed in range(1, members + 1):
        folder = out / f"member{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        command = pretrain_command(run, budget, train, validation, folder) + ["--seed", str(seed)]
        print(f"$ OMP_NUM_THREADS={threads}", " ".join(command[1:]), f"> {folder}.log", flush=True)
        with open(f"{folder}.log", "w") as log:
            processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
        folders.append(folder)
    failed = [f"{folder}.log" for folder, process in zip(folders, processes) if process.wait() != 0]
    if failed:
        raise SystemExit(f"ensemble members failed; see {', '.join(failed)}")
    records = [run_record(run, corpus, folder, repeat, start) for folder in folders]
    tokenizers = [load_tokenizer(str(folder)) for folder in folders]
    if any(t.get_vocab() != tokenizers[0].get_vocab() for t in tokenizers[1:]):
        raise SystemExit(f"the members of {run} trained different tokenizers: an ensemble needs one vocabulary")
    models = [load_pretrained(str(folder), AutoModelForCausalLM) for folder in folders]
    documents = load_text_dataset([str(validation)], split_by="document")["text"]
    scored = nats_per_character(models, tokenizers[0], documents)
    if (scored["characters"], scored["tokens"]) != (records[0]["characters"], records[0]["tokens"]):
        raise SystemExit(f"the ensemble scored {scored['characters']} characters in {scored['tokens']} tokens, the "
                         f"members {records[0]['characters']} in {records[0]['tokens']}: not the same text")
    return {
        **records[0],
        "run": f"{run} x{members} ensemble",
        "layers_x_width": f"{members} x {records[0]['layers_x_width']}",
        "num_parameters": sum(r["num_parameters"] for r in records),
        "steps": " / ".join(str(r["steps"]) for r in records),
        "torch_threads_per_member": threads,
        "nats_per_char": scored["nats_per_char"],
        "nats_per_token": scored["nats_per_token"],
        "members": records,
        "command_seconds": round(time.perf_counter() - start, 1),
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
            f"{r['vocab_size']} | {r['num_parameters'] / 1e6:.2f}M | {r['steps']} | **{r['nats_per_char']:.3f}**"
            + (" (members " + " / ".join(f"{m['nats_per_char']:.3f}" for m in r["members"]) + ")" if "members" in r
               else "") + " |"
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
    parser.add_argument("--ensemble", type=int, default=1, help="train N copies of each run side by side on the "
                        "same cores and budget (seeds 1..N) and score them as one ensemble (default 1: no ensemble)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be at least 1, got {args.repeats}")
    if args.ensemble < 1:
        raise SystemExit(f"--ensemble must be at least 1, got {args.ensemble}")

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
                if args.ensemble > 1:
                    results.append(run_ensemble(run, corpus, args.budget, train, validation,
                                                work / corpus / f"{name}_x{args.ensemble}", args.ensemble, repeat))
                else:
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
        "ensemble": args.ensemble,
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

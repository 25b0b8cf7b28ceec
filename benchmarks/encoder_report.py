"""The encoder half on a CPU: BERT pretrained from scratch with masked-LM, then fine-tuned three ways (full, PEFT
LoRA, hand-rolled LoRA) for sentiment, against a TF-IDF + logistic-regression baseline on the same splits.

For each language (en: SST-2, zh: ChnSentiCorp; files from --data-dir, by default ../shared/data):
1. the baseline: TF-IDF of word 1-2-grams and character 1-4-grams + logistic regression (scikit-learn), its C
   chosen on the validation split, scored on the test split;
2. masked-LM pretraining from nothing (no pretrained weights) with `scratchformers pretrain --preset bert-tiny` for
   --budget of wall-clock, on the training text of `../shared/data` only: the task's train split (its labels
   unused) plus a general corpus of the language (TinyStories / 红楼梦); no validation or test text;
3. fine-tuning of that one base three ways, interleaved step by step on the same batches and dropout masks
   (`lora_report.run_task`: trainable parameters, checkpoint size, step time, peak memory, loss curves), then test
   accuracy; the decoders' figures of benchmarks/lora_report/results.json are printed beside them.

Run from the repository root (20 minutes of pretraining and a few of fine-tuning per language at the defaults):
    python benchmarks/encoder_report.py                       # writes benchmarks/encoder_report/
    python benchmarks/encoder_report.py --quick               # smoke size, about a minute
    python benchmarks/encoder_report.py --languages zh --budget 5m
"""

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lora_report  # noqa: E402  (the fine-tuning comparison of the decoders, reused as it is)

LANGUAGES = {
    "en": dict(task="cls_en", name="SST-2", prefix="cls_en_sst2", corpus=["en_tinystories_train_sample.txt"]),
    "zh": dict(task="cls_zh", name="ChnSentiCorp", prefix="cls_zh_chnsenticorp", corpus=["zh_hongloumeng.txt"]),
}
SIZES = {
    # bert-tiny (2 x 128): in 2.5-minute trials bert-mini and a 4-layer bert-tiny stayed on the unigram plateau of
    # post-LN masked-LM (loss ~6.2, 5% of the masked tokens right) while bert-tiny left it within a minute
    "default": dict(preset="bert-tiny", budget="20m", vocab_size=8000, block_size=128, pretrain_batch=32,
                    pretrain_lr=2e-3, seq_len=128, batch_size=32, epochs=5, warmup_steps=10, r=8, lora_alpha=16,
                    lr_full=3e-4, lr_lora=2e-3, n_train=10**9, n_test=10**9, lora_embeddings=True),
    "quick": dict(preset="bert-tiny", budget="20s", vocab_size=1000, block_size=64, pretrain_batch=16,
                  pretrain_lr=1e-3, seq_len=64, batch_size=16, epochs=1, warmup_steps=2, r=4, lora_alpha=8,
                  lr_full=3e-4, lr_lora=2e-3, n_train=64, n_test=32, lora_embeddings=True),
}


def log(*args):
    print(f"[encoder_report {time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


def read_csv(path: Path) -> tuple[list[str], list[int]]:
    rows = lora_report.read_cls(path, 10**9, seed=0)
    return [text for text, _ in rows], [label for _, label in rows]


def tfidf_baseline(data_dir: Path, prefix: str, limit: int | None = None) -> dict:
    """TF-IDF (word 1-2-grams + character 1-4-grams, sublinear tf) + logistic regression; C picked on validation."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    splits = {split: read_csv(data_dir / f"{prefix}_{split}.csv") for split in ("train", "validation", "test")}
    if limit:
        splits = {split: (texts[:limit], labels[:limit]) for split, (texts, labels) in splits.items()}
    best = None
    for c in (1.0, 4.0, 16.0):
        features = make_union(
            TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b"),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True),
        )
        model = make_pipeline(features, LogisticRegression(C=c, max_iter=3000)).fit(*splits["train"])
        validation = float((model.predict(splits["validation"][0]) == splits["validation"][1]).mean())
        if best is None or validation > best["validation_accuracy"]:
            test = float((model.predict(splits["test"][0]) == splits["test"][1]).mean())
            best = dict(C=c, validation_accuracy=validation, test_accuracy=test)
    return best


def pretrain(language: str, spec: dict, size: dict, data_dir: Path, output: Path, threads: int) -> dict:
    """`scratchformers pretrain --preset bert-...` on the task's train text and the language's general corpus."""
    from transformers import TrainingArguments

    from scratchformers.training.arguments import ModelArguments, PretrainDataArguments
    from scratchformers.training.mlm import run_mlm

    files = [str(data_dir / f"{spec['prefix']}_train.csv")] + [str(data_dir / name) for name in spec["corpus"]]
    # mean pooling for the classifier: masked-LM never trains the [CLS] output, and with [CLS] pooling LoRA did not
    # learn at all (test accuracy 0.499 on SST-2, loss flat at 0.69, while full fine-tuning reached 0.774)
    model_args = ModelArguments(preset=size["preset"], vocab_size=size["vocab_size"], tokenizer_type="wordpiece",
                                config_overrides="classifier_pooling=mean")
    data_args = PretrainDataArguments(train_files=files, block_size=size["block_size"], time_budget=size["budget"],
                                      validation_split_percentage=2.0)  # whole-word masking: see benchmarks/README.md
    training_args = TrainingArguments(
        output_dir=str(output), per_device_train_batch_size=size["pretrain_batch"], learning_rate=size["pretrain_lr"],
        lr_scheduler_type="cosine", warmup_steps=0.05, weight_decay=0.01, adam_beta2=0.98, logging_steps=50,
        eval_strategy="no", save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True, seed=0,
    )
    torch.set_num_threads(threads)
    return run_mlm(model_args, data_args, training_args, verbose=False)


def decoder_figures(path: Path) -> dict:
    """{task: {family: {method: test accuracy}}} of the decoders' LoRA report, where it was run."""
    if not path.is_file():
        return {}
    result = json.loads(path.read_text(encoding="utf-8"))
    figures = {}
    for family, runs in result["runs"].items():
        for task, run in runs.items():
            if lora_report.TASKS[task]["kind"] == "cls":
                figures.setdefault(task, {})[family] = {m: run[m]["metric"] for m in lora_report.METHODS}
    return figures


def run_language(language: str, size: dict, data_dir: Path, work: Path, threads: int, seed: int) -> dict:
    from scratchformers.tokenization_scratch import load_tokenizer

    spec = LANGUAGES[language]
    started = time.time()
    baseline = tfidf_baseline(data_dir, spec["prefix"], None if size["n_train"] > 10**8 else size["n_train"])
    log(f"{language}: TF-IDF baseline test accuracy {baseline['test_accuracy']:.4f} (C={baseline['C']})")
    base = work / f"mlm-{language}"
    if (base / "all_results.json").is_file():  # --work DIR of an earlier run: fine-tune its base again
        mlm = json.loads((base / "all_results.json").read_text(encoding="utf-8"))
        log(f"{language}: reusing the masked-LM base in {base}")
    else:
        mlm = pretrain(language, spec, size, data_dir, base, threads)
    log(f"{language}: masked-LM {mlm['global_step']} steps, masked accuracy {mlm.get('eval_masked_accuracy', 0):.3f}")
    tokenizer = load_tokenizer(base)
    data = lora_report.load_task_data(data_dir, spec["task"], size, seed)
    if size.get("on_validation"):  # choosing settings: score the validation split, never the test split
        data["test"] = lora_report.read_cls(data_dir / f"{spec['prefix']}_validation.csv", size["n_test"], seed)
    steps = max(1, size["epochs"] * len(data["train"]) // size["batch_size"])
    lr = {"full": size["lr_full"], "peft": size["lr_lora"], "hand": size["lr_lora"]}
    run = lora_report.run_task("bert", spec["task"], data, tokenizer, base, size, steps, work, seed, lr=lr)
    labels = [label for _, label in data["test"]]
    for m in lora_report.METHODS:
        log(f"{language}: {m} {'validation' if size.get('on_validation') else 'test'} accuracy {run[m]['metric']:.4f}")
    return dict(baseline=baseline, mlm={k: v for k, v in mlm.items() if isinstance(v, (int, float))}, run=run,
                steps=steps, n_train=len(data["train"]), n_test=len(labels),
                majority=max(labels.count(0), labels.count(1)) / len(labels), seconds=time.time() - started)


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        "# The encoder half: BERT from scratch on 2 CPU cores vs TF-IDF",
        "",
        f"Generated {result['date']} by `python benchmarks/encoder_report.py {' '.join(result['argv'])}`. "
        f"Machine: {result['machine']}, {result['threads']} torch threads.",
        "",
        f"Base: `{s['preset']}` pretrained from random weights with masked-LM (15% of the tokens, BERT's 80/10/10) for "
        f"{s['budget']} of wall-clock on the task's train text plus a general corpus of the language (no validation or "
        f"test text); WordPiece vocabulary of {s['vocab_size']} trained on the same text; blocks of {s['block_size']}. "
        f"Fine-tuning: {s['epochs']} epochs, batch {s['batch_size']}, sequences cut at {s['seq_len']} tokens, AdamW "
        f"at a constant lr {s['lr_full']} (full) / {s['lr_lora']} (LoRA), LoRA r={s['r']}, alpha={s['lora_alpha']} on "
        + ("the word embeddings and " if s.get("lora_embeddings") else "")
        + ("query/key/value/dense/intermediate/output with the pooler (never trained by masked-LM) and the `classifier` "
           "trained in full." if s.get("train_pooler") else "query/key/value/dense/intermediate/output (the pooler's "
           "dense included) with the `classifier` trained in full.")
        + " The three methods train interleaved on the same batches and dropout masks. Baseline: TF-IDF word "
        "1-2-grams + char 1-4-grams, logistic regression, C picked on validation, same splits. Accuracies on the "
        f"{'VALIDATION split (a run to choose settings)' if s.get('on_validation') else 'test split'}.",
        "",
        "| language | task | majority | TF-IDF + LR | BERT full FT | BERT PEFT LoRA | BERT hand LoRA | MLM steps | "
        "masked-token accuracy | LoRA trainable |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for language, r in result["languages"].items():
        run = r["run"]
        share = 100 * run["peft"]["trainable"] / run["peft"]["total"]
        lines.append(
            f"| {language} | {LANGUAGES[language]['name']} | {r['majority']:.3f} | {r['baseline']['test_accuracy']:.3f} "
            f"| {run['full']['metric']:.3f} | {run['peft']['metric']:.3f} | {run['hand']['metric']:.3f} | "
            f"{r['mlm'].get('global_step', 0)} | {r['mlm'].get('eval_masked_accuracy', float('nan')):.3f} | "
            f"{run['peft']['trainable']:,} ({share:.1f}%) |"
        )
    lines += ["", "Costs of the three fine-tunings (median step ms, peak MiB = parameters + AdamW state + step peak; "
              "max difference of the PEFT and hand-rolled loss curves):", "",
              "| language | method | step ms | peak MiB | checkpoint MiB | PEFT vs hand loss diff |",
              "|---|---|---:|---:|---:|---:|"]
    for language, r in result["languages"].items():
        run = r["run"]
        for m in lora_report.METHODS:
            lines.append(f"| {language} | {lora_report.METHOD_TITLES[m]} | {run[m]['step_ms_median']:.1f} | "
                         f"{lora_report.mib(run[m].get('total_peak_bytes'))} | {run[m]['checkpoint_bytes'] / 2**20:.2f} | "
                         f"{run['peft_vs_hand_max_loss_diff']:.2e} |")
    decoders = result.get("decoders") or {}
    if decoders:
        lines += ["", "The decoders' figures on the same test splits (benchmarks/lora_report: tiny GPT / LLaMA2 "
                  "pretrained for a few hundred steps, 3,000 training examples; test accuracy):", "",
                  "| task | family | full FT | PEFT LoRA | hand LoRA |", "|---|---|---:|---:|---:|"]
        for task, families in decoders.items():
            for family, figures in families.items():
                lines.append(f"| {task} | {family} | {figures['full']:.3f} | {figures['peft']:.3f} | {figures['hand']:.3f} |")
    if result.get("notes"):
        lines += ["", "## Notes", "", *result["notes"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "encoder_report"))
    parser.add_argument("--quick", action="store_true", help="smoke size (about a minute)")
    parser.add_argument("--languages", nargs="+", default=list(LANGUAGES), choices=list(LANGUAGES))
    parser.add_argument("--budget", help="masked-LM pretraining wall-clock per language, e.g. 20m (overrides the size)")
    parser.add_argument("--preset", help="BERT preset of the base (overrides the size)")
    parser.add_argument("--epochs", type=int, help="fine-tuning epochs (overrides the size)")
    parser.add_argument("--lr-full", type=float, help="learning rate of full fine-tuning (overrides the size)")
    parser.add_argument("--lr-lora", type=float, help="learning rate of both LoRAs (overrides the size)")
    parser.add_argument("--r", type=int, help="LoRA rank (overrides the size)")
    parser.add_argument("--lora-alpha", type=int, help="LoRA alpha (overrides the size; the default is 2 r)")
    parser.add_argument("--no-lora-embeddings", action="store_true",
                        help="LoRA on the linear layers only, not on the word embeddings (before 6 December)")
    parser.add_argument("--train-pooler", action="store_true",
                        help="LoRA: train the pooler's dense in full (masked-LM never trained it) instead of adapting it")
    parser.add_argument("--on-validation", action="store_true",
                        help="score the validation split instead of the test split (to choose settings)")
    parser.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", help="keep the pretrained bases in this folder (default: a temporary one); a base "
                        "already there is fine-tuned again instead of pretrained anew")
    parser.add_argument("--render-only", action="store_true", help="rewrite report.md from <out>/results.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.render_only:
        result = json.loads((out / "results.json").read_text(encoding="utf-8"))
        (out / "report.md").write_text(markdown(result), encoding="utf-8")
        return result
    import transformers

    transformers.logging.set_verbosity_error()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    size = dict(SIZES["quick" if args.quick else "default"])
    for key in ("budget", "preset", "epochs", "lr_full", "lr_lora", "r", "on_validation"):
        if getattr(args, key) not in (None, False):
            size[key] = getattr(args, key)
    size["lora_alpha"] = args.lora_alpha or 2 * size["r"]
    if args.no_lora_embeddings:
        size["lora_embeddings"] = False
    if args.train_pooler:
        size.update(train_pooler=True, modules_to_save=["classifier", "pooler"], exclude_modules=["pooler.dense"])
    data_dir = Path(args.data_dir)
    result = dict(settings=size, argv=argv, threads=args.threads, languages={},
                  date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
                  decoders=decoder_figures(Path(__file__).resolve().parent / "lora_report" / "results.json"))
    previous = torch.get_num_threads()
    try:
        with tempfile.TemporaryDirectory(prefix="encoder_report_") as tmp:
            work = Path(args.work or tmp)
            work.mkdir(parents=True, exist_ok=True)
            for language in args.languages:
                result["languages"][language] = run_language(language, size, data_dir, work, args.threads, args.seed)
    finally:
        torch.set_num_threads(previous)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    (out / "report.md").write_text(markdown(result), encoding="utf-8")
    log(f"wrote {out / 'report.md'}")
    return result


if __name__ == "__main__":
    main()

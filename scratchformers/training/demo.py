"""`scratchformers demo`: the whole path in a few CPU minutes, with no download.

generated corpus -> BPE tokenizer -> pretrain a small GPT -> SFT on generated instructions -> generate.
一条命令走完全流程：生成语料 -> 训练分词器 -> 预训练 -> 指令微调 -> 生成。
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

from transformers import TrainingArguments

from ..tokenization_scratch import train_tokenizer
from .arguments import DemoArguments, ModelArguments, PretrainDataArguments, SFTArguments
from .pretrain import run_pretrain
from .sft import chat, run_sft
from .synthetic import instruction_followed, make_instruction_checks, make_instruction_data, make_story_corpus

DEMO_MANIFEST = ".scratchformers_demo"  # the entries an earlier demo wrote here, one per line
DEMO_ENTRIES = ("data", "tokenizer", "pretrained", "sft", "demo_results.json")
# Small enough to train in well under a minute on 2 free CPU cores, big enough to learn the grammar.
DEMO_MODEL = "num_hidden_layers=3,hidden_size=96,num_attention_heads=4,max_position_embeddings=128"


def prepare_demo_dir(output_dir: str, overwrite: bool) -> Path:
    """Make `output_dir` ready for the demo, deleting only what an earlier demo wrote there (its manifest).

    The current folder, a parent of it, the home folder and the root are refused; a folder holding anything the
    demo did not write needs `--overwrite` (which writes the demo's entries beside the other files, never deletes
    them).
    演示只删除自己以前写入的内容（见清单文件），从不删除当前目录、其上级目录、主目录或根目录。
    """
    path = Path(output_dir).expanduser()
    resolved, cwd, home = path.resolve(), Path.cwd().resolve(), Path.home().resolve()
    if resolved == cwd or resolved in cwd.parents or resolved == home or resolved == Path(resolved.anchor):
        raise ValueError(
            f"--output_dir {output_dir} is the current folder, one of its parents, the home folder or the root; "
            "the demo writes (and on a re-run replaces) several folders, so give it its own, e.g. demo_output"
        )
    manifest = path / DEMO_MANIFEST
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"--output_dir {path} exists and is not a folder")
    if path.is_dir():
        ours = set(manifest.read_text().split()) if manifest.is_file() else set()
        others = sorted(p.name for p in path.iterdir() if p.name not in ours | {DEMO_MANIFEST})
        if others and not overwrite:
            raise FileExistsError(
                f"{path} holds files that were not made by `scratchformers demo` ({', '.join(others[:5])}); "
                "pass --overwrite to write the demo beside them, or choose another --output_dir"
            )
        for name in ours & set(DEMO_ENTRIES):  # an earlier demo's results are replaced, nothing else
            target = path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
    path.mkdir(parents=True, exist_ok=True)
    manifest.write_text("\n".join(DEMO_ENTRIES) + "\n")
    return path


def _training_args(output_dir: Path, max_steps: int, learning_rate: float, batch_size: int, seed: int, **kw):
    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=32,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        weight_decay=0.1,
        adam_beta2=0.95,
        max_grad_norm=1.0,
        eval_strategy="steps",
        eval_steps=max(1, max_steps // 2),
        logging_steps=max(1, max_steps // 10),
        save_strategy="no",
        report_to=["tensorboard"],
        use_cpu=True,
        seed=seed,
        dataloader_num_workers=0,
        **kw,
    )


def check_instruction_following(model_dir: Path, num_checks: int, seed: int) -> dict[str, tuple[int, int]]:
    """Ask the tuned model `num_checks` prompts drawn afresh (half counting, half stories) and count the answers
    that follow the instruction exactly; returns {task: (correct, total)}."""
    from transformers import AutoModelForCausalLM

    from ..tokenization_scratch import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = load_tokenizer(model_dir)
    scores: dict[str, tuple[int, int]] = {}
    for task, prompt, want in make_instruction_checks(num_checks, seed=seed + 2):
        ok, total = scores.get(task, (0, 0))
        scores[task] = (ok + instruction_followed(task, chat(model, tokenizer, prompt, 90), want), total + 1)
    return scores


def run_demo(args: DemoArguments) -> dict:
    """Run the demo and return its numbers (validation losses, runtime, folders).

    运行演示并返回验证损失、耗时与输出目录。
    """
    import datasets
    import transformers

    start = time.perf_counter()
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    out = prepare_demo_dir(args.output_dir, args.overwrite)
    pretrain_steps, sft_steps, num_checks = (4, 4, 2) if args.quick else (args.pretrain_steps, args.sft_steps, args.num_checks)

    print(f"== 1/4 Generating a corpus of {args.num_stories} short stories (no download) into {out / 'data'}")
    data_dir = out / "data"
    data_dir.mkdir()
    stories = make_story_corpus(args.num_stories, seed=args.seed)
    n_valid = max(20, len(stories) // 20)
    (data_dir / "stories_train.txt").write_text("\n\n".join(stories[n_valid:]) + "\n", encoding="utf-8")
    (data_dir / "stories_valid.txt").write_text("\n\n".join(stories[:n_valid]) + "\n", encoding="utf-8")
    with (data_dir / "sft_train.jsonl").open("w", encoding="utf-8") as f:
        for row in make_instruction_data(800, seed=args.seed + 1):
            f.write(json.dumps(row) + "\n")
    print(f"   e.g. {stories[n_valid]}")

    print("== 2/4 Training a byte-level BPE tokenizer")
    tokenizer = train_tokenizer([data_dir / "stories_train.txt"], vocab_size=512, show_progress=False)
    tokenizer.save_pretrained(out / "tokenizer")
    print(f"   {len(tokenizer)} tokens; 'Lily saw a frog.' -> {tokenizer.tokenize('Lily saw a frog.')}")

    print(f"== 3/4 Pretraining a small {args.preset} for {pretrain_steps} steps")
    pretrain_metrics = run_pretrain(
        ModelArguments(preset=args.preset, config_overrides=DEMO_MODEL, tokenizer_name_or_path=str(out / "tokenizer")),
        PretrainDataArguments(
            train_files=[str(data_dir / "stories_train.txt")],
            validation_files=[str(data_dir / "stories_valid.txt")],
            block_size=96,
            sample_prompts=["", "Lily and the frog.\n", "They counted from 3 to"],
            sample_max_new_tokens=60,
            overwrite=True,
        ),
        _training_args(out / "pretrained", pretrain_steps, 3e-3, 12, args.seed),
    )

    print(f"== 4/4 Instruction tuning (SFT) for {sft_steps} steps, then answering prompts")
    sft_metrics = run_sft(
        SFTArguments(
            model_name_or_path=str(out / "pretrained"),
            train_file=str(data_dir / "sft_train.jsonl"),
            max_length=128,
            sample_prompts=["Write a story about Zoe and a bear.", "Count from 4 to 9."],
            sample_max_new_tokens=90,
            overwrite=True,
        ),
        _training_args(out / "sft", sft_steps, 2e-3, 8, args.seed),
    )

    followed = check_instruction_following(out / "sft", num_checks, args.seed)

    runtime = time.perf_counter() - start
    val_loss = pretrain_metrics.get("eval_loss", float("nan"))
    print("== Done")
    print(
        f"   pretraining validation loss: {val_loss:.3f} nats/token (perplexity {math.exp(val_loss):.2f}; "
        f"a uniform guess over {len(tokenizer)} tokens scores {math.log(len(tokenizer)):.2f})"
    )
    if "eval_loss" in sft_metrics:
        print(f"   SFT validation loss (assistant tokens): {sft_metrics['eval_loss']:.3f} nats/token")
    for task, (ok, total) in followed.items():
        print(f"   instructions followed ({task}, greedy, fresh prompts): {ok}/{total}")
    print(f"   total time {runtime:.0f} s; results in {out}/ (pretrained/, sft/, loss_curve.png, TensorBoard runs/)")
    # the score above decodes greedily; sampling (generate's default) may wander off a small model's best answer
    print(f'   try: scratchformers generate --model_name_or_path {out / "sft"} --chat --do_sample false '
          f'--prompt "Count from 2 to 6."')
    result = {
        "pretrain_eval_loss": val_loss,
        "sft_eval_loss": sft_metrics.get("eval_loss"),
        "instructions_followed": {task: {"correct": ok, "total": total} for task, (ok, total) in followed.items()},
        "runtime_seconds": runtime,
        "output_dir": str(out),
    }
    (out / "demo_results.json").write_text(json.dumps(result, indent=2) + "\n")
    return result

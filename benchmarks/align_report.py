"""After SFT, on a CPU: DPO with TRL's loss and with the hand-written loss side by side, and GRPO with an exact-answer
reward; writes benchmarks/align_report/report.md, results.json and the curves.

DPO (GSM8K, from ../shared/data): a byte-level BPE tokenizer and a small LLaMA2 pretrained from nothing on the GSM8K
training text, SFT on its training questions, then pairs from `build_preference_pairs` (chosen = the reference
solution, rejected = the SFT model's own answer sampled at T=1 where it is wrong, `--rejected sampled`; or the same
solution with a wrong final `#### N`, `--rejected number`): DPO twice from the same SFT model, same batches,
`--implementation trl` and `--implementation hand`. Held out: pairs built from the GSM8K *test* split (preference
accuracy: the DPO model's implicit reward, and plain log-probabilities for the SFT model) and greedy answers to test
questions (exact final number), for the SFT model and both DPO models.

GRPO (the demo's counting task, harder ranges): the demo's SFT model, then `scratchformers grpo --task counting
--time_budget 15m` (the learning rate decays over the budget); the held-out reward (exact answer, greedy and the mean
of 8 samples) is scored every 100 steps and plotted.

Run from the repository root:
    python benchmarks/align_report.py            # about 45 minutes on 2 cores
    python benchmarks/align_report.py --quick    # a smoke run, about 2 minutes
"""

import argparse
import datetime
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {
    "default": dict(vocab=2048, model="num_hidden_layers=4,hidden_size=192,num_attention_heads=4,num_key_value_heads=2,"
                    "intermediate_size=512,max_position_embeddings=384", pretrain_budget="6m", sft_steps=600,
                    n_train_pairs=2000, n_heldout_pairs=200, n_questions=200, dpo_steps=250, dpo_lr=5e-5, beta=0.1,
                    grpo_budget="15m", grpo_lr=3e-4, grpo_reward="exact", grpo_schedule="cosine", grpo_batch=64, grpo_every=100, max_new=200),
    "quick": dict(vocab=600, model="num_hidden_layers=2,hidden_size=64,num_attention_heads=2,num_key_value_heads=1,"
                  "intermediate_size=128,max_position_embeddings=384", pretrain_budget="15s", sft_steps=10,
                  n_train_pairs=64, n_heldout_pairs=16, n_questions=8, dpo_steps=6, dpo_lr=5e-4, beta=0.1,
                  grpo_budget="20s", grpo_lr=1e-3, grpo_reward="exact", grpo_schedule="cosine", grpo_batch=16, grpo_every=3, max_new=24),
}


def log(*args):
    print(f"[align_report {time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    return rows[:limit] if limit else rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def chat_ids(tokenizer, messages: list[dict], **kwargs) -> list[int]:
    return tokenizer.apply_chat_template(messages, tokenize=True, **kwargs)["input_ids"]


def fits(tokenizer, pair: dict, limit: int) -> bool:
    """Prompt + the longer answer in the chat template within `limit` tokens (else truncation could cut the very
    number that differs)."""
    longest = max(pair["chosen"], pair["rejected"], key=len)
    messages = [{"role": "user", "content": pair["prompt"]}, {"role": "assistant", "content": longest}]
    return len(chat_ids(tokenizer, messages)) <= limit


@torch.no_grad()
def logprob_preference(model, tokenizer, pairs: list[dict]) -> float:
    """Share of pairs whose chosen answer has the higher total log-probability under `model` (no reference)."""
    from scratchformers.training.dpo import completion_logps

    model.eval()
    wins = 0
    for pair in pairs:
        prompt = chat_ids(tokenizer, [{"role": "user", "content": pair["prompt"]}], add_generation_prompt=True)
        scores = []
        for answer in (pair["chosen"], pair["rejected"]):
            full = chat_ids(tokenizer, [{"role": "user", "content": pair["prompt"]},
                                        {"role": "assistant", "content": answer}])
            ids = torch.tensor([full])
            completion = torch.zeros_like(ids)
            completion[0, len(prompt):] = 1
            scores.append(completion_logps(model, ids, torch.ones_like(ids), completion).item())
        wins += scores[0] > scores[1]
    return wins / len(pairs)


def exact_answers(model, tokenizer, rows: list[dict], max_new: int) -> float:
    """Share of GSM8K questions whose greedy answer ends with the right `#### N`."""
    from scratchformers.generation import greedy_answers
    from scratchformers.training.grpo import final_number_reward
    from scratchformers.training.preferences import final_answer

    answers = greedy_answers(model, tokenizer, [r["instruction"] for r in rows], max_new)
    return sum(final_number_reward(answers, [final_answer(r["output"]) for r in rows])) / len(rows)


def load_chat_model(folder):
    from transformers import AutoModelForCausalLM

    from scratchformers.generation import answer_in_turns
    from scratchformers.tokenization_scratch import load_tokenizer

    tokenizer = load_tokenizer(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    answer_in_turns(model, tokenizer)
    return model, tokenizer


def train_sft_model(size: dict, train_rows: list[dict], work: Path, context: int):
    """Tokenizer, pretraining from nothing on the GSM8K training text, SFT on its questions; returns seconds."""
    from transformers import TrainingArguments

    from scratchformers.tokenization_scratch import train_tokenizer
    from scratchformers.training.arguments import ModelArguments, PretrainDataArguments, SFTArguments
    from scratchformers.training.pretrain import run_pretrain
    from scratchformers.training.sft import run_sft

    text = work / "gsm8k_train.txt"
    if (work / "sft" / "all_results.json").is_file():  # --work of an earlier run: its SFT model is reused
        log("DPO: reusing the SFT model in", work / "sft")
        return text, 0.0
    text.write_text("\n\n".join(f"{r['instruction']}\n{r['output']}" for r in train_rows), encoding="utf-8")
    train_tokenizer([text], vocab_size=size["vocab"], show_progress=False).save_pretrained(work / "tokenizer")
    common = dict(report_to="none", use_cpu=True, disable_tqdm=True, save_strategy="no", seed=0)

    log("DPO: pretraining on the GSM8K training text for", size["pretrain_budget"])
    started = time.time()
    run_pretrain(ModelArguments(preset="llama2-tiny", config_overrides=size["model"],
                                tokenizer_name_or_path=str(work / "tokenizer")),
                 PretrainDataArguments(train_files=[str(text)], block_size=context, time_budget=size["pretrain_budget"],
                                       validation_split_percentage=2.0, sample_max_new_tokens=4, overwrite=True),
                 TrainingArguments(output_dir=str(work / "pretrained"), per_device_train_batch_size=16,
                                   learning_rate=2e-3, lr_scheduler_type="cosine", warmup_steps=0.05,
                                   weight_decay=0.1, adam_beta2=0.95, logging_steps=50, eval_strategy="no", **common),
                 verbose=False)
    sft_file = write_jsonl(work / "sft_train.jsonl", [{k: r[k] for k in ("instruction", "input", "output")}
                                                      for r in train_rows])
    log("DPO: SFT for", size["sft_steps"], "steps")
    run_sft(SFTArguments(model_name_or_path=str(work / "pretrained"), train_file=str(sft_file), max_length=context,
                         validation_split_percentage=0, overwrite=True),
            TrainingArguments(output_dir=str(work / "sft"), max_steps=size["sft_steps"], per_device_train_batch_size=16,
                              learning_rate=1e-3, lr_scheduler_type="cosine", warmup_steps=0.05, weight_decay=0.1,
                              logging_steps=50, eval_strategy="no", **common), verbose=False)
    return text, time.time() - started


def preference_pairs(rows: list[dict], rejected: str, seed: int, n: int, model, tokenizer, context: int,
                     max_new: int) -> tuple[list[dict], int]:
    """`n` pairs from a random sample of `rows` (the rows shuffled with `seed`) that fit the context; with
    `rejected="sampled"` the SFT model's own answer (sampled at T=1) is the rejected one where it is wrong. Returns
    the pairs and how many rejected answers are the model's."""
    from scratchformers.training.preferences import build_preference_pairs, own_rejections, sample_rejected_answers

    rows = list(rows)
    random.Random(seed).shuffle(rows)
    rows = rows[:n + n // 4 + 8]  # some pairs do not fit the context
    answers = sample_rejected_answers(model, tokenizer, rows, max_new, seed=seed) if rejected == "sampled" else None
    pairs = build_preference_pairs(rows, rejected, seed=seed, model_answers=answers)
    own = own_rejections(pairs, answers)
    kept = [i for i, p in enumerate(pairs) if fits(tokenizer, p, context)][:n]
    return [pairs[i] for i in kept], sum(own[i] for i in kept)


def run_dpo_part(size: dict, data_dir: Path, work: Path, threads: int, implementations=("trl", "hand"),
                 rejected: str = "sampled") -> dict:
    from trl import DPOConfig

    from scratchformers.training.arguments import DPOArguments
    from scratchformers.training.dpo import run_dpo

    torch.set_num_threads(threads)
    train_rows = read_jsonl(data_dir / "sft_en_gsm8k_train.jsonl")
    test_rows = read_jsonl(data_dir / "sft_en_gsm8k_test.jsonl")
    context = int(size["model"].rsplit("max_position_embeddings=", 1)[1])
    _, pretrain_sft_seconds = train_sft_model(size, train_rows, work, context)
    common = dict(report_to="none", use_cpu=True, disable_tqdm=True, save_strategy="no", seed=0)
    sft_model, tokenizer = load_chat_model(work / "sft")
    meta = {"rejected": rejected, "n": [size["n_train_pairs"], size["n_heldout_pairs"]], "max_new": size["max_new"]}
    saved = json.loads((work / "pairs.json").read_text()) if (work / "pairs.json").is_file() else {}
    if saved.get("meta") == meta:  # --work of an earlier run with the same settings
        log("DPO: reusing the pairs in", work)
        train_pairs, heldout_pairs = read_jsonl(work / "pairs_train.jsonl"), read_jsonl(work / "pairs_heldout.jsonl")
        (train_own, heldout_own), pairs_seconds = saved["own"], saved["seconds"]
    else:
        started = time.time()
        train_pairs, train_own = preference_pairs(train_rows, rejected, 1, size["n_train_pairs"], sft_model, tokenizer,
                                                  context, size["max_new"])
        heldout_pairs, heldout_own = preference_pairs(test_rows, rejected, 2, size["n_heldout_pairs"], sft_model,
                                                      tokenizer, context, size["max_new"])
        write_jsonl(work / "pairs_train.jsonl", train_pairs)
        write_jsonl(work / "pairs_heldout.jsonl", heldout_pairs)
        pairs_seconds = time.time() - started
        (work / "pairs.json").write_text(json.dumps({"meta": meta, "own": [train_own, heldout_own],
                                                     "seconds": pairs_seconds}))
    questions = test_rows[:size["n_questions"]]
    result = {"pretrain_sft_seconds": pretrain_sft_seconds, "n_train_pairs": len(train_pairs),
              "n_heldout_pairs": len(heldout_pairs), "n_questions": len(questions), "context": context,
              "rejected": rejected, "own_rejected": [train_own, heldout_own], "pairs_seconds": pairs_seconds}
    log(f"DPO: {len(train_pairs)} training pairs, {len(heldout_pairs)} held out ({rejected}: {train_own} and "
        f"{heldout_own} rejected answers the model's own, {result['pairs_seconds']:.0f} s); scoring the SFT model")
    result["sft"] = {"logprob_preference": logprob_preference(sft_model, tokenizer, heldout_pairs),
                     "exact_answer": exact_answers(sft_model, tokenizer, questions, size["max_new"])}
    log("DPO: SFT model", result["sft"])

    for implementation in implementations:
        out = work / f"dpo-{implementation}"
        log(f"DPO: {size['dpo_steps']} steps with the {implementation} loss")
        started = time.time()
        metrics = run_dpo(
            DPOArguments(model_name_or_path=str(work / "sft"), train_file=str(work / "pairs_train.jsonl"),
                         validation_file=str(work / "pairs_heldout.jsonl"), implementation=implementation,
                         overwrite=True),
            DPOConfig(output_dir=str(out), max_steps=size["dpo_steps"], per_device_train_batch_size=8,
                      per_device_eval_batch_size=8, learning_rate=size["dpo_lr"], beta=size["beta"],
                      lr_scheduler_type="cosine", warmup_steps=0.05, logging_steps=max(1, size["dpo_steps"] // 25),
                      eval_strategy="no",
                      gradient_checkpointing=False, max_length=context, bf16=False, **common),
            verbose=False)
        seconds = time.time() - started
        history = json.loads((out / "trainer_state.json").read_text())["log_history"]
        model, _ = load_chat_model(out)
        result[implementation] = {
            "preference_accuracy": metrics["eval_rewards/accuracies"], "margin": metrics["eval_rewards/margins"],
            "logprob_preference": logprob_preference(model, tokenizer, heldout_pairs),
            "exact_answer": exact_answers(model, tokenizer, questions, size["max_new"]),
            "step_seconds": metrics["train_runtime"] / max(1, metrics["global_step"]), "seconds": seconds,
            "curve": [{k: e[k] for k in ("step", "loss", "rewards/margins", "rewards/accuracies") if k in e}
                      for e in history if "loss" in e and "rewards/margins" in e],
        }
        log(f"DPO {implementation}:", {k: v for k, v in result[implementation].items() if k != "curve"})
    return result


def run_grpo_part(size: dict, work: Path, threads: int, quick: bool) -> dict:
    from trl import GRPOConfig

    from scratchformers.training.arguments import DemoArguments, GRPOArguments
    from scratchformers.training.demo import run_demo
    from scratchformers.training.grpo import run_grpo
    from scratchformers.training.budget import parse_duration

    torch.set_num_threads(threads)
    log("GRPO: the demo's SFT model (LLaMA2: rotary positions, so TRL's left-padded scoring is exact)")
    if not (work / "demo" / "sft" / "config.json").is_file():
        run_demo(DemoArguments(output_dir=str(work / "demo"), overwrite=True, quick=quick, preset="llama2-tiny"))
    budget = parse_duration(size["grpo_budget"])
    args = GRPOArguments(model_name_or_path=str(work / "demo" / "sft"), task="counting",
                         eval_every_steps=size["grpo_every"], reward=size["grpo_reward"],
                         time_budget=size["grpo_budget"], overwrite=True)
    config = GRPOConfig(output_dir=str(work / "grpo"), per_device_train_batch_size=size["grpo_batch"],
                        num_generations=8, max_completion_length=40, learning_rate=size["grpo_lr"],
                        lr_scheduler_type=size["grpo_schedule"], logging_steps=5, report_to="none", use_cpu=True,
                        disable_tqdm=True, save_strategy="no", gradient_checkpointing=False, seed=0, bf16=False)
    started = time.time()
    metrics = run_grpo(args, config, verbose=False)
    history = json.loads((work / "grpo" / "trainer_state.json").read_text())["log_history"]
    return {"before": metrics["heldout_reward_before"], "after": metrics["heldout_reward_after"],
            "sampled_before": metrics["heldout_reward_sampled_before"],
            "sampled_after": metrics["heldout_reward_sampled_after"], "samples": metrics["heldout_samples"],
            "steps": metrics["global_step"], "seconds": time.time() - started, "budget_seconds": budget,
            "heldout_curve": [(0, metrics["heldout_reward_before"], metrics["heldout_reward_sampled_before"])] +
                             [(e["step"], e["heldout_reward"], e["heldout_reward_sampled"])
                              for e in history if "heldout_reward" in e],
            "train_curve": [(e["step"], e["reward"]) for e in history if "reward" in e],
            "n_heldout": metrics["heldout_prompts"]}


def plot(result: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    if "dpo" in result:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for implementation, style in (("trl", "-"), ("hand", "--")):
            if implementation not in result["dpo"]:
                continue
            curve = result["dpo"][implementation]["curve"]
            axes[0].plot([c["step"] for c in curve], [c["loss"] for c in curve], style, label=f"{implementation} loss")
            axes[1].plot([c["step"] for c in curve], [c["rewards/margins"] for c in curve], style,
                         label=f"{implementation} loss: margin")
        axes[0].set(title="DPO loss", xlabel="step")
        axes[1].set(title="reward margin (chosen - rejected)", xlabel="step")
        for ax in axes:
            ax.legend()
        fig.tight_layout()
        fig.savefig(out / "dpo_curves.png", dpi=110)
        names.append("dpo_curves.png")
    if "grpo" in result:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        steps, greedy, sampled = zip(*result["grpo"]["heldout_curve"])
        ax.plot(steps, [100 * v for v in greedy], "o-", label="held-out, greedy")
        ax.plot(steps, [100 * v for v in sampled], "s-", label=f"held-out, {result['grpo']['samples']} samples (T=1)")
        if result["grpo"]["train_curve"]:
            steps, values = zip(*result["grpo"]["train_curve"])
            ax.plot(steps, [100 * v for v in values], alpha=0.5, label="training samples (T=1)")
        ax.set(title="GRPO on counting: exact answers (%)", xlabel="step", ylabel="%")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "grpo_curve.png", dpi=110)
        names.append("grpo_curve.png")
    return names


def markdown(result: dict, plots: list[str]) -> str:
    s = result["settings"]
    lines = ["# Alignment after SFT on a CPU: DPO (TRL's loss and ours) and GRPO", "",
             f"Generated {result['generated']} by `python benchmarks/align_report.py{' --quick' if s['quick'] else ''}` "
             f"({result['minutes']:.1f} min" + (f" in {result['merged_from']} runs side by side, `--parts`, one "
                                               "thread each" if result.get("merged_from") else "") +
             f"). Machine: {result['machine']}, torch {result['torch']}, transformers "
             f"{result['transformers']}, trl {result['trl']}, {s['threads']} torch thread(s).", ""]
    if "dpo" in result:
        d = result["dpo"]
        ran = [m for m in ("trl", "hand") if m in d]
        curves = [d[m]["curve"] for m in ran]
        d["max_loss_diff"] = max((abs(a["loss"] - b["loss"]) for a, b in zip(*curves)), default=0.0) \
            if len(ran) == 2 else None
        sampled = d.get("rejected", "number") == "sampled"
        rejected = ("the SFT model's own answer, sampled at T=1 (a wrong one: " +
                    f"{d['own_rejected'][0]} of {d['n_train_pairs']} training and {d['own_rejected'][1]} of "
                    f"{d['n_heldout_pairs']} held-out pairs; the rest a corrupted final number)"
                    if sampled else "the same solution with its final number made wrong")
        lines += ["## DPO on GSM8K pairs", "", f"Chosen: the reference solution; rejected: {rejected}.", "",
                  f"A LLaMA2 ({s['model']}) pretrained from nothing for {s['pretrain_budget']} on the GSM8K training "
                  f"text, SFT for {s['sft_steps']} steps, then DPO for {s['dpo_steps']} steps (batch 8 pairs, lr "
                  f"{s['dpo_lr']}, beta {s['beta']}) on {d['n_train_pairs']} training pairs, full weights, twice from "
                  f"the same SFT model: TRL's loss and `scratchformers.training.dpo.dpo_loss`. Held out: "
                  f"{d['n_heldout_pairs']} pairs built from the GSM8K test split and {d['n_questions']} test "
                  "questions answered greedily.", "",
                  "| model | held-out preference accuracy (implicit reward) | prefers chosen by log-prob | "
                  "exact final answer | reward margin | s / step |", "|---|---:|---:|---:|---:|---:|",
                  f"| SFT | - (every implicit reward is 0) | {d['sft']['logprob_preference']:.3f} | "
                  f"{d['sft']['exact_answer']:.3f} | 0 | |"]
        for implementation, name in (("trl", "DPO, TRL's loss"), ("hand", "DPO, hand-written loss")):
            if implementation not in d:
                continue
            r = d[implementation]
            lines.append(f"| {name} | **{r['preference_accuracy']:.3f}** | {r['logprob_preference']:.3f} | "
                         f"{r['exact_answer']:.3f} | {r['margin']:.2f} | {r['step_seconds']:.3f} |")
        lines += ["", "Implicit reward: beta * (log pi - log ref) of each answer; a pair is right when the chosen "
                  "answer's is higher (TRL's `rewards/accuracies`)." + (
                      " The two trainings see the same batches; their losses agree to float rounding (largest logged "
                      f"difference {d['max_loss_diff']:.2e})." if d["max_loss_diff"] is not None else ""), ""]
    if "grpo" in result:
        g = result["grpo"]
        lines += ["## GRPO on counting (reward: the exact answer)", "",
                  f"The demo's SFT model (`scratchformers demo --preset llama2-tiny`), then `scratchformers grpo --task counting` (prompts "
                  "'Count from A to B.' with A in 1..15 and 3-12 numbers; the demo's SFT data counts 3-7 numbers, and "
                  f"its model tends to stop early) for {g['budget_seconds'] / 60:.1f} minutes of wall-clock: "
                  f"{g['steps']} steps of {s['grpo_batch'] // 8} prompts x 8 answers, lr {s['grpo_lr']} "
                  f"({s.get('grpo_schedule', 'constant')} over the time budget), reward {s.get('grpo_reward', 'exact')}"
                  ", no KL term "
                  f"(beta 0). Held out: {g['n_heldout']} prompts never trained on, answered greedily and "
                  f"{g['samples']} times at temperature 1 (the expected reward GRPO optimises).", "",
                  f"| model | held-out exact answers, greedy | held-out exact answers, {g['samples']} samples each |",
                  "|---|---:|---:|",
                  f"| SFT (demo, LLaMA2) | {100 * g['before']:.1f}% | {100 * g['sampled_before']:.1f}% |",
                  f"| after GRPO | **{100 * g['after']:.1f}%** ({100 * (g['after'] - g['before']):+.1f} points) | "
                  f"**{100 * g['sampled_after']:.1f}%** ({100 * (g['sampled_after'] - g['sampled_before']):+.1f} "
                  "points) |", ""]
    lines += [f"![{name}]({name})" for name in plots]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "align_report"))
    parser.add_argument("--work", help="folder for the models (default: a temporary one)")
    parser.add_argument("--parts", nargs="+", default=["dpo", "grpo"], choices=["dpo", "grpo"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    parser.add_argument("--dpo-lr", type=float, help="DPO learning rate (overrides the size)")
    parser.add_argument("--dpo-steps", type=int, help="DPO steps (overrides the size)")
    parser.add_argument("--rejected", default="sampled", choices=["sampled", "number"],
                        help="DPO pairs' rejected answer: the SFT model's own wrong answer, or the reference with a "
                             "wrong final number")
    parser.add_argument("--grpo-reward", help="GRPO's training rewards, e.g. exact,similarity (overrides the size)")
    parser.add_argument("--grpo-schedule", help="GRPO's learning-rate schedule over its time budget: cosine, constant")
    parser.add_argument("--implementations", nargs="+", default=["trl", "hand"], choices=["trl", "hand"],
                        help="the DPO losses to train with (both for the side-by-side table)")
    parser.add_argument("--merge", nargs="+", metavar="RESULTS_JSON",
                        help="write the report from the results.json of separate --parts runs (e.g. run side by side)")
    args = parser.parse_args(argv)
    if args.merge:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        parts = [json.loads(Path(f).read_text(encoding="utf-8")) for f in args.merge]
        result = {**parts[0], "minutes": sum(r["minutes"] for r in parts)}
        for part in parts[1:]:
            if "dpo" in part and "dpo" in result:
                result["dpo"] = {**result["dpo"], **part["dpo"]}
            elif "dpo" in part:
                result["dpo"] = part["dpo"]
            if "grpo" in part:
                result["grpo"] = part["grpo"]
            result["settings"] = {**part["settings"], **result["settings"]}
        result["merged_from"] = len(parts)
        (out / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        (out / "report.md").write_text(markdown(result, plot(result, out)), encoding="utf-8")
        return result
    import tempfile

    import transformers
    import trl

    size = dict(SIZES["quick" if args.quick else "default"])
    size.update({k: v for k, v in (("dpo_lr", args.dpo_lr), ("dpo_steps", args.dpo_steps),
                                              ("grpo_reward", args.grpo_reward),
                                              ("grpo_schedule", args.grpo_schedule)) if v is not None})
    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = {"settings": {**size, "quick": args.quick, "threads": args.threads}}
        if "dpo" in args.parts:
            result["dpo"] = run_dpo_part(size, Path(args.data_dir), work, args.threads, args.implementations,
                                         args.rejected)
        if "grpo" in args.parts:
            result["grpo"] = run_grpo_part(size, work, args.threads, args.quick)
    result.update(generated=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  minutes=(time.time() - started) / 60, machine=f"{platform.machine()}, {os.cpu_count()} CPUs",
                  torch=torch.__version__, transformers=transformers.__version__, trl=trl.__version__)
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(result, plot(result, out)), encoding="utf-8")
    log("wrote", out / "report.md")
    return result


if __name__ == "__main__":
    main()

"""GRPO (group relative policy optimisation) on TRL's `GRPOTrainer`, with a verifiable reward: the exact answer.

For each prompt the model samples a group of answers; each answer's reward (1 when it is exactly right, else 0) minus
the group's mean is its advantage, and the policy gradient raises the likelihood of the answers that beat their group.
No reward model and no value network: only a checker. Prompts come from a JSONL file of `prompt` + `answer` rows or
from a generated task (`--task counting`: "Count from 4 to 15.", longer counts than the demo's SFT data).
"""

from __future__ import annotations

import random
import re

import torch
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from ..generation import answer_in_turns, chat_answers
from .arguments import GRPOArguments
from .budget import TimeBudget, parse_duration
from .common import TimeBudgetMixin, load_chat_model, lora_for_trl, start_run, train_and_save, write_json
from .preferences import final_answer

NUMBER = re.compile(r"-?\d[\d,]*\.?\d*")


def answer_text(completion) -> str:
    """The text of a completion (TRL passes chat completions as [{"role": "assistant", "content": ...}])."""
    if isinstance(completion, list):
        return "".join(message.get("content", "") for message in completion)
    return completion


def exact_answer_reward(completions, answer, **kwargs) -> list[float]:
    """1.0 for an answer that is exactly the expected text (surrounding spaces ignored), else 0.0."""
    return [float(answer_text(c).strip() == str(a).strip()) for c, a in zip(completions, answer, strict=True)]


def final_number_reward(completions, answer, **kwargs) -> list[float]:
    """1.0 when the answer's final number (GSM8K's `#### N`, else its last number) is the expected one, else 0.0."""
    rewards = []
    for completion, expected in zip(completions, answer, strict=True):
        text = answer_text(completion)
        number = final_answer(text)
        if number is None:
            numbers = NUMBER.findall(text)
            number = numbers[-1].replace(",", "").rstrip(".") if numbers else None
        rewards.append(float(number is not None and number == str(expected).replace(",", "").strip()))
    return rewards


def similarity_reward(completions, answer, **kwargs) -> list[float]:
    """Partial credit: difflib's similarity ratio (0..1) of the answer and the expected text. A dense signal for a
    model that is rarely exactly right yet (with only 0/1 rewards, a group that all fails teaches nothing)."""
    import difflib

    return [difflib.SequenceMatcher(None, answer_text(c).strip(), str(a).strip()).ratio()
            for c, a in zip(completions, answer, strict=True)]


REWARDS = {"exact": exact_answer_reward, "final_number": final_number_reward, "similarity": similarity_reward}


def make_counting_task(num_prompts: int, seed: int = 0, low: int = 1, high: int = 15,
                       max_count: int = 12) -> list[dict]:
    """`num_prompts` different prompts "Count from A to B." (A in low..high, 3 to `max_count` numbers) with their
    exact answers "A, A+1, ..., B."; longer counts than the demo's SFT data (which starts at 1-12 and counts 3-7
    numbers): its SFT model tends to stop early, so it has room to improve. No prompt repeats: a split is disjoint.
    计数任务：互不重复的提示 "Count from A to B."，标准答案为逐个列出的数字；范围比演示的 SFT 数据更宽。"""
    pairs = [(start, start + n - 1) for start in range(low, high + 1) for n in range(3, max_count + 1)]
    if num_prompts > len(pairs):
        raise ValueError(f"the counting task has {len(pairs)} different prompts, {num_prompts} were asked for")
    random.Random(seed).shuffle(pairs)
    return [{"prompt": f"Count from {a} to {b}.", "answer": ", ".join(str(n) for n in range(a, b + 1)) + "."}
            for a, b in pairs[:num_prompts]]


TASKS = {"counting": make_counting_task}


def read_prompt_file(path) -> list[dict]:
    """Rows of `prompt` and `answer` (JSONL, JSON, CSV/TSV or Parquet); a bad row names its file and line."""
    from ..corpus import line_of_record, load_records

    rows = []
    for file, records in load_records(path):
        for index, row in enumerate(records):
            missing = [k for k in ("prompt", "answer") if not isinstance(row.get(k), (str, int, float)) or
                       not str(row[k]).strip()]
            if missing:
                raise ValueError(f"{line_of_record(file, index)}: a GRPO row needs non-empty 'prompt' and 'answer'; "
                                 f"missing {missing}")
            rows.append({"prompt": str(row["prompt"]), "answer": str(row["answer"])})
    if not rows:
        raise ValueError(f"empty prompt file: {path} holds no rows")
    return rows


@torch.no_grad()
def heldout_rewards(model, tokenizer, rows: list[dict], reward, max_new_tokens: int, samples: int = 8,
                    temperature: float = 1.0) -> dict:
    """Mean reward on `rows` of the greedy answers and of `samples` answers sampled per prompt at `temperature` (what
    GRPO optimises: the expected reward of its samples)."""
    prompts, expected = [r["prompt"] for r in rows], [r["answer"] for r in rows]
    greedy = reward(chat_answers(model, tokenizer, prompts, max_new_tokens), expected)
    result = {"greedy": sum(greedy) / len(rows)}
    if samples:
        sampled = chat_answers(model, tokenizer, prompts, max_new_tokens, samples, temperature)
        scores = reward(sampled, [a for a in expected for _ in range(samples)])
        result["sampled"] = sum(scores) / len(scores)
    return result


class ScratchGRPOTrainer(TimeBudgetMixin, GRPOTrainer):
    """TRL's GRPOTrainer with an optional wall-clock `time_budget` (the LR schedule follows the time spent)."""


class HeldOutReward(TrainerCallback):
    """Every `every` steps, the held-out mean rewards (greedy and sampled), logged as `heldout_reward` and
    `heldout_reward_sampled` (the curves)."""

    def __init__(self, tokenizer, rows: list[dict], reward, max_new_tokens: int, every: int, samples: int,
                 temperature: float):
        self.tokenizer, self.rows, self.reward = tokenizer, rows, reward
        self.max_new_tokens, self.every, self.samples, self.temperature = max_new_tokens, every, samples, temperature

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every > 0 and state.global_step % self.every == 0 and state.is_world_process_zero:
            scores = heldout_rewards(model, self.tokenizer, self.rows, self.reward, self.max_new_tokens, self.samples,
                                     self.temperature)
            entry = {"heldout_reward": scores["greedy"], "step": state.global_step}
            if "sampled" in scores:
                entry["heldout_reward_sampled"] = scores["sampled"]
            state.log_history.append(entry)


def run_grpo(args: GRPOArguments, training_args: GRPOConfig, callbacks=None, verbose: bool = True) -> dict:
    """Improve an SFT model with GRPO on prompts whose answers a checker verifies (`--reward exact|final_number`,
    optionally plus a dense partial-credit reward: `exact,similarity`).

    Reports the mean reward on held-out prompts before and after training, of the greedy answers and of
    `eval_samples` answers sampled per prompt; saves the model (or the PEFT adapter, or the merged model and
    `adapter/`) with the tokenizer.
    用 GRPO 在可验证答案的任务上改进 SFT 模型；报告训练前后在保留提示上的平均奖励。
    """
    if not args.model_name_or_path:
        raise ValueError("grpo needs --model_name_or_path (an SFT model folder, e.g. from `scratchformers sft`)")
    if bool(args.train_file) == bool(args.task):
        raise ValueError("grpo needs exactly one of --train_file (JSONL of prompt/answer) and --task "
                         f"({', '.join(TASKS)})")
    if args.task and args.task not in TASKS:
        raise ValueError(f"--task must be one of {sorted(TASKS)}, got {args.task!r}")
    reward_names = [name.strip() for name in args.reward.split(",")]
    unknown = [name for name in reward_names if name not in REWARDS]
    if unknown or len(set(reward_names)) != len(reward_names):
        raise ValueError(f"--reward must name rewards among {sorted(REWARDS)}, comma-separated, each once; got "
                         f"{args.reward!r}")
    if training_args.reward_weights is not None and len(training_args.reward_weights) != len(reward_names):
        raise ValueError(f"--reward_weights {training_args.reward_weights} has {len(training_args.reward_weights)} "
                         f"weights for {len(reward_names)} rewards ({args.reward})")
    if args.lora == "hand" and training_args.beta != 0.0:
        raise ValueError("--lora hand trains without a KL reference (--beta 0.0): TRL keeps a reference only as a "
                         "separate model or a disabled PEFT adapter; use --lora peft or none for --beta > 0")
    resume = start_run(training_args, args.overwrite)

    model, tokenizer = load_chat_model(args.model_name_or_path, "GRPO asks each prompt as a user turn")
    answer_in_turns(model, tokenizer)

    if args.task:
        rows = TASKS[args.task](args.num_prompts + args.num_eval_prompts, seed=training_args.seed)
        train_rows, eval_rows = rows[:args.num_prompts], rows[args.num_prompts:]
    else:
        train_rows = read_prompt_file(args.train_file)
        eval_rows = read_prompt_file(args.validation_file) if args.validation_file else []
    reward = REWARDS[reward_names[0]]  # the held-out score
    max_new = training_args.max_completion_length
    samples, temperature = args.eval_samples, training_args.temperature
    before = heldout_rewards(model, tokenizer, eval_rows, reward, max_new, samples, temperature) if eval_rows else None

    from datasets import Dataset

    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}], "answer": r["answer"]}
                                 for r in train_rows])
    peft_config = lora_for_trl(model, args.lora, args.lora_r, args.lora_alpha)
    if verbose and training_args.process_index == 0:
        print(f"[grpo] {len(train_rows)} prompts, {training_args.num_generations} answers each; reward "
              f"{args.reward}; LoRA: {args.lora}" + (f"; held-out mean reward before: greedy {before['greedy']:.3f}"
                                                      + (f", sampled {before['sampled']:.3f}" if samples else "")
                                                      if eval_rows else ""))
    callbacks = list(callbacks or [])
    if eval_rows and args.eval_every_steps > 0:
        callbacks.append(HeldOutReward(tokenizer, eval_rows, reward, max_new, args.eval_every_steps, samples, temperature))
    budget = TimeBudget(parse_duration(args.time_budget)) if args.time_budget else None
    trainer = ScratchGRPOTrainer(model=model, reward_funcs=[REWARDS[name] for name in reward_names],
                                 args=training_args, train_dataset=dataset, processing_class=tokenizer,
                                 peft_config=peft_config, callbacks=callbacks, time_budget=budget)

    def evaluate(trainer):
        if not eval_rows:
            return {}
        after = heldout_rewards(trainer.model, tokenizer, eval_rows, reward, max_new, samples, temperature)
        scores = {"heldout_reward_before": before["greedy"], "heldout_reward_after": after["greedy"],
                  "heldout_prompts": len(eval_rows)}
        if samples:
            scores.update(heldout_reward_sampled_before=before["sampled"], heldout_reward_sampled_after=after["sampled"],
                          heldout_samples=samples)
        return scores

    metrics = train_and_save(trainer, resume, "GRPO", {"reward": args.reward, "lora": args.lora}, evaluate)
    if trainer.is_world_process_zero():
        if args.lora == "hand":
            from .classify import save_merged_and_adapter

            save_merged_and_adapter(model, training_args.output_dir)
        if eval_rows:
            write_json(f"{training_args.output_dir}/heldout_prompts.json", {"rows": eval_rows})
        if verbose:
            if eval_rows:
                print(f"[grpo] held-out mean reward, greedy {metrics['heldout_reward_before']:.3f} -> "
                      f"{metrics['heldout_reward_after']:.3f} ({len(eval_rows)} prompts)")
                if samples:
                    print(f"[grpo] held-out mean reward, {samples} samples per prompt at temperature {temperature}: "
                          f"{metrics['heldout_reward_sampled_before']:.3f} -> "
                          f"{metrics['heldout_reward_sampled_after']:.3f}")
            print(f"[grpo] saved to {training_args.output_dir}")
    return metrics

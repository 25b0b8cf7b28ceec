"""Pieces shared by pretraining, SFT and classification: the Trainer subclass, model building, checks, plots."""

from __future__ import annotations

import ast
import json
import math
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, Trainer
from transformers.trainer_utils import IntervalStrategy

from ..utils import PRESETS, config_from_preset

RESULT_MARKERS = ("config.json", "model.safetensors", "tokenizer.json", "trainer_state.json", "all_results.json")


class ScratchTrainer(Trainer):
    """`Trainer` with weight decay only on matrices (ndim >= 2) and perplexity logged next to every eval loss."""

    def get_decay_parameter_names(self, model) -> list[str]:
        # Embeddings and linear weights decay; biases and norm gains (vectors) do not.
        return [name for name, param in model.named_parameters() if param.ndim >= 2]

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        for key in [k for k in logs if k.endswith("_loss") and not k.startswith("train")]:
            logs[key[: -len("loss")] + "perplexity"] = math.exp(min(logs[key], 50.0))
        super().log(logs, *args, **kwargs)


def check_output_dir(output_dir: str, overwrite: bool, resume_from_checkpoint=None) -> None:
    """Refuse to write into a folder that already holds results, unless `--overwrite` or resuming.

    输出目录已有结果时拒绝覆盖（除非 --overwrite 或从检查点恢复）。
    """
    path = Path(output_dir)
    if overwrite or resume_from_checkpoint or not path.exists():
        return
    if not path.is_dir():
        raise FileExistsError(f"--output_dir {path} exists and is not a folder")
    found = [p.name for p in path.iterdir() if p.name in RESULT_MARKERS or p.name.startswith("checkpoint-")]
    if found:
        raise FileExistsError(
            f"--output_dir {path} already holds results ({', '.join(sorted(found)[:5])}); pass --overwrite to "
            "write over them, --resume_from_checkpoint to continue, or choose another --output_dir"
        )


def resolve_checkpoint(resume_from_checkpoint, output_dir: str):
    """`"last"`/`"latest"`/`"true"` means the newest checkpoint-N in output_dir; a path must exist."""
    from transformers.trainer_utils import get_last_checkpoint

    if not resume_from_checkpoint:
        return None
    if str(resume_from_checkpoint).lower() in ("last", "latest", "true"):
        last = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
        if last is None:
            raise FileNotFoundError(f"--resume_from_checkpoint last: no checkpoint-N folder in {output_dir}")
        return last
    if not os.path.isdir(resume_from_checkpoint):
        raise FileNotFoundError(f"checkpoint folder not found: {resume_from_checkpoint}")
    return resume_from_checkpoint


def parse_config_overrides(text: str | None) -> dict:
    """`"num_hidden_layers=2,hidden_size=64"` -> {"num_hidden_layers": 2, "hidden_size": 64}."""
    overrides = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--config_overrides item {item!r} is not key=value")
        try:
            overrides[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            overrides[key.strip()] = value.strip()
    return overrides


def check_model_fits(config, tokenizer, block_size: int | None = None) -> None:
    """Raise ValueError when the tokenizer's ids or the block size do not fit the model."""
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is {config.vocab_size}: "
            "ids past the embedding table would crash; use the model's own tokenizer or a larger vocab_size"
        )
    if block_size is not None and block_size > config.max_position_embeddings:
        raise ValueError(
            f"block size {block_size} is over the model's max_position_embeddings={config.max_position_embeddings}; "
            "use a smaller --block_size/--max_length or a config with more positions"
        )


def build_config(preset: str, tokenizer, config_overrides: str | None = None, **extra):
    """A preset's config sized for `tokenizer` (vocab and special token ids), with `--config_overrides` applied."""
    if preset not in PRESETS:
        raise ValueError(f"unknown --preset {preset!r}; known presets: {', '.join(PRESETS)}")
    kwargs = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    kwargs.update(extra)
    kwargs.update(parse_config_overrides(config_overrides))
    return config_from_preset(preset, **kwargs)


def build_causal_lm(model_name_or_path, preset, tokenizer, block_size, config_overrides=None, attn_implementation=None):
    """Load a causal LM from a folder, or build a fresh one from a preset sized for the tokenizer."""
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    if model_name_or_path:
        if not os.path.isdir(model_name_or_path):
            raise FileNotFoundError(f"model folder not found: {model_name_or_path}")
        model = AutoModelForCausalLM.from_pretrained(model_name_or_path, **kwargs)
    else:
        config = build_config(preset, tokenizer, config_overrides)
        model = AutoModelForCausalLM.from_config(config, **kwargs)
    check_model_fits(model.config, tokenizer, block_size)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(model.generation_config, key, getattr(tokenizer, key))
    return model


def plot_loss_curve(log_history: list[dict], path, title: str = "loss") -> Path | None:
    """Write train and eval loss against the step to a PNG (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e]
    if not train and not evals:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def no_eval_without_data(training_args, eval_dataset) -> None:
    """Without validation data there is nothing to evaluate: switch periodic evaluation off."""
    if eval_dataset is None and training_args.eval_strategy != "no":
        training_args.eval_strategy = IntervalStrategy.NO


def final_eval_metrics(trainer) -> dict:
    """Metrics of an evaluation at the last step: reuse the one logged during training, else evaluate now."""
    if trainer.eval_dataset is None:
        return {}
    for entry in reversed(trainer.state.log_history):
        if "eval_loss" in entry and entry.get("step") == trainer.state.global_step:
            return {k: v for k, v in entry.items() if k.startswith("eval_")}
    return trainer.evaluate()


def write_json(path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@torch.no_grad()
def sample_texts(model, tokenizer, prompts, max_new_tokens=60, seed=0, **generate_kwargs) -> list[str]:
    """Sample a continuation of each prompt (an empty prompt starts from the EOS/BOS token)."""
    from transformers import set_seed

    was_training = model.training
    model.eval()
    set_seed(seed)
    generate_kwargs = {"do_sample": True, "top_k": 40, "temperature": 0.8, **generate_kwargs}
    outputs = []
    for prompt in prompts:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        input_ids = torch.tensor([[tokenizer.bos_token_id] + ids], device=model.device)  # (1, T)
        out = model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **generate_kwargs,
        )  # (1, T + new)
        outputs.append(tokenizer.decode(out[0, 1:], skip_special_tokens=True))
    model.train(was_training)
    return outputs

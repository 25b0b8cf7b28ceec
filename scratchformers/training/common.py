"""Pieces shared by pretraining, SFT and classification: the Trainer subclass, model building, checks, plots."""

from __future__ import annotations

import ast
import fnmatch
import json
import math
import os
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, Trainer
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_utils import IntervalStrategy

from ..generation import generate_texts
from ..tokenization_scratch import load_tokenizer, resolve_folder_or_repo, train_tokenizer
from ..utils import PRESETS, config_from_preset
from .budget import (
    TimeBudget,
    TimeBudgetProgress,
    parse_duration,
    time_budget_scheduler,
)
from .distill import check_distill_settings, distillation_loss, mean_log_probs
from .optim import build_muon_adamw

# With a time budget the budget ends training; this step limit only keeps Trainer's bookkeeping finite.
BUDGET_MAX_STEPS = 10**9

# What a training run writes into its output folder (besides TensorBoard's runs/): an existing one needs --overwrite.
RUN_OUTPUTS = (
    "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
    "chat_template.jinja", "special_tokens_map.json", "trainer_state.json", "training_args.bin", "all_results.json",
    "loss_curve.png", "loss_vs_time.png", "samples.txt", "modeling_*.py", "configuration_*.py", "checkpoint-*",
)
TOKENIZER_OUTPUTS = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


class TimeBudgetMixin:
    """For a `Trainer` (or a TRL trainer) given `time_budget` (a `TimeBudget`): training stops when the budget is
    spent, the learning-rate schedule (`lr_scheduler_type`, warmup as a fraction of the budget) follows the time
    spent, and the progress bar shows the time left."""

    def __init__(self, *args, time_budget: TimeBudget | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.time_budget = time_budget
        if time_budget is not None:
            check_budget_arguments(self.args)
            self.add_callback(time_budget)
            if self.pop_callback(ProgressCallback) is not None:
                self.add_callback(TimeBudgetProgress(time_budget))

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.time_budget is None or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        self.lr_scheduler = time_budget_scheduler(
            optimizer or self.optimizer,
            self.time_budget,
            self.args.lr_scheduler_type,
            self.args.warmup_steps,
            self.args.lr_scheduler_kwargs,
        )
        return self.lr_scheduler


class ScratchTrainer(TimeBudgetMixin, Trainer):
    """`Trainer` with weight decay only on matrices (ndim >= 2) and perplexity logged next to every eval loss, a
    wall-clock `time_budget` (`TimeBudgetMixin`), `use_muon=True` to train the hidden weight matrices with Muon
    and the rest with AdamW (`MuonAdamW`), and `teachers` (frozen causal LMs with the model's tokenizer) to distill
    them into the model: training steps minimise `distill_alpha` x KL(teachers' mean distribution || model's) at
    `distill_temperature` + (1 - `distill_alpha`) x the cross-entropy, logged as `distill_loss` and `lm_loss`."""

    def __init__(self, *args, use_muon: bool = False, teachers=(), distill_alpha: float = 0.75,
                 distill_temperature: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.use_muon = use_muon
        self.teachers = list(teachers)
        if self.teachers:
            check_distill_settings(distill_alpha, distill_temperature)
        self.distill_alpha = distill_alpha
        self.distill_temperature = distill_temperature
        self._distill_logs = {"distill_sum": 0.0, "lm_sum": 0.0, "positions": 0}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.teachers or not model.training:  # evaluation: the plain cross-entropy
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        lm_loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        features = {key: value for key, value in inputs.items() if key != "labels"}
        with torch.no_grad():
            teacher_logits = [teacher(**features, use_cache=False).logits for teacher in self.teachers]  # (B, T, V)
        soft_sum, positions = distillation_loss(outputs.logits, teacher_logits, inputs["labels"],
                                                self.distill_temperature)
        divisor = positions.clamp(min=1)  # a mean over this batch's scored tokens, as the model's own loss ...
        if self.model_accepts_loss_kwargs and num_items_in_batch is not None:
            # ... unless Trainer.compute_loss normalised that over the label tokens of the whole accumulated batch
            # (times the processes when tokens are counted across them): then the same here
            divisor = num_items_in_batch
            if self.args.average_tokens_across_devices:
                divisor = divisor / self.accelerator.num_processes
        loss = self.distill_alpha * soft_sum / divisor + (1.0 - self.distill_alpha) * lm_loss
        logs = self._distill_logs
        logs["distill_sum"] += soft_sum.item()
        logs["lm_sum"] += (lm_loss.detach() * divisor).item()
        logs["positions"] += positions.item()
        return (loss, outputs) if return_outputs else loss

    def create_optimizer(self, model=None):
        if not self.use_muon or self.optimizer is not None:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        self.optimizer = build_muon_adamw(model, self.args, self.get_decay_parameter_names(model))
        return self.optimizer

    def get_decay_parameter_names(self, model) -> list[str]:
        # Embeddings and linear weights decay; biases and norm gains (vectors) do not.
        return [name for name, param in model.named_parameters() if param.ndim >= 2]

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        for key in [k for k in logs if k.endswith("_loss") and not k.startswith("train")]:
            logs[key[: -len("loss")] + "perplexity"] = math.exp(min(logs[key], 50.0))
        if self.teachers and "loss" in logs:  # a training log: the two parts of the loss since the last one
            sums = torch.tensor(list(self._distill_logs.values()), dtype=torch.float64, device=self.args.device)
            if self.args.world_size > 1:  # every process logs here at once: add up all of theirs
                sums = self.accelerator.reduce(sums, reduction="sum")
            distill_sum, lm_sum, positions = sums.tolist()
            if positions:
                logs.update(distill_loss=distill_sum / positions, lm_loss=lm_sum / positions)
            self._distill_logs = {"distill_sum": 0.0, "lm_sum": 0.0, "positions": 0}
        if self.time_budget is not None:
            logs["elapsed_seconds"] = round(self.time_budget.elapsed(), 2)  # for loss against wall-clock
        super().log(logs, *args, **kwargs)


def start_run(training_args, overwrite: bool):
    """What every training job does first: find the checkpoint to resume (if any), check the output folder (main
    process), seed every generator. Returns the checkpoint path or None."""
    from transformers import set_seed

    resume = resolve_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    if training_args.process_index == 0:
        check_output_dir(training_args.output_dir, overwrite, resume)
    set_seed(training_args.seed)
    return resume


def train_and_save(trainer, resume, title: str, extra_metrics: dict | None = None, evaluate=None) -> dict:
    """What every training job does last: train, save the model, evaluate (`evaluate(trainer)` -> metrics, default the
    validation set at the last step), write `all_results.json`, the trainer state and `loss_curve.png`.

    After a resume the `train_loss` of `Trainer` covers only the resumed steps: it is reported as
    `train_loss_since_resume`, next to `resumed_from_step`.
    训练任务的共同收尾：训练、保存、评估、写入 all_results.json 与损失曲线。
    """
    start_step = 0
    if resume:
        start_step = json.loads((Path(resume) / "trainer_state.json").read_text())["global_step"]
    train_result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    metrics = {**train_result.metrics}
    if resume:
        metrics["train_loss_since_resume"] = metrics.pop("train_loss")
        metrics["resumed_from_step"] = start_step
    metrics.update(
        world_size=trainer.args.world_size, global_step=trainer.state.global_step, **(extra_metrics or {})
    )
    metrics.update(evaluate(trainer) if evaluate is not None else final_eval_metrics(trainer))
    if trainer.is_world_process_zero():
        output_dir = Path(trainer.args.output_dir)
        trainer.save_state()
        write_json(output_dir / "all_results.json", metrics)
        plot_loss_curve(trainer.state.log_history, output_dir / "loss_curve.png", title)
    return metrics


def check_budget_arguments(training_args) -> None:
    """With a time budget, intervals given as fractions of the run (0 < x < 1) have no step count to refer to."""
    for name in ("logging_steps", "eval_steps", "save_steps"):
        value = getattr(training_args, name)
        if value is not None and 0 < value < 1:
            raise ValueError(
                f"--{name} {value} is a fraction of the run's steps, which a time budget does not fix in advance; "
                f"give --{name} as a number of steps"
            )
    if training_args.max_steps is None or training_args.max_steps <= 0:
        training_args.max_steps = BUDGET_MAX_STEPS


def check_output_dir(output_dir: str, overwrite: bool, resume_from_checkpoint=None, outputs=RUN_OUTPUTS,
                     what: str = "results this run would write") -> None:
    """Refuse to write over any file a run would write (`outputs`, glob patterns), unless `--overwrite` or resuming.

    With `--overwrite`, the checkpoints of the earlier run are deleted, so that `--resume_from_checkpoint last`
    can only find this run's. Other files in the folder are never touched.
    输出目录中已有本次运行将写入的文件时拒绝覆盖（除非 --overwrite 或续训）；--overwrite 会删除旧检查点。
    """
    path = Path(output_dir)
    if resume_from_checkpoint or not path.exists():
        return
    if not path.is_dir():
        raise FileExistsError(f"--output_dir {path} exists and is not a folder")
    found = sorted(p.name for p in path.iterdir() if any(fnmatch.fnmatch(p.name, pattern) for pattern in outputs))
    if found and not overwrite:
        raise FileExistsError(
            f"--output_dir {path} already holds {what} ({', '.join(found[:6])}); pass --overwrite to write over "
            "them" + (", --resume_from_checkpoint to continue," if outputs is RUN_OUTPUTS else "")
            + " or choose another --output_dir"
        )
    if overwrite:
        for checkpoint in path.glob("checkpoint-*"):
            if checkpoint.is_dir() and (checkpoint / "trainer_state.json").is_file():  # made by Trainer
                shutil.rmtree(checkpoint)


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


_WORD_LITERALS = {"true": True, "false": False, "none": None, "null": None}


def parse_config_overrides(text: str | None) -> dict:
    """`"num_hidden_layers=2,hidden_size=64,tie_word_embeddings=true"` -> {"num_hidden_layers": 2, ...}.

    Values are Python literals; `true` / `false` / `none` / `null` in any case are also read as in YAML and JSON.
    """
    overrides = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--config_overrides item {item!r} is not key=value")
        key, value = key.strip(), value.strip()
        if value.lower() in _WORD_LITERALS:
            overrides[key] = _WORD_LITERALS[value.lower()]
            continue
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
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


def load_pretrained(name, auto_class=AutoModelForCausalLM, **kwargs):
    """A model from a local folder or a Hub repo id, with a clear error for a missing or damaged checkpoint.

    从本地文件夹或 Hub 仓库加载模型；缺失或损坏的检查点给出指明文件的错误。
    """
    from safetensors import SafetensorError

    source = resolve_folder_or_repo(name, "model")
    if Path(source).is_dir() and not (Path(source) / "config.json").is_file():
        raise FileNotFoundError(f"no model in {source}: config.json is missing")
    try:
        return auto_class.from_pretrained(source, **kwargs)
    except SafetensorError as error:
        raise ValueError(
            f"{Path(source) / 'model.safetensors'} is damaged or incomplete ({error}); save or download it again"
        ) from None


def load_chat_model(name, why: str):
    """(model, tokenizer) of an SFT model folder, for the jobs that come after SFT (dpo, grpo); a tokenizer without
    a chat template is an error saying `why` the job needs one."""
    tokenizer = load_tokenizer(name)
    if not tokenizer.chat_template:
        raise ValueError(f"{name}: the tokenizer has no chat template, and {why}; give it an SFT model "
                         "(`scratchformers sft`)")
    return load_pretrained(name), tokenizer


def lora_for_trl(model, kind: str, r: int, lora_alpha: int):
    """`--lora` of the TRL jobs on every linear layer of the blocks: PEFT's LoraConfig for the trainer to apply
    (`peft`), scratchformers.lora layers added to `model` now (`hand`, returns None), or nothing (`none`)."""
    from .. import lora

    if kind not in ("none", "peft", "hand"):
        raise ValueError(f"--lora must be none, peft or hand, got {kind!r}")
    if kind == "peft":
        from peft import LoraConfig

        return LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                          target_modules=lora.family_target_modules(model))
    if kind == "hand":
        lora.add_lora(model, lora.LoraSettings(r=r, lora_alpha=lora_alpha, task_type="CAUSAL_LM"))
    return None


def load_config(name):
    """The config of a saved model folder or Hub repo (for its family), with the errors of `load_pretrained`."""
    from transformers import AutoConfig

    source = resolve_folder_or_repo(name, "model")
    if Path(source).is_dir() and not (Path(source) / "config.json").is_file():
        raise FileNotFoundError(f"no model in {source}: config.json is missing")
    return AutoConfig.from_pretrained(source)


def get_tokenizer(model_args, raw_train, training_args, resume_from=None, default_type="bpe", teacher=None):
    """The tokenizer: the given folder, else the model's, else the checkpoint's, else the first distillation
    teacher's, else one trained (rank 0 first) on exactly the documents the model will be trained on
    (`--tokenizer_type`, else `default_type`)."""
    source = model_args.tokenizer_name_or_path or model_args.model_name_or_path or resume_from or teacher
    if source:
        return load_tokenizer(source)
    output_dir = Path(training_args.output_dir)
    with training_args.main_process_first(desc="training the tokenizer"):
        if training_args.process_index == 0:
            tokenizer = train_tokenizer(
                raw_train, vocab_size=model_args.vocab_size, show_progress=True,
                tokenizer_type=model_args.tokenizer_type or default_type,
            )
            tokenizer.save_pretrained(output_dir)
        else:
            tokenizer = load_tokenizer(output_dir)
    return tokenizer


def build_causal_lm(model_name_or_path, preset, tokenizer, block_size, config_overrides=None, attn_implementation=None):
    """Load a causal LM from a folder, or build a fresh one from a preset sized for the tokenizer.

    A fresh model's `max_position_embeddings` is `block_size`, the context it is trained with, unless
    `config_overrides` sets it.
    """
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    if model_name_or_path:
        model = load_pretrained(model_name_or_path, **kwargs)
    else:
        extra = {"max_position_embeddings": block_size} if block_size else {}
        config = build_config(preset, tokenizer, config_overrides, **extra)
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


def parse_reference_point(text: str) -> tuple[str, float, float]:
    """`"nanoGPT (CPU)@1m35s=1.886"` -> ("nanoGPT (CPU)", 95.0, 1.886): a label, a time and a loss in nats/char."""
    label, at, rest = text.rpartition("@")
    when, eq, value = rest.partition("=")
    try:
        if not (at and eq and label.strip()):
            raise ValueError
        return label.strip(), parse_duration(when), float(value)
    except ValueError:
        raise ValueError(
            f"reference point {text!r} is not LABEL@TIME=NATS_PER_CHAR, e.g. 'nanoGPT (CPU)@1m35s=1.886'"
        ) from None


def plot_loss_vs_time(log_history: list[dict], path, chars_per_token: float, references=(), title="loss") -> Path | None:
    """Loss in nats per character against training wall-clock (`elapsed_seconds` in the logs of a time-budgeted
    run), with reference results of other runs as labelled points; the per-token losses are divided by the
    validation text's characters per token."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(e["elapsed_seconds"], e["loss"] / chars_per_token) for e in log_history if "loss" in e and "elapsed_seconds" in e]
    evals = [(e["elapsed_seconds"], e["eval_loss"] / chars_per_token) for e in log_history if "eval_loss" in e and "elapsed_seconds" in e]
    if not train and not evals:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), alpha=0.6, label="train")
    if evals:
        ax.plot(*zip(*evals), "o-", label="validation")
    for label, seconds, value in references:
        ax.plot([seconds], [value], "*", markersize=12, label=f"{label}: {value:.3f} at {seconds / 60:.1f} min")
    ax.set_xlabel("training wall-clock (s)")
    ax.set_ylabel("cross-entropy (nats/char)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
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


@torch.no_grad()
def nats_per_character(model, tokenizer, documents, context: int | None = None, batch_size: int = 16) -> dict:
    """Cross-entropy summed over every token of `documents`, divided by their number of characters.

    The documents are scored as one stream, each preceded by the EOS separator (as in `pack_dataset`), in
    non-overlapping windows of `context` tokens (default: the model's `max_position_embeddings`); a separator
    between two documents counts as one character. Unlike the loss per token, this figure does not depend on the
    tokenizer, so character-level, byte-level and BPE models compare on it (nanoGPT reports the same for
    tinyshakespeare). `model` may also be a list of models sharing the tokenizer: the list is scored as an
    ensemble, each next-token distribution the mean of theirs (a mixture, never worse than their mean loss).
    每个字符的平均交叉熵（nats/char）：与分词方式无关，可在字符级、字节级和 BPE 模型之间直接比较。
    传入模型列表时按集成计分：各模型的下一词概率取平均。
    """
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    if not models:
        raise ValueError("nats_per_character needs a model, or a non-empty list of models")
    if isinstance(documents, str):
        documents = [documents]
    documents = [doc for doc in documents if doc]
    if not documents:
        raise ValueError("nats_per_character needs at least one non-empty text")
    if context is None:
        contexts = sorted({m.config.max_position_embeddings for m in models})
        if len(contexts) > 1:
            raise ValueError(f"the ensemble's models have different contexts {contexts}: pass context=")
        context = contexts[0]
    if context < 1:
        raise ValueError(f"context must be a positive number of tokens, got {context}")
    eos = tokenizer.eos_token_id
    ids = []
    for doc_ids in tokenizer(documents, add_special_tokens=False)["input_ids"]:
        ids += [eos] + doc_ids
    stream = torch.tensor(ids)  # (N,)
    was_training = [m.training for m in models]
    for m in models:
        m.eval()
    device = models[0].device
    total_nats = 0.0
    starts = list(range(0, len(stream) - 1, context))
    for i in range(0, len(starts), batch_size):
        windows = [stream[s : s + context + 1] for s in starts[i : i + batch_size]]
        inputs = torch.nn.utils.rnn.pad_sequence([w[:-1] for w in windows], batch_first=True, padding_value=eos)
        targets = torch.nn.utils.rnn.pad_sequence([w[1:] for w in windows], batch_first=True, padding_value=-100)
        log_probs = mean_log_probs(
            [m(input_ids=inputs.to(m.device), use_cache=False).logits.to(device) for m in models]
        )  # (B, T, V)
        total_nats += torch.nn.functional.nll_loss(
            log_probs.flatten(0, 1), targets.flatten().to(device), ignore_index=-100, reduction="sum"
        ).item()
    for m, mode in zip(models, was_training):
        m.train(mode)
    tokens = len(stream) - 1
    characters = sum(len(doc) for doc in documents) + len(documents) - 1
    return {
        "nats_per_char": total_nats / characters,
        "nats_per_token": total_nats / tokens,
        "tokens": tokens,
        "characters": characters,
        "context": context,
    }


def write_json(path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def sample_texts(model, tokenizer, prompts, max_new_tokens=60, seed=0, **generate_kwargs) -> list[str]:
    """Each prompt followed by a sampled continuation (an empty prompt starts from the BOS token), from `seed`."""
    from transformers import set_seed

    set_seed(seed)
    generate_kwargs = {"do_sample": True, "top_k": 40, "temperature": 0.8, **generate_kwargs}
    return [prompt + generate_texts(model, tokenizer, prompt, max_new_tokens, **generate_kwargs)[0] for prompt in prompts]

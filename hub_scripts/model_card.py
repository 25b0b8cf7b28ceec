"""Model cards filled from the training run's own records, in English and 中文.

Read, when present in the model folder: `trainer_state.json` (Trainer's log history), `training_args.json` or
`training_args.bin`, `all_results.json` / `train_results.json` / `eval_results.json` (Trainer.save_metrics),
`run_record.json` (or any JSON given as `record`); and always `config.json` and the weights' headers.
A number the records do not hold is left out, and the card says it was not recorded.
"""

import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ._io import read_config, read_json, safetensors_parameter_count

RESULT_FILES = ("all_results.json", "train_results.json", "eval_results.json")
TEMPLATE = Path(__file__).with_name("templates") / "model_card.md.j2"
ADAPTER_TEMPLATE = TEMPLATE.with_name("adapter_card.md.j2")
# TrainingArguments fields worth showing, in display order
SETTINGS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
            "gradient_accumulation_steps", "lr_scheduler_type", "warmup_steps", "warmup_ratio", "weight_decay",
            "max_grad_norm", "optim", "bf16", "fp16", "seed")
_DATA_SUFFIXES = (".txt", ".json", ".jsonl", ".csv", ".tsv", ".parquet", ".arrow")


@dataclass
class RunRecords:
    """What a training run recorded about itself."""

    sources: list = field(default_factory=list)  # file names actually read
    settings: dict = field(default_factory=dict)  # training hyperparameters
    progress: dict = field(default_factory=dict)  # steps, epochs, final training loss, runtime
    evaluation: dict = field(default_factory=dict)  # final eval_* metrics (and the step they were taken at)
    datasets: list = field(default_factory=list)
    language: list = field(default_factory=list)
    base_model: str | None = None
    notes: list = field(default_factory=list)


def _load_training_args_bin(path: Path):
    """`training_args.bin` through `torch.load(weights_only=True)`, allowing only transformers/accelerate classes."""
    names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    foreign = [name for name in names if not name.startswith(("transformers.", "accelerate."))]
    if foreign:
        raise ValueError(f"it references classes outside transformers/accelerate ({', '.join(foreign)})")
    classes = []
    for name in names:
        module, _, attribute = name.rpartition(".")
        classes.append(getattr(importlib.import_module(module), attribute))
    with torch.serialization.safe_globals(classes):
        args = torch.load(path, map_location="cpu", weights_only=True)
    return args.to_dict() if hasattr(args, "to_dict") else dict(vars(args))


def _pick_settings(args: dict) -> dict:
    picked = {k: args[k] for k in SETTINGS if args.get(k) not in (None, "")}
    if (picked.get("max_steps") or 0) > 0:
        picked.pop("num_train_epochs", None)  # max_steps wins; the epoch count is not what ran
    else:
        picked.pop("max_steps", None)
    return picked


def _is_quality_metric(key: str, value) -> bool:
    """eval_* numbers that describe the model (loss, perplexity, accuracy), not the speed of the evaluation."""
    return (key.startswith("eval_") and isinstance(value, (int, float)) and not isinstance(value, bool)
            and not key.endswith(("_runtime", "_per_second")))


def _as_list(value):
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _merge_run_record(records: RunRecords, record: dict) -> None:
    for key in ("datasets", "dataset", "train_files", "train_file", "data_files", "data"):
        if isinstance(record.get(key), (str, list)):
            records.datasets += [str(d) for d in _as_list(record[key])]
    records.language += _as_list(record.get("language"))
    records.base_model = record.get("base_model") or records.base_model
    for key in ("settings", "training", "args", "training_args", "hyperparameters"):
        if isinstance(record.get(key), dict):
            records.settings.update({k: v for k, v in record[key].items() if isinstance(v, (int, float, str, bool))})
    for key in ("metrics", "eval", "evaluation", "eval_results"):
        if isinstance(record.get(key), dict):
            records.evaluation.update({k: v for k, v in record[key].items() if isinstance(v, (int, float))})


def read_run_records(folder, record=None) -> RunRecords:
    """Everything the training run wrote about itself into `folder` (plus an optional run-record JSON).

    读取训练过程自己留下的记录（trainer_state.json、training_args、*_results.json、run_record.json）。
    """
    folder = Path(folder)
    records = RunRecords()

    state_path = folder / "trainer_state.json"
    if state_path.is_file():
        state = read_json(state_path)
        records.sources.append(state_path.name)
        history = state.get("log_history", [])
        for name in ("global_step", "epoch", "train_batch_size"):
            if state.get(name) is not None:
                records.progress[name] = state[name]
        train_losses = [entry for entry in history if "loss" in entry]
        if train_losses:
            records.progress["final_train_loss"] = train_losses[-1]["loss"]
        evals = [entry for entry in history if "eval_loss" in entry]
        if evals:
            records.evaluation.update({k: v for k, v in evals[-1].items() if _is_quality_metric(k, v)})
            records.evaluation["step"] = evals[-1].get("step")
        summary = [entry for entry in history if "train_runtime" in entry]
        if summary:
            records.progress.update({k: v for k, v in summary[-1].items() if k.startswith("train_")})

    if (folder / "training_args.json").is_file():
        records.settings.update(_pick_settings(read_json(folder / "training_args.json")))
        records.sources.append("training_args.json")
    elif (folder / "training_args.bin").is_file():
        try:
            records.settings.update(_pick_settings(_load_training_args_bin(folder / "training_args.bin")))
            records.sources.append("training_args.bin")
        except Exception as error:
            records.notes.append(f"training_args.bin was not read ({error}).")

    for name in RESULT_FILES:
        if (folder / name).is_file():
            results = read_json(folder / name)
            records.sources.append(name)
            records.evaluation.update({k: v for k, v in results.items() if _is_quality_metric(k, v)})
            if isinstance(results.get("base_model"), str):  # written by the SFT job: the model it was tuned from
                records.base_model = results["base_model"]
            records.progress.update({k: v for k, v in results.items()
                                     if k.startswith("train_") and isinstance(v, (int, float))})

    for path in ([folder / "run_record.json"] if (folder / "run_record.json").is_file() else []) + \
            ([Path(record)] if record else []):
        _merge_run_record(records, read_json(path))
        records.sources.append(path.name)

    if "eval_loss" in records.evaluation and "eval_perplexity" not in records.evaluation:
        records.evaluation["eval_perplexity"] = math.exp(records.evaluation["eval_loss"])
    records.datasets = list(dict.fromkeys(records.datasets))
    records.language = list(dict.fromkeys(records.language))
    return records


def _hub_dataset_ids(datasets):
    """The entries that look like Hub dataset ids (local files stay in the card's text only)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    ids = []
    for name in datasets:
        try:
            validate_repo_id(name)
        except HFValidationError:
            continue
        if not name.lower().endswith(_DATA_SUFFIXES):
            ids.append(name)
    return ids


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


# Every key a card shows, with its English and Chinese label.
LABELS = {
    "family": ("Family", "模型结构"),
    "parameters": ("Parameters (stored)", "参数量（实际存储）"),
    "num_hidden_layers": ("Layers", "层数"),
    "hidden_size": ("Hidden size", "隐藏维度"),
    "num_attention_heads": ("Attention heads", "注意力头数"),
    "num_key_value_heads": ("Key/value heads", "键值头数（GQA）"),
    "intermediate_size": ("MLP size", "前馈层维度"),
    "vocab_size": ("Vocabulary", "词表大小"),
    "max_position_embeddings": ("Context length", "上下文长度"),
    "rope_theta": ("RoPE theta", "RoPE 基数"),
    "tie_word_embeddings": ("Tied embeddings", "共享输入输出嵌入"),
    "dtype": ("Weights dtype", "权重精度"),
    "learning_rate": ("Learning rate", "学习率"),
    "num_train_epochs": ("Epochs", "训练轮数"),
    "max_steps": ("Maximum steps", "最大步数"),
    "per_device_train_batch_size": ("Batch size per device", "每设备批大小"),
    "gradient_accumulation_steps": ("Gradient accumulation steps", "梯度累积步数"),
    "lr_scheduler_type": ("Learning-rate schedule", "学习率调度"),
    "warmup_steps": ("Warmup steps", "预热步数"),
    "warmup_ratio": ("Warmup (fraction of training)", "预热比例（占训练的比例）"),
    "weight_decay": ("Weight decay", "权重衰减"),
    "max_grad_norm": ("Gradient clipping (max norm)", "梯度裁剪（最大范数）"),
    "optim": ("Optimizer", "优化器"),
    "bf16": ("bf16", "bf16"),
    "fp16": ("fp16", "fp16"),
    "seed": ("Seed", "随机种子"),
    "preset": ("Preset", "预设"),
    "block_size": ("Block length (tokens)", "块长度（token）"),
    "tokenizer_type": ("Tokenizer type", "分词器类型"),
    "time_budget": ("Time budget", "时间预算"),
    "use_muon": ("Muon optimizer", "Muon 优化器"),
    "global_step": ("Steps completed", "完成步数"),
    "epoch": ("Epochs completed", "完成轮数"),
    "train_batch_size": ("Batch size", "批大小"),
    "final_train_loss": ("Last logged training loss (nats/token)", "最后记录的训练损失（nats/token）"),
    "train_loss": ("Mean training loss (nats/token)", "平均训练损失（nats/token）"),
    "train_loss_since_resume": ("Mean training loss since the resume (nats/token)", "续训以来的平均训练损失（nats/token）"),
    "resumed_from_step": ("Resumed from step", "从第几步续训"),
    "train_runtime": ("Training time (s)", "训练耗时（秒）"),
    "train_samples_per_second": ("Samples per second", "每秒样本数"),
    "train_steps_per_second": ("Steps per second", "每秒步数"),
    "time_budget_seconds": ("Time budget (s)", "时间预算（秒）"),
    "train_wall_seconds": ("Training wall-clock (s)", "训练墙钟时间（秒）"),
    "eval_loss": ("Validation loss (nats/token)", "验证集损失（nats/token）"),
    "eval_perplexity": ("Validation perplexity", "验证集困惑度"),
    "eval_nats_per_char": ("Validation loss (nats/character)", "验证集损失（nats/字符）"),
    "eval_accuracy": ("Validation accuracy", "验证集准确率"),
    "test_accuracy": ("Test accuracy", "测试集准确率"),
}


def _rows(values: dict, known_only: bool = False) -> list[dict]:
    """Table rows labelled in each language (see LABELS); a key without a label (a run record's own setting) is
    shown as `key` in both, unless `known_only`. A warmup given as a fraction of the run (TrainingArguments takes
    warmup_steps < 1 as a ratio) is labelled as one."""
    rows = []
    for key, value in values.items():
        if key == "warmup_steps" and isinstance(value, float) and 0 < value < 1:
            key = "warmup_ratio"
        if value is None or (known_only and key not in LABELS):
            continue
        label = dict(zip(("en", "zh"), LABELS[key])) if key in LABELS else {"en": f"`{key}`", "zh": f"`{key}`"}
        rows.append({"label": label, "value": _fmt(value)})
    return rows


def _is_hub_id(name: str | None) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not name or Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _family_line(config: dict) -> dict:
    import scratchformers

    family = scratchformers.FAMILIES.get(config.get("model_type"))
    card = family.card if family is not None else {}
    model_type = config.get("model_type")
    return {lang: f"{card.get(lang, model_type)}, model_type `{model_type}`" for lang in ("en", "zh")}


def _texts(repo_id, base_model, endpoint, classifier, chat, context, has_base_link, sources, masked=False) -> dict:
    """The card's sentences in English and 中文 (the template lays them out); `masked` for a masked LM (BERT)."""
    link = f"[`{base_model}`]({endpoint}/{base_model})" if has_base_link else f"`{base_model}`"
    code = ["from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline" if classifier
            else "from transformers import pipeline" if masked
            else "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}", trust_remote_code=True)']
    kind = ("text classifier", "文本分类模型") if classifier else (
        ("masked language model (a BERT-style encoder)", "掩码语言模型（BERT 风格编码器）") if masked else
        ("causal language model", "因果语言模型"))
    texts = {}
    for lang in ("en", "zh"):
        t = (lambda en, zh: zh if lang == "zh" else en)  # noqa: E731
        if masked:
            lines = code[:2] + [
                f'fill = pipeline("fill-mask", model="{repo_id}", trust_remote_code=True)',
                'print(fill("' + t("The movie was [MASK] .", "这部电影很[MASK]看。") + '"))']
        elif classifier:
            lines = code + [
                f'model = AutoModelForSequenceClassification.from_pretrained("{repo_id}", trust_remote_code=True)',
                'classify = pipeline("text-classification", model=model, tokenizer=tokenizer)',
                'print(classify("' + t("What a wonderful film!", "这部电影太好看了！") + '"))']
        else:
            lines = code + [f'model = AutoModelForCausalLM.from_pretrained("{repo_id}", trust_remote_code=True)']
            if chat:
                lines += ['messages = [{"role": "user", "content": "' + t("Tell me a story.", "讲一个故事。") + '"}]',
                          'inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, '
                          'return_tensors="pt", return_dict=True)',
                          "# generation_config.json ends the answer at the chat template's <|im_end|>"]
            else:
                lines += ['inputs = tokenizer("' + t("Once upon a time", "从前") + '", return_tensors="pt")']
            lines += ["output = model.generate(**inputs, max_new_tokens=64, do_sample=True, top_p=0.9, temperature=0.8)",
                      'print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))']
        texts[lang] = {
            "model_heading": t("## Model", "## 模型"),
            "intro": t(f"`{repo_id}` is a {kind[0]} built with "
                       "scratchformers: models written from scratch, native to 🤗 transformers.",
                       f"`{repo_id}` 是用 scratchformers 训练的{kind[1]}："
                       "从零手写、原生兼容 🤗 transformers。"),
            "fine_tuned_from": t(f"Fine-tuned from {link}.", f"在 {link} 的基础上微调。"),
            "architecture_heading": t("### Architecture and size", "### 结构与规模"),
            "item": t("Item", "项目"), "value": t("Value", "数值"),
            "training_heading": t("### Training data and settings", "### 训练数据与设置"),
            "data": t("Data: ", "数据："),
            "no_data": t("The run records do not name the training data.", "训练记录中没有注明训练数据。"),
            "from_records": t(f"From the run's own records ({sources}):", f"来自训练过程自己的记录（{sources}）："),
            "no_records": t("No training record (trainer_state.json, training_args) was found with the model, so the "
                            "training settings are not reported.",
                            "模型目录中没有训练记录（trainer_state.json、training_args），因此不报告训练设置。"),
            "loss_curve": t("Training loss curve", "训练损失曲线"),
            "evaluation_heading": t("### Evaluation results", "### 评测结果"),
            "last_evaluation": t("The last evaluation the run recorded:", "训练过程最后一次记录的评测："),
            "no_evaluation": t("The run records hold no evaluation results, so none are reported.",
                               "训练记录中没有评测结果，因此不报告。"),
            "usage_heading": t("### How to load and use", "### 加载与使用"),
            "needs": t("Needs only `transformers` and `torch`; the model code ships with the weights "
                       "(`trust_remote_code=True`).",
                       "只需安装 `transformers` 与 `torch`；模型代码随权重一起发布（需 `trust_remote_code=True`）。"),
            "code": "\n".join(lines),
            "limits_heading": t("### Limits", "### 局限"),
            "limits": [
                t("A small model trained from scratch: its predictions are often wrong outside its training data; "
                  "do not rely on it for decisions." if classifier or masked else
                  "A small model trained from scratch: expect fluent-looking but often wrong or incoherent text; do "
                  "not rely on it for facts or decisions.",
                  "从零训练的小模型：在训练数据以外经常判断错误，不要依赖它做决策。" if classifier or masked else
                  "从零训练的小模型：生成的文字可能通顺但经常错误或不连贯，不要依赖其事实或用于决策。"),
                t("It reflects its training data, including its biases, and has no safety tuning.",
                  "模型反映训练数据（包括其中的偏见），未经过安全对齐。"),
                t(f"Inputs longer than {context} tokens are rejected (positions are only trained up to that length).",
                  f"输入超过 {context} 个 token 会被拒绝（位置编码只训练到这个长度）。"),
            ],
        }
    return texts


def build_model_card(model_folder, repo_id: str, *, weights_folder=None, license: str | None = "apache-2.0",
                     language=None, datasets=None, base_model: str | None = None, record=None,
                     has_chat_template: bool = False, loss_curve: str | None = None,
                     endpoint: str | None = None) -> ModelCard:
    """A Hub model card (YAML metadata + English and 中文 sections) for the model in `model_folder`, rendered from
    `templates/model_card.md.j2` with `huggingface_hub.ModelCard.from_template`.

    `weights_folder` is where the safetensors to count live (the staged folder; default `model_folder`); links point
    to `endpoint` (default: the Hub endpoint in use). Arguments override the run records; nothing is invented when
    both are silent.
    根据训练记录生成中英双语模型卡（Jinja 模板）；记录中没有的数字不会编造。
    """
    from huggingface_hub import constants

    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    model_folder = Path(model_folder)
    config = read_config(weights_folder or model_folder)
    records = read_run_records(model_folder, record)
    try:
        parameters = safetensors_parameter_count(weights_folder or model_folder)
    except (FileNotFoundError, OSError):
        parameters = None
    language = _as_list(language) or records.language
    datasets = _as_list(datasets) or records.datasets
    base_model = base_model or records.base_model
    evaluation = {k: v for k, v in records.evaluation.items() if k != "step"}

    classifier = any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or [])
    masked = any(a.endswith("ForMaskedLM") for a in config.get("architectures") or [])
    task = "text-classification" if classifier else "fill-mask" if masked else "text-generation"
    metric = (("accuracy", "eval_accuracy", "Accuracy") if classifier
              else ("perplexity", "eval_perplexity", "Perplexity"))
    eval_results = None
    if metric[1] in evaluation:
        dataset_ids = _hub_dataset_ids(datasets)
        eval_results = [EvalResult(task_type=task, dataset_type=dataset_ids[0] if dataset_ids else "custom",
                                   dataset_name=datasets[0] if datasets else "held-out validation split",
                                   metric_type=metric[0], metric_name=metric[2],
                                   metric_value=round(float(evaluation[metric[1]]), 4))]
    base_is_hub = _is_hub_id(base_model)
    data = ModelCardData(
        license=license, language=language or None, library_name="transformers", pipeline_tag=task,
        tags=["scratchformers", config.get("model_type", "custom"), task, "custom_code"],
        base_model=base_model if base_is_hub else None, datasets=_hub_dataset_ids(datasets) or None,
        metrics=([metric[0]] if metric[1] in evaluation else None),
        model_name=repo_id.split("/")[-1], eval_results=eval_results,
    )
    config_values = {key: config.get(key) for key in ("num_hidden_layers", "hidden_size", "num_attention_heads",
                                                      "num_key_value_heads", "intermediate_size", "vocab_size",
                                                      "max_position_embeddings", "tie_word_embeddings", "dtype")}
    config_values["rope_theta"] = (config.get("rope_parameters") or {}).get("rope_theta", config.get("rope_theta"))
    architecture = [{"label": dict(zip(("en", "zh"), LABELS["family"])), "value": _family_line(config)}]
    architecture += _rows({"parameters": parameters, **config_values})
    return ModelCard.from_template(
        data,
        template_path=TEMPLATE,
        model_name=repo_id.split("/")[-1],
        notes=records.notes,
        languages=["en", "zh"],
        text=_texts(repo_id, base_model, endpoint, classifier, has_chat_template,
                    config.get("max_position_embeddings"), base_is_hub,
                    ", ".join(f"`{name}`" for name in records.sources), masked),
        base_model=base_model,
        architecture=architecture,
        datasets=datasets,
        training=_rows({k: v for k, v in records.progress.items() if k in LABELS} | records.settings),
        evaluation=_rows(evaluation, known_only=True),
        loss_curve=loss_curve,
    )


def build_adapter_card(repo_id: str, base_model: str, adapter_config: dict, *, license=None, language=None,
                       datasets=None, subfolder: str | None = None, endpoint: str | None = None) -> ModelCard:
    """A card for a PEFT LoRA adapter that names its base model (English and 中文), from
    `templates/adapter_card.md.j2`; links point to `endpoint` (default: the Hub endpoint in use)."""
    from huggingface_hub import constants

    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    data = ModelCardData(license=license, language=_as_list(language) or None, library_name="peft",
                         base_model=base_model,
                         tags=["scratchformers", "lora", "peft", f"base_model:adapter:{base_model}"],
                         datasets=_hub_dataset_ids(_as_list(datasets)) or None, pipeline_tag="text-generation")
    targets = adapter_config.get("target_modules")
    return ModelCard.from_template(
        data,
        template_path=ADAPTER_TEMPLATE,
        base_model=base_model,
        base_link=f"[`{base_model}`]({endpoint}/{base_model})",
        repo_id=repo_id,
        subfolder_arg=f', subfolder="{subfolder}"' if subfolder else "",
        rank=adapter_config.get("r"),
        alpha=adapter_config.get("lora_alpha"),
        task_type=adapter_config.get("task_type"),
        targets=", ".join(sorted(targets)) if isinstance(targets, (list, set)) else targets,
    )

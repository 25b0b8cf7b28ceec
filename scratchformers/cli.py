"""The `scratchformers` command line: split-text, train-tokenizer, pretrain, sft, classify, build-preferences, dpo,
grpo, generate, demo, fetch-data, export, quantize, serve.

Each job's flags come from dataclasses through `HfArgumentParser`, so every `TrainingArguments` field is a flag
(`--learning_rate`, `--bf16`, `--activation_checkpointing`, ...). `--config FILE.yaml|json` reads the same keys
from a file; flags on the command line override it. `scratchformers <job> --help` lists everything.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from huggingface_hub.errors import StrictDataclassError
from transformers import HfArgumentParser, TrainingArguments

from .training.arguments import (
    ClassifyArguments,
    DemoArguments,
    DPOArguments,
    GenerateArguments,
    GRPOArguments,
    ModelArguments,
    PreferenceBuildArguments,
    PretrainDataArguments,
    SFTArguments,
    SplitTextArguments,
    TokenizerArguments,
)

# Defaults suited to small models trained from scratch on a CPU; any of them can be overridden by a flag.
TRAINING_DEFAULTS = dict(
    output_dir=None,
    learning_rate=1e-3,
    lr_scheduler_type="cosine",
    warmup_steps=0.05,
    weight_decay=0.1,
    adam_beta2=0.95,
    max_grad_norm=1.0,
    logging_steps=10,
    eval_strategy="steps",
    eval_steps=200,
    save_steps=500,
    save_total_limit=2,
    report_to=["tensorboard"],
    per_device_train_batch_size=16,
    per_device_eval_batch_size=16,
    ddp_find_unused_parameters=False,
)
COMMANDS = {
    "split-text": (
        "Cut a text file into train.txt and validation.txt by character position (切分训练/验证集).",
        (SplitTextArguments,),
        {},
    ),
    "train-tokenizer": ("Train a byte-level BPE tokenizer (训练分词器).", (TokenizerArguments,), {}),
    "pretrain": (
        "Pretrain a GPT/LLaMA2 model with Trainer (预训练).",
        (ModelArguments, PretrainDataArguments, TrainingArguments),
        TRAINING_DEFAULTS,
    ),
    "sft": ("Instruction-tune a pretrained model (指令微调).", (SFTArguments, TrainingArguments), {
        **TRAINING_DEFAULTS, "learning_rate": 3e-4, "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8}),
    "classify": ("Fine-tune for sequence classification on CSV (文本分类).", (ClassifyArguments, TrainingArguments), {
        **TRAINING_DEFAULTS, "learning_rate": 3e-4, "eval_strategy": "epoch", "save_strategy": "epoch",
        "num_train_epochs": 3}),
    "build-preferences": ("Build DPO preference pairs from SFT data (构造偏好数据).", (PreferenceBuildArguments,), {}),
    # the TRL jobs name their config class lazily: importing trl costs seconds, and only these jobs need it
    "dpo": ("Align an SFT model on preference pairs with DPO, TRL (偏好对齐).", (DPOArguments, "trl.DPOConfig"), {
        **TRAINING_DEFAULTS, "learning_rate": 5e-5, "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8,
        "num_train_epochs": 1, "gradient_checkpointing": False, "max_length": None, "bf16": None}),
    "grpo": ("Improve an SFT model with GRPO and a verifiable reward, TRL (强化学习).", (GRPOArguments, "trl.GRPOConfig"), {
        # the settings of benchmarks/align_report.py: 8 prompts x 8 answers per step, lr 3e-4 for a small model
        **TRAINING_DEFAULTS, "learning_rate": 3e-4, "per_device_train_batch_size": 64, "num_generations": 8,
        "max_completion_length": 48, "num_train_epochs": 1, "gradient_checkpointing": False, "eval_strategy": "no",
        "weight_decay": 0.0, "warmup_steps": 0.0, "bf16": None}),
    "generate": ("Sample text from a saved model, streaming tokens (生成文本).", (GenerateArguments,), {}),
    "demo": ("The whole path in a few CPU minutes, no download (一键演示).", (DemoArguments,), {}),
}


# The flags a job cannot run without (checked when it runs), marked in its --help.
REQUIRED = {
    "split-text": ("input_file", "output_dir"),
    "train-tokenizer": ("train_files",),
    "pretrain": ("train_files", "output_dir"),
    "sft": ("model_name_or_path", "train_file", "output_dir"),
    "classify": ("train_file", "output_dir"),
    "build-preferences": ("input_file", "output_file"),
    "dpo": ("model_name_or_path", "train_file", "output_dir"),
    "grpo": ("model_name_or_path", "output_dir"),
    "generate": ("model_name_or_path",),
}
# The TrainingArguments flags --help shows; --help-all lists every one of them.
COMMON_TRAINING_FLAGS = (
    "output_dir", "num_train_epochs", "max_steps", "per_device_train_batch_size", "per_device_eval_batch_size",
    "gradient_accumulation_steps", "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps",
    "weight_decay", "adam_beta2", "max_grad_norm", "logging_steps", "eval_strategy", "eval_steps", "save_strategy",
    "save_steps", "save_total_limit", "resume_from_checkpoint", "seed", "bf16", "activation_checkpointing",
    "torch_compile", "report_to",
)


# Fields of a job's own TrainingArguments subclass (TRL's configs) that its --help shows too.
JOB_TRAINING_FLAGS = {
    "dpo": ("beta", "max_length", "loss_type", "precompute_ref_log_probs", "truncation_mode"),
    "grpo": ("beta", "num_generations", "max_completion_length", "temperature", "loss_type", "epsilon",
             "steps_per_generation", "num_iterations", "log_completions"),
}


def _resolve(cls):
    """A dataclass, or "module.Class" imported now (with a clear error when its package is not installed)."""
    if not isinstance(cls, str):
        return cls
    import importlib

    module, name = cls.rsplit(".", 1)
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(f"this job needs the {error.name!r} package: pip install 'scratchformers[align]'") \
            from None


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """HfArgumentParser's formatter, except that a flag whose default depends on the machine says so in its help
    instead of printing this machine's value (so help texts can be stored, see `write_help_cache`), and a flag
    without a default (None, an empty list) prints no "(default: None)"."""

    def _get_help_string(self, action):
        if getattr(action, "machine_default", False) or action.default is None or action.default == []:
            return action.help
        return super()._get_help_string(action)


# The defaults set from the machine (see build_parser), as their help says them.
MACHINE_DEFAULTS = {"use_cpu": "default: True on a machine without a GPU",
                    "bf16": "default: False on a CPU (TRL's True slows its steps down there), True with a GPU"}


def build_parser(command: str, show_all: bool = True) -> HfArgumentParser:
    """The parser of one job: its dataclasses' fields as flags, plus `--config`. With `show_all=False`, the help
    lists the job's own flags and the common training flags only (`--help-all` lists every one)."""
    description, dataclass_types, defaults = COMMANDS[command]
    dataclass_types = tuple(_resolve(cls) for cls in dataclass_types)
    parser = HfArgumentParser(dataclass_types, prog=f"scratchformers {command}", description=description,
                              formatter_class=_HelpFormatter)
    parser.add_argument("--config", default=None, help="YAML or JSON file of flags (command-line flags override it).")
    parser.add_argument("--help-all", action="help", help="Show every flag, all of TrainingArguments' included.")
    own = {f for cls in dataclass_types if not issubclass(cls, TrainingArguments) for f in cls.__dataclass_fields__}
    own |= set(JOB_TRAINING_FLAGS.get(command, ()))
    for action in parser._actions:
        if action.dest in REQUIRED.get(command, ()):
            action.help = f"(required) {action.help or ''}"
        elif not show_all and action.option_strings and action.dest not in own | set(COMMON_TRAINING_FLAGS) | {
            "config", "help", "help_all"
        }:
            action.help = argparse.SUPPRESS
    if not show_all:
        required = " ".join(f"--{name} ..." for name in REQUIRED.get(command, ()))
        parser.usage = f"scratchformers {command} {required} [flags] [--config FILE.yaml]".replace("  ", " ")
        if any(issubclass(cls, TrainingArguments) for cls in dataclass_types):
            parser.epilog = f"Common training flags shown; `scratchformers {command} --help-all` lists all of them."
    if defaults:
        import torch

        cpu = not torch.cuda.is_available()
        # On a machine without a GPU, use_cpu=True also makes torchrun/accelerate workers join one gloo DDP job.
        defaults = {**defaults, "use_cpu": cpu}
        machine = {"use_cpu"}
        if "bf16" in defaults and defaults["bf16"] is None:
            # TRL's configs switch bf16 autocast on wherever it is supported, CPUs included: on a CPU without bf16
            # matrix units that made a DPO step 9x slower than fp32 (benchmarks/README.md). Off on a CPU; --bf16 true
            defaults["bf16"] = not cpu
            machine.add("bf16")
        parser.set_defaults(**defaults)
        for action in parser._actions:
            if action.dest in machine and action.help is not argparse.SUPPRESS:
                action.help = f"{action.help or ''} ({MACHINE_DEFAULTS[action.dest]})".strip()
                action.machine_default = True
    return parser


def read_config_file(path: str, parser: argparse.ArgumentParser) -> dict:
    """Flags from a YAML/JSON file; unknown keys are an error naming the file and the key."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"config file not found: {file}")
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{file}:{error.lineno}: not valid JSON ({error.msg})") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"{file}:{mark.line + 1}" if mark is not None else str(file)
            raise ValueError(f"{where}: not valid YAML ({getattr(error, 'problem', None) or error})") from None
    data = data or {}
    if not isinstance(data, dict):
        raise ValueError(f"{file}: expected a mapping of flag names to values, got {type(data).__name__}")
    known = {action.dest for action in parser._actions}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{file}: unknown keys {unknown}; see `{parser.prog} --help` for the valid names")
    return data


def parse_command(command: str, argv: list[str]):
    """Parse a job's flags (after applying `--config`) into its dataclasses."""
    parser = build_parser(command, show_all="--help-all" in argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.config:
        parser.set_defaults(**read_config_file(known.config, parser))
    parsed = parser.parse_args_into_dataclasses(argv)
    return [obj for obj in parsed if not isinstance(obj, argparse.Namespace)]


def _needs_output_dir(training_args: TrainingArguments, command: str) -> None:
    if training_args.output_dir in (None, "", "trainer_output"):
        raise ValueError(f"{command} needs --output_dir (the folder for checkpoints, model and logs)")


def _train_tokenizer(args: TokenizerArguments) -> None:
    from .corpus import load_texts
    from .tokenization_scratch import compression_report, train_tokenizer
    from .training.common import TOKENIZER_OUTPUTS, check_output_dir

    out = Path(args.output_dir)
    check_output_dir(out, args.overwrite, outputs=TOKENIZER_OUTPUTS, what="a tokenizer")
    if not args.train_files:
        raise ValueError("train-tokenizer needs --train_files")
    texts = load_texts(args.train_files, args.text_column, args.split_by)
    tokenizer = train_tokenizer(
        texts,
        vocab_size=args.vocab_size,
        min_frequency=args.min_frequency,
        tokenizer_type=args.tokenizer_type,
    )
    tokenizer.save_pretrained(out)
    sample, size = [], 0
    for text in texts["text"]:
        sample.append(text)
        size += len(text)
        if size > 200_000:
            break
    print(compression_report(tokenizer, {"training text (first 200k chars)": sample}))
    print(f"tokenizer saved to {out} (load it with AutoTokenizer.from_pretrained({str(out)!r}))")


def _split_text(args: SplitTextArguments) -> None:
    from .training.data import split_text_file

    if not args.input_file or not args.output_dir:
        raise ValueError("split-text needs --input_file and --output_dir")
    train, validation = split_text_file(args.input_file, args.output_dir, args.validation_percentage, args.overwrite)
    print(f"wrote {train} and {validation}")


def _build_preferences(args: PreferenceBuildArguments) -> None:
    from .training.preferences import write_preference_pairs

    if not args.input_file or not args.output_file:
        raise ValueError("build-preferences needs --input_file (SFT rows) and --output_file (the pairs' JSONL)")
    if args.max_new_tokens < 1 or args.temperature <= 0:
        raise ValueError(f"--max_new_tokens must be >= 1 and --temperature > 0, got {args.max_new_tokens} and "
                         f"{args.temperature}")
    count, own = write_preference_pairs(args.input_file, args.output_file, args.rejected, args.seed, args.limit,
                                        args.overwrite, args.model_name_or_path, args.max_new_tokens, args.temperature)
    sampled = f" ({own} rejected answers are the model's own, {count - own} made by --rejected auto)" \
        if args.rejected == "sampled" else ""
    print(f"[build-preferences] {count} pairs written to {args.output_file}{sampled}")


def _generate(args: GenerateArguments) -> None:
    from transformers import TextStreamer, set_seed

    from .generation import generate_texts
    from .tokenization_scratch import load_tokenizer
    from .training.common import load_pretrained

    if not args.model_name_or_path:
        raise ValueError("generate needs --model_name_or_path (a saved model folder or a Hub repo id)")
    model = load_pretrained(args.model_name_or_path).eval()
    tokenizer = load_tokenizer(args.model_name_or_path)
    set_seed(args.seed)
    stream = args.stream and args.num_beams == 1 and args.num_return_sequences == 1
    streamer = TextStreamer(tokenizer, skip_prompt=args.chat, skip_special_tokens=True) if stream else None
    sampling = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p) if args.do_sample else {}
    texts = generate_texts(
        model, tokenizer, args.prompt, args.max_new_tokens, chat=args.chat, streamer=streamer,
        do_sample=args.do_sample, num_beams=args.num_beams, repetition_penalty=args.repetition_penalty,
        no_repeat_ngram_size=args.no_repeat_ngram_size, num_return_sequences=args.num_return_sequences, **sampling,
    )
    if streamer is None:
        prefix = "" if args.chat else args.prompt
        for i, text in enumerate(texts):
            print(f"--- sample {i + 1}" if len(texts) > 1 else "", prefix + text)


def run_command(command: str, parsed) -> object:
    if command == "split-text":
        return _split_text(*parsed)
    if command == "train-tokenizer":
        return _train_tokenizer(*parsed)
    if command == "generate":
        return _generate(*parsed)
    if command == "build-preferences":
        return _build_preferences(*parsed)
    if command == "demo":
        from .training.demo import run_demo

        return run_demo(*parsed)
    training_args = parsed[-1]
    _needs_output_dir(training_args, command)
    try:
        return _run_training_command(command, parsed)
    finally:
        _leave_process_group()


def _leave_process_group() -> None:
    """Destroy the torch.distributed group a training job joined (under `accelerate launch` / `torchrun`) before
    the interpreter exits: a gloo group left to finalisation can abort the process at exit (SIGABRT, "terminate
    called without an active exception", pytorch/pytorch#190489) after a run that succeeded."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


def _run_training_command(command: str, parsed) -> object:
    if command == "pretrain":
        from .training.pretrain import run_pretrain

        return run_pretrain(*parsed)
    if command == "sft":
        from .training.sft import run_sft

        return run_sft(*parsed)
    if command == "classify":
        from .training.classify import run_classify

        return run_classify(*parsed)
    if command == "dpo":
        from .training.dpo import run_dpo

        return run_dpo(*parsed)
    if command == "grpo":
        from .training.grpo import run_grpo

        return run_grpo(*parsed)
    raise ValueError(f"unknown command {command!r}")


def _run_reporting_errors(name: str, function, *args, **kwargs) -> int:
    """Run a command; a bad input becomes one line on stderr and exit code 2."""
    try:
        function(*args, **kwargs)
    except (FileNotFoundError, FileExistsError, ValueError, ConnectionError) as error:
        print(f"scratchformers {name}: error: {error}", file=sys.stderr)
        return 2
    except StrictDataclassError as error:  # a config value of the wrong type, e.g. hidden_size=wide
        print(f"scratchformers {name}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    return 0


def _export_onnx(args) -> int:
    def run():
        from .onnx_export import export_onnx

        out = export_onnx(args.model_dir, args.out_dir, overwrite=args.overwrite, quantize=not args.no_quantize)
        architectures = json.loads((out / "config.json").read_text(encoding="utf-8")).get("architectures") or [""]
        if architectures[0].endswith("ForSequenceClassification"):
            command = f'node js/encode.mjs {out} text-classification "a text to classify"'
        elif architectures[0].endswith("ForMaskedLM"):
            command = f'node js/encode.mjs {out} fill-mask "the cat sat on the [MASK] ."'
        else:
            command = f'node js/generate.mjs {out} "Once upon a time" --max-new-tokens 32'
        print(f"exported to {out} (onnx/model.onnx{'' if args.no_quantize else ', onnx/model_quantized.onnx'}); "
              f"run it with: {command}")

    return _run_reporting_errors("export onnx", run)


def _export_gguf(args) -> int:
    def run():
        from .gguf_export import export_gguf

        out = export_gguf(args.model_dir, args.out_file, dtype=args.dtype, overwrite=args.overwrite)
        print(f"exported to {out} ({args.dtype}); run it with llama.cpp, e.g. llama-cli -m {out} -p \"Once upon a time\"")

    return _run_reporting_errors("export gguf", run)


def _quantize(args) -> int:
    def run():
        from .quantization import quantize_model

        out = quantize_model(args.model_dir, args.out_dir, method=args.method, overwrite=args.overwrite)
        print(f"quantized model saved to {out}; load it with AutoModelForCausalLM.from_pretrained({str(out)!r})")

    return _run_reporting_errors("quantize", run)


def register_export_commands(subparsers) -> None:
    """`scratchformers export onnx|gguf ...` and `scratchformers quantize ...`: smaller and portable models."""
    export = subparsers.add_parser("export", help="export a trained model to run outside Python (ONNX, GGUF)")
    formats = export.add_subparsers(dest="format", required=True, metavar="FORMAT")
    onnx = formats.add_parser(
        "onnx", help="ONNX for transformers.js (Node.js, the browser) and onnxruntime: decoders with KV cache, BERT",
        description="Write OUT_DIR with config.json, generation_config.json, the tokenizer and onnx/model.onnx "
                    "(+ onnx/model_quantized.onnx, int8): the folder layout @huggingface/transformers loads.")
    onnx.add_argument("model_dir", help="a trained model folder (scratchformers GPT / LLaMA2 / BERT, or native GPT-2 / "
                      "Llama / BERT)")
    onnx.add_argument("out_dir", help="the folder to write (refused if it exists, unless --overwrite)")
    onnx.add_argument("--overwrite", action="store_true", help="replace OUT_DIR when it holds an earlier export")
    onnx.add_argument("--no-quantize", "--no_quantize", action="store_true", help="skip the int8 model_quantized.onnx")
    onnx.set_defaults(func=_export_onnx)
    gguf = formats.add_parser(
        "gguf", help="one GGUF file for llama.cpp (and Ollama): weights, hyperparameters, tokenizer, chat template",
        description="LLaMA2 becomes GGUF architecture llama, GPT becomes gpt2; the tokenizer (byte-level BPE merges, "
                    "special tokens, chat template) goes in the file's metadata.")
    gguf.add_argument("model_dir", help="a trained model folder (scratchformers GPT / LLaMA2, or native GPT-2 / Llama)")
    gguf.add_argument("out_file", help="the .gguf file to write (refused if it exists, unless --overwrite)")
    gguf.add_argument("--dtype", default="f16", help="f16 (default) or q8_0 (8-bit blocks, about half the size)")
    gguf.add_argument("--overwrite", action="store_true", help="replace OUT_FILE")
    gguf.set_defaults(func=_export_gguf)

    quantize = subparsers.add_parser(
        "quantize", help="int8 weights for CPU inference (torchao); the output still runs generate()",
        description="Write OUT_DIR: the model with int8 weights and dynamically quantized int8 activations in every "
                    "linear layer of the blocks (torchao through transformers' TorchAoConfig), with its tokenizer.")
    quantize.add_argument("model_dir", help="a trained scratchformers model folder")
    quantize.add_argument("out_dir", help="the folder to write (refused if it exists, unless --overwrite)")
    quantize.add_argument("--method", default="int8-dynamic", help="int8-dynamic (the only method so far)")
    quantize.add_argument("--overwrite", action="store_true", help="replace OUT_DIR when it holds an earlier output")
    quantize.set_defaults(func=_quantize)


def _serve(args) -> int:
    def run():
        try:
            import uvicorn
        except ModuleNotFoundError:
            raise ValueError("serve needs FastAPI and uvicorn: pip install 'scratchformers[serve]'") from None
        from .serving import Engine, build_app

        engine = Engine(args.model, served_model_name=args.served_model_name, device=args.device, dtype=args.dtype,
                        max_concurrent_requests=args.max_concurrent_requests, max_batch_tokens=args.max_batch_tokens)
        print(f"serving {engine.name!r} on http://{args.host}:{args.port}/v1 (OpenAI API; Ctrl+C stops)", flush=True)
        try:
            uvicorn.run(build_app(engine, api_key=args.api_key), host=args.host, port=args.port,
                        log_level=args.log_level)
        finally:
            engine.stop()

    return _run_reporting_errors("serve", run)


def register_serve_command(subparsers) -> None:
    """`scratchformers serve MODEL`: the OpenAI API in front of a trained model."""
    serve = subparsers.add_parser(
        "serve", help="serve a trained model with the OpenAI API (chat and completions, streaming, batching)",
        description="Serve MODEL at http://HOST:PORT/v1 with OpenAI's chat/completions, completions and models "
                    "routes; concurrent requests share forward passes (transformers' continuous batching). Query it "
                    "with curl or the openai client (base_url=http://HOST:PORT/v1, model=the served name).")
    serve.add_argument("model", help="a trained model folder or a Hub repo id (causal LM: GPT, LLaMA2, GPT-2, Llama)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--served-model-name", "--served_model_name", default=None,
                       help="the model name clients send (default: MODEL as given)")
    serve.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda if there is one)")
    serve.add_argument("--dtype", default="auto", help="auto (as saved), float32, bfloat16 or float16")
    serve.add_argument("--max-concurrent-requests", "--max_concurrent_requests", type=int, default=32,
                       help="requests generated together (the KV cache holds this many full contexts; more wait)")
    serve.add_argument("--max-batch-tokens", "--max_batch_tokens", type=int, default=None,
                       help="tokens per forward pass of the batch (default: the context, from 512 to 2048)")
    serve.add_argument("--api-key", "--api_key", default=os.environ.get("SCRATCHFORMERS_API_KEY"),
                       help="require this key from clients (Authorization: Bearer KEY); default: "
                            "$SCRATCHFORMERS_API_KEY, or none")
    serve.add_argument("--log-level", "--log_level", default="info", help="uvicorn's log level (info, warning, ...)")
    serve.set_defaults(func=_serve)


def _fetch_data(args) -> int:
    def run():
        from .training.public_data import DATASETS, fetch_data

        written, kept = fetch_data(args.names, args.output_dir, args.base_url, args.overwrite)
        for path in written:
            print(f"wrote {path}")
        for path in kept:
            print(f"kept {path} (there already; --overwrite downloads it again)")
        for name in dict.fromkeys(args.names):
            print(f"{name}: {DATASETS[name].repo} at {DATASETS[name].commit[:12]}; licence: {DATASETS[name].licence}")

    return _run_reporting_errors("fetch-data", run)


def register_data_command(subparsers) -> None:
    """`scratchformers fetch-data NAME ...`: the public data sets of the guide, in the formats the jobs read."""
    from .training.public_data import DATASETS

    fetch = subparsers.add_parser(
        "fetch-data", help="download the guide's public data sets (GSM8K, SST-2, ChnSentiCorp, 红楼梦) as JSONL/CSV/txt",
        description="Download from pinned commits of public GitHub repositories and convert: "
                    + "; ".join(f"{name}: {d.about}" for name, d in DATASETS.items()) + ".")
    fetch.add_argument("names", nargs="+", choices=list(DATASETS), metavar="NAME",
                       help=f"one or more of: {', '.join(DATASETS)}")
    fetch.add_argument("--output_dir", "--output-dir", default="data", help="folder to write to (default: data)")
    fetch.add_argument("--base_url", "--base-url", default=None,
                       help="a mirror of https://raw.githubusercontent.com (default: $SCRATCHFORMERS_DATA_BASE_URL, "
                            "else GitHub)")
    fetch.add_argument("--overwrite", action="store_true",
                       help="download again and replace the files of a set that is there (default: keep them)")
    fetch.set_defaults(func=_fetch_data)


def build_main_parser() -> argparse.ArgumentParser:
    """The top-level parser: lists the jobs; each job parses its own flags (see `build_parser`)."""
    parser = argparse.ArgumentParser(
        prog="scratchformers", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train, align, run and share GPT / LLaMA2 / BERT models written from scratch (从零实现的语言模型).",
        epilog="`scratchformers COMMAND --help` lists a command's flags; jobs also read them from --config FILE.yaml.\n"
               "Start with `scratchformers demo` (a few CPU minutes, no download).")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (description, _, _) in COMMANDS.items():
        subparsers.add_parser(name, help=description, add_help=False)
    register_data_command(subparsers)
    register_export_commands(subparsers)
    register_serve_command(subparsers)
    try:  # Hub jobs (push, pull, ...) live in hub_scripts; a missing module is fine, a broken one is not hidden.
        from hub_scripts import cli as hub_cli
    except ModuleNotFoundError as error:
        if error.name not in ("hub_scripts", "hub_scripts.cli"):
            raise
    else:
        hub_cli.register(subparsers)
    return parser


def help_texts() -> dict[str, str]:
    """Every help text `scratchformers ... --help` prints: "" (the command list), each job's short help, and each
    subcommand of the other commands ("export onnx"), formatted 100 columns wide."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        main_parser = build_main_parser()
        texts = {"": main_parser.format_help()}
        for command in COMMANDS:
            try:
                texts[command] = build_parser(command, show_all=False).format_help()
            except ModuleNotFoundError:  # a job whose extra is not installed (trl): its --help says so each time
                pass
        pending = [("", main_parser)]
        while pending:
            prefix, parser = pending.pop()
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for name, sub in action.choices.items():
                        path = f"{prefix} {name}".strip()
                        if path not in COMMANDS:
                            texts[path] = sub.format_help()
                            pending.append((path, sub))
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return texts


def write_help_cache(path, key: str | None = None) -> Path:
    """Store `help_texts()` under `key` (default: this installation's) for the `scratchformers` launcher
    (`scratchformers_cli`), which prints them without importing torch."""
    from scratchformers_cli import help_key, help_versions

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    stored = {"key": key or help_key(), "made_with": help_versions(), "texts": help_texts()}
    temporary.write_text(json.dumps(stored, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    temporary.replace(path)  # two processes writing at once leave one whole file
    return path


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--write-help-cache"]:  # after changing the command line: the help texts shipped with the package
        print(f"wrote {write_help_cache(Path(__file__).with_name('cli_help.json'))}")
        return 0
    parser = build_main_parser()
    if not argv:
        print(parser.format_help(), end="")
        return 0
    if not argv or argv[0] not in COMMANDS:
        args = parser.parse_args(argv)
        return args.func(args) or 0
    command = argv[0]
    return _run_reporting_errors(command, lambda: run_command(command, parse_command(command, argv[1:])))


if __name__ == "__main__":
    sys.exit(main())

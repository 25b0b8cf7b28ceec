"""The `scratchformers` command line: train-tokenizer, pretrain, sft, classify, generate, demo.

Each job's flags come from dataclasses through `HfArgumentParser`, so every `TrainingArguments` field is a flag
(`--learning_rate`, `--bf16`, `--activation_checkpointing`, ...). `--config FILE.yaml|json` reads the same keys
from a file; flags on the command line override it. `scratchformers <job> --help` lists everything.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from transformers import HfArgumentParser, TrainingArguments

from .training.arguments import (
    ClassifyArguments,
    DemoArguments,
    GenerateArguments,
    ModelArguments,
    PretrainDataArguments,
    SFTArguments,
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
    "generate": ("Sample text from a saved model, streaming tokens (生成文本).", (GenerateArguments,), {}),
    "demo": ("The whole path in a few CPU minutes, no download (一键演示).", (DemoArguments,), {}),
}


def build_parser(command: str) -> HfArgumentParser:
    """The parser of one job: its dataclasses' fields as flags, plus `--config`."""
    description, dataclass_types, defaults = COMMANDS[command]
    parser = HfArgumentParser(dataclass_types, prog=f"scratchformers {command}", description=description)
    parser.add_argument("--config", default=None, help="YAML or JSON file of flags (command-line flags override it).")
    if defaults:
        import torch

        # On a machine without a GPU, use_cpu=True also makes torchrun/accelerate workers join one gloo DDP job.
        parser.set_defaults(**defaults, use_cpu=not torch.cuda.is_available())
    return parser


def read_config_file(path: str, parser: argparse.ArgumentParser) -> dict:
    """Flags from a YAML/JSON file; unknown keys are an error naming the file and the key."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"config file not found: {file}")
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
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
    parser = build_parser(command)
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
    from .tokenization_scratch import compression_report, iter_texts, train_tokenizer

    out = Path(args.output_dir)
    if (out / "tokenizer.json").exists() and not args.overwrite:
        raise FileExistsError(f"{out} already holds a tokenizer; pass --overwrite or choose another --output_dir")
    if not args.train_files:
        raise ValueError("train-tokenizer needs --train_files")
    tokenizer = train_tokenizer(
        [Path(f) for f in args.train_files], vocab_size=args.vocab_size, min_frequency=args.min_frequency, text_column=args.text_column
    )
    tokenizer.save_pretrained(out)
    sample, size = [], 0
    for text in iter_texts(args.train_files, args.text_column):
        sample.append(text)
        size += len(text)
        if size > 200_000:
            break
    print(compression_report(tokenizer, {"training text (first 200k chars)": sample}))
    print(f"tokenizer saved to {out} (load it with AutoTokenizer.from_pretrained({str(out)!r}))")


def _generate(args: GenerateArguments) -> None:
    import torch
    from transformers import AutoModelForCausalLM, TextStreamer, set_seed

    from .tokenization_scratch import load_tokenizer

    if not args.model_name_or_path:
        raise ValueError("generate needs --model_name_or_path (a saved model folder)")
    if not Path(args.model_name_or_path, "config.json").is_file():
        raise FileNotFoundError(f"no model in {args.model_name_or_path}: config.json is missing")
    tokenizer = load_tokenizer(args.model_name_or_path)
    model = AutoModelForCausalLM.from_pretrained(args.model_name_or_path).eval()
    set_seed(args.seed)
    eos = [tokenizer.eos_token_id]
    if args.chat:
        encoded = tokenizer.apply_chat_template(
            [{"role": "user", "content": args.prompt}], add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )
        input_ids = encoded["input_ids"]  # (1, T)
        eos.append(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    else:
        ids = tokenizer(args.prompt, add_special_tokens=False)["input_ids"]
        input_ids = torch.tensor([[tokenizer.bos_token_id] + ids])  # (1, T)
    stream = args.stream and args.num_beams == 1 and args.num_return_sequences == 1
    streamer = TextStreamer(tokenizer, skip_prompt=args.chat, skip_special_tokens=True) if stream else None
    sampling = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p) if args.do_sample else {}
    with torch.no_grad():
        out = model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=args.max_new_tokens,
            do_sample=args.do_sample,
            num_beams=args.num_beams,
            repetition_penalty=args.repetition_penalty,
            no_repeat_ngram_size=args.no_repeat_ngram_size,
            num_return_sequences=args.num_return_sequences,
            eos_token_id=eos,
            pad_token_id=tokenizer.pad_token_id,
            streamer=streamer,
            **sampling,
        )  # (num_return_sequences, T + new)
    if streamer is None:
        start = input_ids.shape[1] if args.chat else 1
        for i, sequence in enumerate(out):
            print(f"--- sample {i + 1}" if len(out) > 1 else "", tokenizer.decode(sequence[start:], skip_special_tokens=True))


def run_command(command: str, parsed) -> object:
    if command == "train-tokenizer":
        return _train_tokenizer(*parsed)
    if command == "generate":
        return _generate(*parsed)
    if command == "demo":
        from .training.demo import run_demo

        return run_demo(*parsed)
    training_args = parsed[-1]
    _needs_output_dir(training_args, command)
    if command == "pretrain":
        from .training.pretrain import run_pretrain

        return run_pretrain(*parsed)
    if command == "sft":
        from .training.sft import run_sft

        return run_sft(*parsed)
    if command == "classify":
        from .training.classify import run_classify

        return run_classify(*parsed)
    raise ValueError(f"unknown command {command!r}")


def build_main_parser() -> argparse.ArgumentParser:
    """The top-level parser: lists the jobs; each job parses its own flags (see `build_parser`)."""
    parser = argparse.ArgumentParser(prog="scratchformers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (description, _, _) in COMMANDS.items():
        subparsers.add_parser(name, help=description, add_help=False)
    try:  # Hub jobs (push, pull, ...) live in hub_scripts; a missing module is fine, a broken one is not hidden.
        from hub_scripts import cli as hub_cli
    except ModuleNotFoundError as error:
        if error.name not in ("hub_scripts", "hub_scripts.cli"):
            raise
    else:
        hub_cli.register(subparsers)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_main_parser()
    if not argv or argv[0] not in COMMANDS:
        args = parser.parse_args(argv)
        return args.func(args) or 0
    command = argv[0]
    try:
        parsed = parse_command(command, argv[1:])
        run_command(command, parsed)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"scratchformers {command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training jobs on the Hugging Face `Trainer`: pretraining, SFT, sequence classification, and the demo.

Each job is a function taking argument dataclasses (the CLI builds them with `HfArgumentParser`):
`run_pretrain(ModelArguments, PretrainDataArguments, TrainingArguments)`, `run_sft(SFTArguments, TrainingArguments)`,
`run_classify(ClassifyArguments, TrainingArguments)`, `run_demo(DemoArguments)`.
"""

from .arguments import (
    ClassifyArguments,
    DemoArguments,
    GenerateArguments,
    ModelArguments,
    PretrainDataArguments,
    SFTArguments,
    TokenizerArguments,
)
from .classify import run_classify
from .common import ScratchTrainer, plot_loss_curve
from .data import build_sft_dataset, load_classification_csv, load_text_dataset, pack_dataset, read_sft_jsonl
from .demo import run_demo
from .pretrain import run_pretrain
from .sft import chat, run_sft

__all__ = [
    "ClassifyArguments",
    "DemoArguments",
    "GenerateArguments",
    "ModelArguments",
    "PretrainDataArguments",
    "SFTArguments",
    "TokenizerArguments",
    "ScratchTrainer",
    "build_sft_dataset",
    "chat",
    "load_classification_csv",
    "load_text_dataset",
    "pack_dataset",
    "plot_loss_curve",
    "read_sft_jsonl",
    "run_classify",
    "run_demo",
    "run_pretrain",
    "run_sft",
]

"""Presets of every family by one name, parameter counts that never allocate weights, and output folders that are
written whole or not at all."""

import contextlib
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import PretrainedConfig

from .configuration_bert import BERT_PRESETS, BertConfig
from .configuration_gpt import GPT_PRESETS, GPTConfig
from .configuration_llama2 import LLAMA2_PRESETS, Llama2Config
from .families import family_of

PRESETS = {**{name: GPTConfig for name in GPT_PRESETS}, **{name: Llama2Config for name in LLAMA2_PRESETS},
           **{name: BertConfig for name in BERT_PRESETS}}


def config_from_preset(name: str, **overrides) -> PretrainedConfig:
    """The configuration of any preset of any family, e.g. `config_from_preset("llama2-7b")`, `("bert-mini")`.

    按预设名称返回任一模型族的配置，关键字参数覆盖字段。
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; known presets: {', '.join(PRESETS)}.")
    return PRESETS[name].from_preset(name, **overrides)


def count_parameters(config: str | PretrainedConfig, exclude_embeddings: bool = False) -> int:
    """Parameters of the pretraining model (causal LM; masked LM for BERT) of a preset name or config, counted on
    the meta device (no memory).

    Tied weights count once. `exclude_embeddings=True` leaves out token and position embeddings.
    在 meta 设备上构建模型并统计参数量（不分配内存，70B 也在一秒内完成）。
    """
    if isinstance(config, str):
        config = config_from_preset(config)
    try:
        model_class = family_of(config).pretraining_model
    except ValueError:
        raise ValueError(f"count_parameters expects the config of a registered family, got {type(config).__name__}.") from None
    with torch.device("meta"):
        model = model_class(config)
    return model.num_parameters(exclude_embeddings=exclude_embeddings)


def check_output_folder(output: Path, overwrite: bool, sources=()) -> Path:
    """Refuse to replace a non-empty folder without `overwrite`, and never one that holds an input."""
    output = Path(output).resolve()
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"{output} exists and is not a folder.")
    for source in sources:
        source = Path(source).resolve()
        if output == source or output in source.parents:
            raise ValueError(f"The output folder {output} would replace the input {source}; choose another folder.")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise FileExistsError(f"{output} already exists and is not empty; pass --overwrite (overwrite=True) "
                              f"to replace it.")
    return output


@contextlib.contextmanager
def atomic_output_folder(output: Path, overwrite: bool = False, sources=()):
    """Yield a temporary sibling folder; on success it replaces `output`, on error it vanishes.

    Nothing half-written is ever left at `output`.
    先写入临时目录，成功后再替换目标目录；出错时不留下半成品。
    """
    output = check_output_folder(output, overwrite, sources)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        yield staging
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)

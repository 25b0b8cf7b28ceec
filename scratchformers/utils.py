"""Presets of both families by one name, and parameter counts that never allocate weights."""

import torch
from transformers import PretrainedConfig

from .configuration_gpt import GPT_PRESETS, GPTConfig
from .configuration_llama2 import LLAMA2_PRESETS, Llama2Config
from .families import family_of

PRESETS = {**{name: GPTConfig for name in GPT_PRESETS}, **{name: Llama2Config for name in LLAMA2_PRESETS}}


def config_from_preset(name: str, **overrides) -> PretrainedConfig:
    """The configuration of any preset of either family, e.g. `config_from_preset("llama2-7b")`.

    按预设名称返回任一模型族的配置，关键字参数覆盖字段。
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; known presets: {', '.join(PRESETS)}.")
    return PRESETS[name].from_preset(name, **overrides)


def count_parameters(config: str | PretrainedConfig, exclude_embeddings: bool = False) -> int:
    """Parameters of the causal-LM model of a preset name or config, counted on the meta device (no memory).

    Tied weights count once. `exclude_embeddings=True` leaves out token and position embeddings.
    在 meta 设备上构建模型并统计参数量（不分配内存，70B 也在一秒内完成）。
    """
    if isinstance(config, str):
        config = config_from_preset(config)
    try:
        model_class = family_of(config).causal_lm
    except ValueError:
        raise ValueError(f"count_parameters expects the config of a registered family, got {type(config).__name__}.") from None
    with torch.device("meta"):
        model = model_class(config)
    return model.num_parameters(exclude_embeddings=exclude_embeddings)

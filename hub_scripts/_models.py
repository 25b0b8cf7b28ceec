"""Build a model from a folder's tensors with a strict load: every missing, unknown or mis-shaped key is an error."""

from pathlib import Path

import torch
from transformers import GenerationConfig

from scratchformers.conversion import load_state_dict_strict

from ._io import floating_dtype, read_state_dict


def build_strict(model_class, config, state_dict: dict) -> torch.nn.Module:
    """`model_class(config)` in the checkpoint's dtype, holding exactly `state_dict` (no partial loads)."""
    model = model_class(config).to(floating_dtype(state_dict))
    load_state_dict_strict(model, state_dict)
    return model.eval()


def load_folder_strict(model_class, config, folder: Path, rename=None) -> torch.nn.Module:
    """A model from `folder`'s weight files; `rename(state_dict)` may adapt key names first."""
    state_dict = read_state_dict(folder)
    if rename is not None:
        state_dict = rename(state_dict)
    try:
        return build_strict(model_class, config, state_dict)
    except ValueError as error:
        raise ValueError(f"{folder}: {error}") from None


def carry_generation_config(source: Path, model) -> None:
    """Keep the source folder's generation settings (if it has any) on the converted model."""
    if (Path(source) / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(source)

"""Folder helpers shared by the converters and the push tools: read weights, copy tokenizers, write outputs safely."""

import json
import math
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

# the weight files transformers writes, in the order it prefers them
WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
                "pytorch_model.bin")
# every file a tokenizer may be made of (slow or fast, with or without a chat template)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model", "chat_template.jinja",
                   "chat_template.json")


def read_json(path: Path) -> dict:
    """A JSON file as a dict; the error names the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}, line {error.lineno}: invalid JSON ({error.msg}).") from None


def read_config(folder: Path, expected_model_types=None) -> dict:
    """`folder/config.json`, optionally checking its `model_type`."""
    config = read_json(Path(folder) / "config.json")
    if expected_model_types and config.get("model_type") not in expected_model_types:
        raise ValueError(f"{Path(folder) / 'config.json'} has model_type={config.get('model_type')!r}; "
                         f"expected one of {', '.join(expected_model_types)}.")
    return config


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a `save_pretrained` folder (all shards when sharded)."""
    folder = Path(folder)
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            if name.endswith(".index.json"):
                shards = sorted(set(read_json(path)["weight_map"].values()))
                missing = [shard for shard in shards if not (folder / shard).is_file()]
                if missing:
                    raise FileNotFoundError(f"{path} lists shards that do not exist: {', '.join(missing)}.")
                return [folder / shard for shard in shards]
            return [path]
    raise FileNotFoundError(f"{folder} holds no model weights: expected one of {', '.join(WEIGHT_FILES)}.")


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a `save_pretrained` folder (safetensors, or `.bin` through `torch.load(weights_only=True)`)."""
    state_dict = {}
    for path in weight_files(folder):
        if path.suffix == ".safetensors":
            state_dict.update(load_file(path))
        else:
            state_dict.update(torch.load(path, map_location="cpu", weights_only=True))
    return state_dict


def safetensors_parameter_count(folder: Path) -> int:
    """Number of stored parameters, read from the safetensors headers without loading any tensor."""
    total = 0
    for path in weight_files(folder):
        with safe_open(path, framework="pt") as handle:
            for key in handle.keys():
                total += math.prod(handle.get_slice(key).get_shape())
    return total


def floating_dtype(state_dict: dict) -> torch.dtype:
    """The dtype the checkpoint stores its floating-point tensors in."""
    for tensor in state_dict.values():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def has_tokenizer(folder: Path) -> bool:
    folder = Path(folder)
    return any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "vocab.json"))


def copy_tokenizer_files(source: Path, target: Path) -> list[str]:
    """Copy every tokenizer file of `source` (and its `tokenization_*.py` remote code) into `target`."""
    source, target = Path(source), Path(target)
    copied = []
    for path in sorted(source.iterdir()):
        if path.is_file() and (path.name in TOKENIZER_FILES or
                               (path.name.startswith("tokenization_") and path.suffix == ".py")):
            shutil.copy2(path, target / path.name)
            copied.append(path.name)
    templates = source / "additional_chat_templates"
    if templates.is_dir():
        shutil.copytree(templates, target / templates.name, dirs_exist_ok=True)
        copied.append(templates.name + "/")
    return copied


def list_files(folder: Path) -> list[tuple[str, int]]:
    """(relative path, size in bytes) of every file under `folder`, sorted."""
    folder = Path(folder)
    return sorted((path.relative_to(folder).as_posix(), path.stat().st_size)
                  for path in folder.rglob("*") if path.is_file())


def format_listing(folder: Path) -> str:
    rows = list_files(folder)
    width = max((len(name) for name, _ in rows), default=0)
    lines = [f"  {name:<{width}}  {_human(size):>10}" for name, size in rows]
    lines.append(f"  {len(rows)} files, {_human(sum(size for _, size in rows))} in {Path(folder)}")
    return "\n".join(lines)


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024

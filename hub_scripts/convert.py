"""One entry point for every conversion: the direction follows from what the source folder holds."""

from pathlib import Path

from ._io import read_config
from .convert_gpt2 import gpt2_folder_to_gpt, gpt_folder_to_gpt2
from .convert_llama import llama2_folder_to_llama, llama_folder_to_llama2
from .convert_meta_llama import meta_llama_to_llama2

# source format -> (what it becomes, converter)
CONVERSIONS = {
    "gpt2": ("scratch_gpt", gpt2_folder_to_gpt),
    "scratch_gpt": ("gpt2", gpt_folder_to_gpt2),
    "llama": ("scratch_llama2", llama_folder_to_llama2),
    "scratch_llama2": ("llama", llama2_folder_to_llama),
    "meta_llama": ("scratch_llama2", meta_llama_to_llama2),
}


def detect_format(source) -> str:
    """`meta_llama` for Meta's layout (params.json), else the `model_type` of config.json."""
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a folder.")
    if (source / "params.json").is_file() and not (source / "config.json").is_file():
        return "meta_llama"
    model_type = read_config(source).get("model_type")
    if model_type not in CONVERSIONS:
        raise ValueError(f"{source / 'config.json'} has model_type={model_type!r}; this tool converts "
                         f"{', '.join(k for k in CONVERSIONS if k != 'meta_llama')} folders and Meta LLaMA-2 "
                         f"folders (params.json).")
    return model_type


def convert_folder(source, output, overwrite: bool = False, max_position_embeddings: int = 4096) -> tuple[str, str]:
    """Convert `source` into `output` in the only direction that makes sense for it; returns (from, to).

    自动识别源目录格式并转换：原生 GPT-2 ↔ GPT，原生 Llama ↔ LLaMA2，Meta LLaMA-2 → LLaMA2。
    """
    source_format = detect_format(source)
    target_format, converter = CONVERSIONS[source_format]
    if source_format == "meta_llama":
        for note in converter(source, output, overwrite, max_position_embeddings=max_position_embeddings):
            print(f"note: {note}")
    else:
        converter(source, output, overwrite)
    return source_format, target_format

"""One entry point for every conversion: the direction follows from what the source folder holds.

A folder of a registered family (`scratchformers.families`) becomes its native transformers counterpart, a native
folder of a type some family converts from becomes that family's, and Meta's LLaMA-2 layout becomes LLaMA2.
"""

from pathlib import Path

from scratchformers.utils import atomic_output_folder

from ._io import copy_tokenizer_files, read_config
from ._models import carry_generation_config, load_folder_strict


def _registry():
    import scratchformers

    return scratchformers.FAMILIES, scratchformers.families.family_of_native


def native_folder_to_ours(source, output, overwrite: bool = False, native_model_type: str | None = None) -> Path:
    """Convert a transformers-native folder (GPT-2, Llama, ...) into the folder of the family that converts from it
    (weights, config, remote code, tokenizer, generation settings). 原生 transformers 目录 -> scratchformers 目录。"""
    source = Path(source)
    families, family_of_native = _registry()
    natives = [native_model_type] if native_model_type else [f.native_model_type for f in families.values()]
    config = read_config(source, natives)
    family = family_of_native(config["model_type"])
    native = load_folder_strict(family.native_model, family.native_config_class.from_pretrained(source), source,
                                rename=family.native_keys)
    model = family.from_native(native)
    carry_generation_config(source, model)
    with atomic_output_folder(output, overwrite, sources=[source]) as staging:
        model.save_pretrained(staging)
        copy_tokenizer_files(source, staging)
    return Path(output)


def ours_folder_to_native(source, output, overwrite: bool = False, model_type: str | None = None) -> Path:
    """Convert a scratchformers folder into its native transformers counterpart's folder (no remote code needed).
    scratchformers 目录 -> 原生 transformers 目录。"""
    source = Path(source)
    families, _ = _registry()
    config = read_config(source, [model_type] if model_type else list(families))
    family = families[config["model_type"]]
    model = load_folder_strict(family.pretraining_model, family.config_class.from_pretrained(source), source)
    native = family.to_native(model)
    carry_generation_config(source, native)
    with atomic_output_folder(output, overwrite, sources=[source]) as staging:
        native.save_pretrained(staging)
        copy_tokenizer_files(source, staging)
    return Path(output)


def detect_format(source) -> str:
    """`meta_llama` for Meta's layout (params.json), else the `model_type` of config.json."""
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a folder.")
    if (source / "params.json").is_file() and not (source / "config.json").is_file():
        return "meta_llama"
    families, family_of_native = _registry()
    model_type = read_config(source).get("model_type")
    known = list(families) + [f.native_model_type for f in families.values()]
    if model_type not in known:
        raise ValueError(f"{source / 'config.json'} has model_type={model_type!r}; this tool converts "
                         f"{', '.join(known)} folders and Meta LLaMA-2 folders (params.json).")
    return model_type


def convert_folder(source, output, overwrite: bool = False, max_position_embeddings: int = 4096) -> tuple[str, str]:
    """Convert `source` into `output` in the only direction that makes sense for it; returns (from, to).

    自动识别源目录格式并转换：原生 GPT-2 ↔ GPT，原生 Llama ↔ LLaMA2，Meta LLaMA-2 → LLaMA2。
    """
    source_format = detect_format(source)
    families, family_of_native = _registry()
    if source_format == "meta_llama":
        from .convert_meta_llama import meta_llama_to_llama2

        for note in meta_llama_to_llama2(source, output, overwrite, max_position_embeddings=max_position_embeddings):
            print(f"note: {note}")
        return source_format, "scratch_llama2"
    if source_format in families:
        ours_folder_to_native(source, output, overwrite)
        return source_format, families[source_format].native_model_type
    native_folder_to_ours(source, output, overwrite)
    return source_format, family_of_native(source_format).model_type

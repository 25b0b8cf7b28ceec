"""Convert between transformers' native GPT-2 folders (`GPT2LMHeadModel`, Conv1D weights) and scratchformers' GPT.

The tensor mapping itself lives in `scratchformers.conversion`; this module adds the folders around it:
strict loading from disk, the tokenizer and generation settings carried over, and outputs that never
replace an existing folder silently.

    python -m hub_scripts convert path/to/gpt2 path/to/scratch-gpt
"""

from pathlib import Path

from transformers import GPT2Config, GPT2LMHeadModel

from scratchformers import GPTConfig, GPTForCausalLM
from scratchformers.conversion import _GPT2_IGNORED, gpt_from_gpt2, gpt_to_gpt2

from ._io import atomic_output_folder, copy_tokenizer_files, read_config
from ._models import carry_generation_config, load_folder_strict


def _native_keys(state_dict: dict) -> dict:
    """Drop old causal-mask buffers, and add the `transformer.` prefix that checkpoints saved from `GPT2Model`
    (e.g. the original `gpt2` upload) lack."""
    state_dict = {key: value for key, value in state_dict.items() if not _GPT2_IGNORED.search(key)}
    if any(key.startswith("transformer.") for key in state_dict):
        return state_dict
    return {(key if key.startswith("lm_head.") else f"transformer.{key}"): value for key, value in state_dict.items()}


def gpt2_folder_to_gpt(source, output, overwrite: bool = False) -> Path:
    """Convert a native GPT-2 folder into a scratchformers GPT folder (weights, config, remote code, tokenizer).

    把 transformers 原生 GPT-2 目录转换为 scratchformers GPT 目录（含分词器与远程代码）。
    """
    source = Path(source)
    read_config(source, ("gpt2",))
    native = load_folder_strict(GPT2LMHeadModel, GPT2Config.from_pretrained(source), source,
                                rename=_native_keys)
    model = gpt_from_gpt2(native)
    carry_generation_config(source, model)
    with atomic_output_folder(output, overwrite, sources=[source]) as staging:
        model.save_pretrained(staging)
        copy_tokenizer_files(source, staging)
    return Path(output)


def gpt_folder_to_gpt2(source, output, overwrite: bool = False) -> Path:
    """Convert a scratchformers GPT folder into a native `GPT2LMHeadModel` folder (no remote code needed).

    把 scratchformers GPT 目录转换回 transformers 原生 GPT-2 目录。
    """
    source = Path(source)
    read_config(source, (GPTConfig.model_type,))
    model = load_folder_strict(GPTForCausalLM, GPTConfig.from_pretrained(source), source)
    native = gpt_to_gpt2(model)
    carry_generation_config(source, native)
    with atomic_output_folder(output, overwrite, sources=[source]) as staging:
        native.save_pretrained(staging)
        copy_tokenizer_files(source, staging)
    return Path(output)

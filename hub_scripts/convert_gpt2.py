"""Convert between transformers' native GPT-2 folders (`GPT2LMHeadModel`, Conv1D weights) and scratchformers' GPT.

The tensor mapping lives in `scratchformers.conversion`; the folder handling (strict loading, tokenizer and generation
settings carried over, outputs that never replace a folder silently) in `hub_scripts.convert`.

    python -m hub_scripts convert path/to/gpt2 path/to/scratch-gpt
"""

from .convert import native_folder_to_ours, ours_folder_to_native


def gpt2_folder_to_gpt(source, output, overwrite: bool = False):
    """Convert a native GPT-2 folder into a scratchformers GPT folder. 原生 GPT-2 目录 -> scratchformers GPT 目录。"""
    return native_folder_to_ours(source, output, overwrite, native_model_type="gpt2")


def gpt_folder_to_gpt2(source, output, overwrite: bool = False):
    """Convert a scratchformers GPT folder into a native `GPT2LMHeadModel` folder. GPT 目录 -> 原生 GPT-2 目录。"""
    return ours_folder_to_native(source, output, overwrite, model_type="scratch_gpt")

"""Convert between transformers' native Llama folders (`LlamaForCausalLM`) and scratchformers' LLaMA2.

Parameter names and layouts are identical (both use the rotate-half RoPE layout), so the work is in the config mapping
(`scratchformers.conversion`) and the folder handling (`hub_scripts.convert`).

    python -m hub_scripts convert path/to/llama path/to/scratch-llama2
"""

from .convert import native_folder_to_ours, ours_folder_to_native


def llama_folder_to_llama2(source, output, overwrite: bool = False):
    """Convert a native Llama folder into a scratchformers LLaMA2 folder. 原生 Llama 目录 -> LLaMA2 目录。"""
    return native_folder_to_ours(source, output, overwrite, native_model_type="llama")


def llama2_folder_to_llama(source, output, overwrite: bool = False):
    """Convert a scratchformers LLaMA2 folder into a native `LlamaForCausalLM` folder. LLaMA2 目录 -> 原生 Llama 目录。"""
    return ours_folder_to_native(source, output, overwrite, model_type="scratch_llama2")

"""Convert between transformers' native Llama folders (`LlamaForCausalLM`) and scratchformers' LLaMA2.

Parameter names and layouts are identical (both use the rotate-half RoPE layout), so the work is in the config
mapping (`scratchformers.conversion`) and in strict, tokenizer-preserving folder handling.

    python -m hub_scripts convert path/to/llama path/to/scratch-llama2
"""

from pathlib import Path

from transformers import LlamaConfig, LlamaForCausalLM

from scratchformers import Llama2Config, Llama2ForCausalLM
from scratchformers.conversion import llama2_from_llama, llama2_to_llama

from ._io import atomic_output_folder, copy_tokenizer_files, read_config
from ._models import carry_generation_config, load_folder_strict


def llama_folder_to_llama2(source, output, overwrite: bool = False) -> Path:
    """Convert a native Llama folder into a scratchformers LLaMA2 folder (weights, config, remote code, tokenizer).

    把 transformers 原生 Llama 目录转换为 scratchformers LLaMA2 目录。
    """
    source = Path(source)
    read_config(source, ("llama",))
    native = load_folder_strict(LlamaForCausalLM, LlamaConfig.from_pretrained(source), source)
    model = llama2_from_llama(native)
    carry_generation_config(source, model)
    with atomic_output_folder(output, overwrite, sources=[source]) as staging:
        model.save_pretrained(staging)
        copy_tokenizer_files(source, staging)
    return Path(output)


def llama2_folder_to_llama(source, output, overwrite: bool = False) -> Path:
    """Convert a scratchformers LLaMA2 folder into a native `LlamaForCausalLM` folder.

    把 scratchformers LLaMA2 目录转换回 transformers 原生 Llama 目录。
    """
    source = Path(source)
    read_config(source, (Llama2Config.model_type,))
    model = load_folder_strict(Llama2ForCausalLM, Llama2Config.from_pretrained(source), source)
    native = llama2_to_llama(model)
    carry_generation_config(source, native)
    with atomic_output_folder(output, overwrite, sources=[source]) as staging:
        native.save_pretrained(staging)
        copy_tokenizer_files(source, staging)
    return Path(output)

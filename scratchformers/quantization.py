"""int8 weights for CPU inference with torchao, through transformers' own quantization support.

`quantize_model` loads the model with `TorchAoConfig(Int8DynamicActivationInt8WeightConfig())`: every `nn.Linear`
of the blocks gets int8 weights (per output channel) and int8 dynamically quantized activations, running torchao's
kernels (no hand-written int8 matmul). The output head stays float where it shares its weight with the token
embeddings (GPT's tied head), since an int8 copy would untie it. The folder is an ordinary model folder whose
`config.json` records the `quantization_config`: `AutoModelForCausalLM.from_pretrained(folder)` loads it quantized
(torchao installed), and `generate()` works as before. The int8 weights and their scales are saved in
`model.safetensors` (transformers 5 stores torchao's tensors there).
用 torchao 把线性层量化为 int8（CPU 推理），保存后可直接 from_pretrained 加载并生成。
"""

from __future__ import annotations

from pathlib import Path

from .utils import atomic_output_folder, check_output_folder

QUANTIZATION_METHODS = ("int8-dynamic",)


def quantization_config(method: str, model_config):
    """transformers' `TorchAoConfig` for `method`."""
    if method not in QUANTIZATION_METHODS:
        raise ValueError(f"unknown quantization method {method!r}; choose one of {', '.join(QUANTIZATION_METHODS)}")
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig
    except ImportError:
        raise ImportError("int8 quantization needs torchao: pip install 'scratchformers[quantize]'") from None
    from transformers import TorchAoConfig

    skip = ["lm_head"] if getattr(model_config, "tie_word_embeddings", False) else None
    return TorchAoConfig(quant_type=Int8DynamicActivationInt8WeightConfig(), modules_to_not_convert=skip)


def quantize_model(model_dir, out_dir, method: str = "int8-dynamic", overwrite: bool = False) -> Path:
    """Write `out_dir`: the model of `model_dir` with `method` weights, its tokenizer and remote code. Nothing is
    written unless it succeeds; an existing `out_dir` needs `overwrite=True` (and must be an earlier output).

    量化模型并保存（含分词器），失败时不写入任何内容。
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    from .families import family_of_folder
    from .tokenization_scratch import load_tokenizer

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if method not in QUANTIZATION_METHODS:
        raise ValueError(f"unknown quantization method {method!r}; choose one of {', '.join(QUANTIZATION_METHODS)}")
    family, _ = family_of_folder(model_dir, "quantize")  # ours or its native counterpart, else a clear error
    if not family.is_decoder:
        raise ValueError(f"{model_dir} holds a {family.name} encoder; quantize is for the decoders (GPT, LLaMA2). "
                         "For int8 BERT use `scratchformers export onnx`, which writes onnx/model_quantized.onnx")
    config = AutoConfig.from_pretrained(model_dir)
    check_output_folder(out_dir, overwrite)
    saved = out_dir / "config.json"
    earlier = saved.is_file() and "quantization_config" in saved.read_text(encoding="utf-8", errors="ignore")
    if overwrite and out_dir.is_dir() and any(out_dir.iterdir()) and not earlier:
        raise FileExistsError(f"{out_dir} holds files that are not a quantized model; choose another folder")
    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=quantization_config(method, config))
    with atomic_output_folder(out_dir, overwrite) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return out_dir

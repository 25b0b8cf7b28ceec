"""Export a trained model to ONNX (decoders with their KV cache), in the folder layout transformers.js loads.

The model goes to its native transformers counterpart first (`scratchformers.families`: GPT -> `GPT2LMHeadModel`,
LLaMA2 -> `LlamaForCausalLM`, the same weights), whose `model_type` transformers.js knows, and `torch.onnx.export`
traces one decoder step: inputs `input_ids`, `attention_mask`, `position_ids` and `past_key_values.{i}.key|value`,
outputs `logits` and `present.{i}.key|value`, so generation is incremental (the first step passes an empty past).
onnxruntime's dynamic quantization adds the int8 copy. An encoder (BERT) becomes native `BertForMaskedLM` or
`BertForSequenceClassification`, by the head it was saved with, traced with `input_ids`, `attention_mask`,
`token_type_ids` -> `logits`: transformers.js runs it in `pipeline("fill-mask")` / `pipeline("text-classification")`.
The output folder:

    config.json, generation_config.json, tokenizer.json, tokenizer_config.json (+ chat_template.jinja)
    onnx/model.onnx, onnx/model_quantized.onnx

导出为带 KV 缓存的 ONNX 模型（transformers.js 可直接加载的目录结构），并附带 int8 量化版本。
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import torch
from transformers import DynamicCache

from .families import family_of_folder
from .utils import atomic_output_folder, check_output_folder

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


class DecoderStep(torch.nn.Module):
    """One step of a native causal LM with its cache as flat tensors (what an ONNX graph can take and give)."""

    def __init__(self, model, num_layers: int):
        super().__init__()
        self.model = model
        self.num_layers = num_layers

    def forward(self, input_ids, attention_mask, position_ids, *past):
        cache = DynamicCache()
        for i in range(self.num_layers):
            cache.update(past[2 * i], past[2 * i + 1], i)  # (B, n_kv, P, hd) each
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         cache=cache, use_cache=True)
        presents = [t for layer in out.cache.layers for t in (layer.keys, layer.values)]  # (B, n_kv, P + T, hd)
        return (out.logits, *presents)


def load_native(model_dir: Path):
    """The model of `model_dir` as its native transformers model (the causal LM of a decoder; see `load_native_encoder`
    for BERT), and the family it belongs to."""
    from .training.common import load_pretrained

    family, native = family_of_folder(model_dir, "ONNX export")
    if not family.is_decoder:
        return load_native_encoder(model_dir, family, native), family
    if native:
        return family.native_model.from_pretrained(model_dir), family
    return family.to_native(load_pretrained(model_dir)), family


def load_native_encoder(model_dir: Path, family, is_native: bool):
    """BERT as native `BertForSequenceClassification` when it was saved with that head, else `BertForMaskedLM`."""
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, BertForSequenceClassification

    from .training.common import load_pretrained

    architectures = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    if any(name.endswith("ForSequenceClassification") for name in architectures):
        native_class, auto_class = BertForSequenceClassification, AutoModelForSequenceClassification
    else:
        native_class, auto_class = family.native_model, AutoModelForMaskedLM
    if is_native:
        return native_class.from_pretrained(model_dir)
    return family.to_native(load_pretrained(model_dir, auto_class), native_class)


def _example_inputs(config, batch=1, seq=3, past=2):
    """Tensors to trace with: the cache is never empty while tracing (an empty past works at run time)."""
    num_kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    input_ids = torch.randint(0, config.vocab_size, (batch, seq))
    attention_mask = torch.ones(batch, past + seq, dtype=torch.long)
    position_ids = torch.arange(past, past + seq)[None].expand(batch, -1)
    caches = [torch.zeros(batch, num_kv, past, head_dim) for _ in range(2 * config.num_hidden_layers)]
    return (input_ids, attention_mask, position_ids, *caches)


def export_onnx_model(native, path: Path) -> None:
    """Trace `native` (a transformers causal LM) into `path` with dynamic batch, sequence and cache lengths."""
    layers = native.config.num_hidden_layers
    native = native.eval().float()
    native.config._attn_implementation = "eager"  # plain matmul/softmax: every ONNX runtime executes it
    past_names = [f"past_key_values.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    present_names = [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    dynamic = {"input_ids": {0: "batch_size", 1: "sequence_length"},
               "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
               "position_ids": {0: "batch_size", 1: "sequence_length"},
               "logits": {0: "batch_size", 1: "sequence_length"}}
    dynamic.update({name: {0: "batch_size", 2: "past_sequence_length"} for name in past_names})
    dynamic.update({name: {0: "batch_size", 2: "total_sequence_length"} for name in present_names})
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about Python values frozen into the graph
        torch.onnx.export(
            DecoderStep(native, layers), _example_inputs(native.config), str(path), dynamo=False, opset_version=18,
            input_names=["input_ids", "attention_mask", "position_ids", *past_names],
            output_names=["logits", *present_names], dynamic_axes=dynamic,
        )


def export_encoder_onnx_model(native, path: Path) -> None:
    """Trace `native` (a transformers BERT with a head) into `path`: `input_ids`, `attention_mask`, `token_type_ids`
    -> `logits`, with dynamic batch and sequence lengths."""
    native = native.eval().float()
    native.config._attn_implementation = "eager"
    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = tuple(torch.ones(2, 5, dtype=torch.long) for _ in names)
    dynamic = {name: {0: "batch_size", 1: "sequence_length"} for name in names}
    per_sequence = type(native).__name__.endswith("ForSequenceClassification")  # (B, labels), else (B, T, V)
    dynamic["logits"] = {0: "batch_size"} if per_sequence else {0: "batch_size", 1: "sequence_length"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(EncoderLogits(native), example, str(path), dynamo=False, opset_version=18,
                          input_names=names, output_names=["logits"], dynamic_axes=dynamic)


class EncoderLogits(torch.nn.Module):
    """An encoder's logits from the three inputs transformers.js passes, as positional arguments (for tracing)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def export_onnx(model_dir, out_dir, overwrite: bool = False, quantize: bool = True) -> Path:
    """Export the model in `model_dir` (either family, or its native GPT-2 / Llama form) to `out_dir` for
    transformers.js (see the module docstring). Nothing is written unless the export succeeds; an existing `out_dir`
    needs `overwrite=True`.

    导出 ONNX（含 KV 缓存与 int8 量化版），输出目录可被 transformers.js 直接加载；失败时不写入任何内容。
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    check_output_folder(out_dir, overwrite)
    if overwrite and out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "onnx" / "model.onnx").is_file():
        raise FileExistsError(f"{out_dir} holds files that are not an ONNX export; --overwrite only replaces an "
                              "earlier export (with onnx/model.onnx): choose another folder")
    native, family = load_native(model_dir)
    if not (model_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{model_dir} holds no tokenizer.json: save the tokenizer next to the model "
                                "(`tokenizer.save_pretrained(folder)`), transformers.js needs it")
    with atomic_output_folder(out_dir, overwrite) as staging:
        (staging / "onnx").mkdir()
        if family.is_decoder:
            export_onnx_model(native, staging / "onnx" / "model.onnx")
        else:
            export_encoder_onnx_model(native, staging / "onnx" / "model.onnx")
        if quantize:
            import logging

            from onnxruntime.quantization import QuantType, quantize_dynamic

            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)  # onnxruntime logs a generic "consider pre-processing" hint on the root logger
            try:
                quantize_dynamic(staging / "onnx" / "model.onnx", staging / "onnx" / "model_quantized.onnx",
                                 weight_type=QuantType.QInt8)
            finally:
                root.setLevel(level)
        native.config.architectures = [type(native).__name__]  # transformers.js reads the head from here
        native.config.save_pretrained(staging)
        if family.is_decoder:
            native.generation_config.save_pretrained(staging)
        for name in TOKENIZER_FILES:
            if (model_dir / name).is_file():
                shutil.copy2(model_dir / name, staging / name)
        tokenizer_config = json.loads((staging / "tokenizer_config.json").read_text(encoding="utf-8"))
        tokenizer_config["tokenizer_class"] = "PreTrainedTokenizerFast"  # a class transformers.js knows
        if (staging / "chat_template.jinja").is_file():  # transformers.js reads the template from here
            tokenizer_config["chat_template"] = (staging / "chat_template.jinja").read_text(encoding="utf-8")
        (staging / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False))
    return out_dir

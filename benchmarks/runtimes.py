"""What each way of running a trained model costs and saves, measured in one run on one machine.

    python benchmarks/runtimes.py MODEL_DIR --validation_file VAL.txt

Rows: PyTorch fp32 `generate()` (the reference), PyTorch int8 (`scratchformers quantize --method int8-dynamic`),
ONNX fp32 and int8 in Node.js (transformers.js, `scratchformers export onnx`), and GGUF f16 and q8_0 in llama.cpp
(`scratchformers export gguf`, through llama-cpp-python) when those packages are installed. Columns: file size,
greedy tokens/s over 32 prompts taken from the validation text (32 new tokens each, model loaded once, prompt
processing included), how many of the 32 greedy continuations equal PyTorch fp32's token for token (and the mean
share of matching leading tokens), and the validation loss in nats per character where the runtime gives logits.

Writes benchmarks/results/runtimes_<date>.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import scratchformers  # noqa: F401  (registers the Auto classes)
from scratchformers.generation import prompt_ids
from scratchformers.tokenization_scratch import load_tokenizer
from scratchformers.training.common import load_pretrained, nats_per_character

ROOT = Path(__file__).resolve().parents[1]


def make_prompts(text: str, n: int = 32, chars: int = 40) -> list[str]:
    """n prompts: the first `chars` characters of evenly spaced non-empty lines of `text`."""
    lines = [line.strip() for line in text.splitlines() if len(line.strip()) >= 8]
    step = max(1, len(lines) // n)
    return [line[:chars] for line in lines[::step][:n]]


def agreement(reference: list[list[int]], other: list[list[int]]) -> dict:
    same, prefix = 0, []
    for a, b in zip(reference, other):
        same += a == b
        k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        prefix.append(k / max(1, len(a)))
    return {"identical": f"{same}/{len(reference)}", "matching_prefix": float(np.mean(prefix))}


def torch_row(model, tokenizer, prompts, max_new_tokens, validation_text, name, size_bytes) -> dict:
    outputs, seconds, new_tokens = [], 0.0, 0
    with torch.no_grad():
        for prompt in prompts:
            ids = prompt_ids(tokenizer, prompt)
            limit = min(max_new_tokens, model.config.max_position_embeddings - ids.shape[1])
            start = time.perf_counter()
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=limit, do_sample=False,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
            seconds += time.perf_counter() - start
            outputs.append(out[0, ids.shape[1]:].tolist())
            new_tokens += len(outputs[-1])
    scored = nats_per_character(model, tokenizer, validation_text) if validation_text else {}
    return {"runtime": name, "size_mb": size_bytes / 2**20, "tokens_per_s": new_tokens / seconds,
            "outputs": outputs, "nats_per_char": scored.get("nats_per_char")}


def stream_nats_per_char(window_logits, tokenizer, text: str, context: int) -> float:
    """Validation loss of a runtime that gives logits: `text` (after the EOS separator) in windows of `context`
    tokens, each from an empty cache, as `nats_per_character` scores the PyTorch model. `window_logits(ids)` returns
    the (T, V) logits of a list of ids."""
    ids = [tokenizer.eos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]
    total = 0.0
    for start in range(0, len(ids) - 1, context):
        window = ids[start:start + context + 1]
        targets = np.array(window[1:])
        logits = np.asarray(window_logits(window[:-1]), dtype=np.float64)  # (T, V)
        logits -= logits.max(-1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        total -= log_probs[np.arange(len(targets)), targets].sum()
    return total / len(text)


def onnx_nats_per_char(path: Path, tokenizer, text: str, context: int) -> float:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path))

    def window_logits(ids):
        inputs = np.array(ids)[None]
        feeds = {"input_ids": inputs, "attention_mask": np.ones_like(inputs), "position_ids": np.arange(inputs.shape[1])[None]}
        for item in session.get_inputs()[3:]:
            feeds[item.name] = np.zeros([1, item.shape[1], 0, item.shape[3]], np.float32)
        return session.run(["logits"], feeds)[0][0]

    return stream_nats_per_char(window_logits, tokenizer, text, context)


def int8_row(model_dir: Path, tokenizer, prompts, max_new_tokens, validation_text, work: Path) -> dict:
    from transformers import AutoModelForCausalLM

    from scratchformers.quantization import quantize_model

    out = quantize_model(model_dir, work / "int8")
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    size = sum(p.stat().st_size for p in out.iterdir() if p.suffix in (".safetensors", ".bin"))
    return torch_row(model, tokenizer, prompts, max_new_tokens, validation_text,
                     "PyTorch int8 generate() (torchao, int8-dynamic)", size)


def gguf_rows(model_dir: Path, tokenizer, prompts, max_new_tokens, validation_text, work: Path, context) -> list[dict]:
    import llama_cpp

    from scratchformers.gguf_export import export_gguf

    rows = []
    for dtype in ("f16", "q8_0"):
        path = export_gguf(model_dir, work / f"model-{dtype}.gguf", dtype=dtype)
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=context, n_threads=torch.get_num_threads(),
                              logits_all=True, verbose=False)
        outputs, seconds = [], 0.0
        for prompt in prompts:
            ids = prompt_ids(tokenizer, prompt)[0].tolist()
            started = time.perf_counter()
            llm.reset()
            llm.eval(ids)
            new = []
            for _ in range(min(max_new_tokens, context - len(ids))):
                token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
                if token == tokenizer.eos_token_id:
                    break
                new.append(token)
                llm.eval([token])
            seconds += time.perf_counter() - started
            outputs.append(new)

        def window_logits(ids, llm=llm):
            llm.reset()
            llm.eval(ids)
            return llm.scores[: len(ids)]

        loss = stream_nats_per_char(window_logits, tokenizer, validation_text, context) if validation_text else None
        llm.close()
        rows.append({"runtime": f"GGUF {dtype}, llama.cpp (llama-cpp-python)", "size_mb": path.stat().st_size / 2**20,
                     "tokens_per_s": sum(map(len, outputs)) / seconds, "outputs": outputs, "nats_per_char": loss})
    return rows


def onnx_rows(model_dir: Path, tokenizer, prompts, max_new_tokens, validation_text, work: Path, context) -> list[dict]:
    from scratchformers.onnx_export import export_onnx

    export = export_onnx(model_dir, work / "onnx_export")
    prompts_file = work / "prompts.json"
    prompts_file.write_text(json.dumps(prompts, ensure_ascii=False))
    rows = []
    for dtype, file in (("fp32", "model.onnx"), ("q8", "model_quantized.onnx")):
        result = subprocess.run(
            ["node", str(ROOT / "js" / "bench.mjs"), str(export), str(prompts_file), "--max-new-tokens",
             str(max_new_tokens), "--dtype", dtype], capture_output=True, text=True, check=True, cwd=ROOT / "js")
        runs = json.loads(result.stdout.strip().splitlines()[-1])
        rows.append({
            "runtime": f"ONNX {'int8' if dtype == 'q8' else 'fp32'}, Node.js (transformers.js)",
            "size_mb": (export / "onnx" / file).stat().st_size / 2**20,
            "tokens_per_s": sum(len(r["new_ids"]) for r in runs) / sum(r["seconds"] for r in runs),
            "outputs": [r["new_ids"] for r in runs],
            "nats_per_char": onnx_nats_per_char(export / "onnx" / file, tokenizer, validation_text, context)
            if validation_text else None,
        })
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [("| runtime | file MB | greedy tokens/s | identical to PyTorch fp32 (32 prompts) | matching leading tokens "
              "| validation nats/char |"), "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        loss = f"{r['nats_per_char']:.4f}" if r.get("nats_per_char") is not None else "n/a"
        lines.append(f"| {r['runtime']} | {r['size_mb']:.2f} | {r['tokens_per_s']:.0f} | {r['identical']} "
                     f"| {r['matching_prefix']:.0%} | {loss} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--validation_file", help="text whose lines give the prompts and whose loss is measured")
    parser.add_argument("--validation_chars", type=int, default=30000, help="score the first N characters")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--results_dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--skip", nargs="*", default=[], choices=["onnx", "int8", "gguf"])
    args = parser.parse_args(argv)

    model_dir = Path(args.model_dir)
    model, tokenizer = load_pretrained(model_dir).eval(), load_tokenizer(model_dir)
    text = Path(args.validation_file).read_text(encoding="utf-8") if args.validation_file else "Once upon a time\n" * 64
    validation_text = text[: args.validation_chars] if args.validation_file else ""
    prompts = make_prompts(text, args.prompts)
    started = datetime.datetime.now()
    work = Path(tempfile.mkdtemp(prefix="runtimes-"))
    try:
        weights = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
        rows = [torch_row(model, tokenizer, prompts, args.max_new_tokens, validation_text, "PyTorch fp32 generate()",
                          weights)]
        if "int8" not in args.skip and importlib.util.find_spec("torchao"):
            rows.append(int8_row(model_dir, tokenizer, prompts, args.max_new_tokens, validation_text, work))
        if "onnx" not in args.skip and shutil.which("node") and (ROOT / "js" / "node_modules").is_dir():
            rows += onnx_rows(model_dir, tokenizer, prompts, args.max_new_tokens, validation_text, work,
                              model.config.max_position_embeddings)
        if "gguf" not in args.skip and importlib.util.find_spec("llama_cpp"):
            rows += gguf_rows(model_dir, tokenizer, prompts, args.max_new_tokens, validation_text, work,
                              model.config.max_position_embeddings)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for row in rows:
        row.update(agreement(rows[0]["outputs"], row["outputs"]))
    record = {
        "date": started.isoformat(timespec="seconds"), "model_dir": str(model_dir), "model_type": model.config.model_type,
        "prompts": prompts, "max_new_tokens": args.max_new_tokens, "validation_chars": len(validation_text),
        "machine": {"processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "load_average_end": os.getloadavg()},
        "rows": [{k: v for k, v in r.items() if k != "outputs"} for r in rows],
    }
    out = Path(args.results_dir) / f"runtimes_{started:%Y%m%d-%H%M%S}_{model.config.model_type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    print(markdown(rows))
    print(f"results: {out}")
    return record


if __name__ == "__main__":
    main()

"""Benchmark scratchformers against transformers' native GPT-2, Llama and BERT, measured side by side.

For every (family, size, attention) group, our model and the native one get the same config, the same weights
(copied with `scratchformers.conversion`) and the same batch; their runs are interleaved round-robin in this one
process, so a busy machine slows both alike and the ratio ours / native stays meaningful even when absolute
numbers are noisy. Figures are medians over repeats after warmup.

Measured:
- training: tokens/s of a full step (forward with labels, backward, AdamW step, zero_grad), fp32;
- peak memory of that step: the highest sum of live tensor bytes allocated by torch during one step, above what
  was live when it started (params, grads-free AdamW state), from torch.profiler's allocation events;
- MFU: model FLOPs per token x tokens/s / this machine's fp32 matmul peak, measured in the same run;
- generation: new tokens/s of greedy `generate()` of a fixed length (min_new_tokens = max_new_tokens, so EOS
  cannot stop it), with and without KV cache, batch 1 and 8;
- BERT (training only): a masked-LM step, 15% of the tokens labelled, against `BertForMaskedLM`; once with the
  same computation (every position scored) and once with `sparse_prediction` (only the masked positions scored,
  what `scratchformers pretrain --preset bert-*` runs);
- optionally (`--compile`) the training step of `torch.compile`d models, reported separately.

Run from the repository root:
    python benchmarks/bench_models.py            # full run, a few minutes on 2 cores
    python benchmarks/bench_models.py --quick    # under 3 minutes
    python benchmarks/bench_models.py --smoke    # seconds; what tests/test_benchmarks.py runs
Add `--threads 1` on a machine shared with other busy processes (see benchmarks/README.md, "Shared machines").
"""

import argparse
import datetime
import itertools
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import transformers
from torch.profiler import ProfilerActivity, profile

import scratchformers as sf
from scratchformers.conversion import (
    bert_to_native,
    gpt_config_to_gpt2,
    gpt_state_dict_to_gpt2,
    llama2_to_llama,
    load_state_dict_strict,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# (family, size) -> our preset; the native class comes from scratchformers.conversion
PRESETS = {
    ("gpt", "micro"): "gpt-micro",
    ("gpt", "mini"): "gpt-mini",
    ("llama2", "micro"): "llama2-tiny",
    ("llama2", "mini"): "llama2-mini",
    ("bert", "micro"): "bert-mini",
    ("bert", "mini"): "bert-small",
}
NATIVE_NAME = {"gpt": "GPT2LMHeadModel", "llama2": "LlamaForCausalLM", "bert": "BertForMaskedLM"}
DECODERS = ("gpt", "llama2")
# The native GPT-2 of the headline rows is what a user gets from GPT2LMHeadModel / every GPT-2 checkpoint:
# GPT2Config's default activation_function="gelu_new" (tanh GELU as a Python formula, several elementwise kernels).
# Ours uses "gelu_pytorch_tanh" (the same function in one fused kernel, within ~1e-6). The control row runs the
# native class with our fused GELU, so the difference between the two rows is the activation alone.
NATIVE_GPT_ACT = "gelu_new"
CONTROL_GPT_ACT = "gelu_pytorch_tanh"
TARGETS = {  # training tokens/s ours / native; generation targets are the same for both families
    "train": {"gpt": 1.2, "llama2": 1.1, "bert": 1.0},
    "train_floor": 1.0,
    "generate_cached_vs_native": 1.0,
    "generate_cached_vs_uncached": 5.0,
}

MODES = {
    # training: sizes, attention kernels (mini_attns at mini size), batch x seq, warmup steps (mini_warmup at mini
    # size) and timed repeats; generation (SDPA): sizes, batches with KV cache (mini_gen_batches at mini size),
    # batches also run without cache, new tokens (mini_uncached_tokens without cache at mini size: quick mode
    # shortens these, the slowest runs, whose cost grows with the square of the length), prompt length, timed
    # repeats with / without cache
    "full": dict(sizes=["micro", "mini"], attns=["sdpa", "eager"], mini_attns=["sdpa", "eager"], batch=8, seq=256,
                 warmup=2, mini_warmup=2, repeats=5, gen_sizes=["micro", "mini"], gen_batches=[1, 8],
                 mini_gen_batches=[1, 8], gen_uncached_batches=[1, 8], gen_tokens=256, mini_uncached_tokens=256,
                 prompt=8,
                 gen_repeats=5, gen_uncached_repeats=2, matmul_n=2048),
    "quick": dict(sizes=["micro", "mini"], attns=["sdpa", "eager"], mini_attns=["sdpa"], batch=8, seq=256,
                  warmup=2, mini_warmup=1, repeats=3, gen_sizes=["micro", "mini"], gen_batches=[1, 8],
                  mini_gen_batches=[1], gen_uncached_batches=[1], gen_tokens=256, mini_uncached_tokens=128,
                  prompt=8,
                  gen_repeats=3, gen_uncached_repeats=1, matmul_n=2048),
    "smoke": dict(sizes=["micro"], attns=["sdpa"], mini_attns=["sdpa"], batch=2, seq=32, warmup=2, mini_warmup=2,
                  repeats=2, gen_sizes=["micro"], gen_batches=[1], mini_gen_batches=[1], gen_uncached_batches=[1],
                  gen_tokens=8, mini_uncached_tokens=8, prompt=4, gen_repeats=1, gen_uncached_repeats=1, matmul_n=256),
}


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------------------
# models


def native_gpt2(ours, activation: str = NATIVE_GPT_ACT):
    """transformers' GPT2LMHeadModel with our weights and config, except the activation (default: GPT-2's own)."""
    config = gpt_config_to_gpt2(ours.config)
    config.activation_function = activation
    native = transformers.GPT2LMHeadModel(config).to(ours.dtype)
    load_state_dict_strict(native, gpt_state_dict_to_gpt2(ours.state_dict()))
    return native


def build_pair(family: str, size: str, attn: str, vocab_size: int, seed: int = 0, control: bool = False,
               **overrides):
    """Our model and the native one with the same weights, both fp32, on attention kernel `attn`, dropout 0.0.

    For GPT the native model uses GPT-2's default activation "gelu_new"; `control=True` gives it our fused
    "gelu_pytorch_tanh" instead (the control row of the benchmark). For BERT `control=True` turns our
    `sparse_prediction` on (native BERT has no such option).
    """
    torch.manual_seed(seed)
    common = dict(vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, pad_token_id=0, **overrides)
    if family == "bert":
        common.update(bos_token_id=None, eos_token_id=None)
    if family == "gpt":
        common = dict(hidden_dropout=0.0, embedding_dropout=0.0, attention_dropout=0.0) | common
        ours = sf.GPTForCausalLM(sf.GPTConfig.from_preset(PRESETS[family, size], **common))
        native = native_gpt2(ours, CONTROL_GPT_ACT if control else NATIVE_GPT_ACT)
    elif family == "bert":
        common = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, sparse_prediction=control) | common
        ours = sf.BertForMaskedLM(sf.BertConfig.from_preset(PRESETS[family, size], **common))
        native = bert_to_native(ours)
    else:
        common = dict(attention_dropout=0.0) | common
        ours = sf.Llama2ForCausalLM(sf.Llama2Config.from_preset(PRESETS[family, size], **common))
        native = llama2_to_llama(ours)
    for model in (ours, native):
        model.set_attn_implementation(attn)
        if family in DECODERS:
            model.generation_config.pad_token_id = 0
            model.generation_config.eos_token_id = 2
    return ours, native


def native_label(row) -> str:
    """How a row names the native model it compares with."""
    if row["family"] == "bert":
        return NATIVE_NAME["bert"] + (" (ours with sparse_prediction, as pretrain runs it)" if row.get("control")
                                      else " (the same computation)")
    if row["family"] != "gpt":
        return NATIVE_NAME[row["family"]]
    if row.get("control"):
        return f"{NATIVE_NAME['gpt']} with our fused GELU (control)"
    return f"{NATIVE_NAME['gpt']} (default {NATIVE_GPT_ACT})"


def matmul_params(model: torch.nn.Module) -> int:
    """Weights that take part in a matrix multiply: every Linear/Conv1D weight, the LM head included."""
    total = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() == 2 and not isinstance(module, torch.nn.Embedding):
            total += weight.numel()
    return total


def train_flops_per_token(model, seq: int) -> int:
    """6·N + 12·L·T·d: forward+backward of the N matmul weights, plus QKᵀ and AV over all T positions.

    As in PaLM's appendix B and nanoGPT's `estimate_mfu`; causal masking could skip half of the attention term,
    which is not subtracted. N counts Linear/Conv1D weights (LM head included), not embeddings, biases or norms.
    """
    config = model.config
    attn_dim = config.num_attention_heads * (config.hidden_size // config.num_attention_heads)
    return 6 * matmul_params(model) + 12 * config.num_hidden_layers * seq * attn_dim


# ----------------------------------------------------------------------------------------------------------------
# measurements


def measure_matmul_peak(n: int, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of an n x n @ n x n torch.matmul: the machine's practical peak for the MFU denominator."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def make_optimizer(model):
    """AdamW with the fused CPU kernel: what `Trainer` uses by default ("adamw_torch_fused") with torch >= 2.8."""
    return torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)


def train_step(model, optimizer, batch, labels=None):
    loss = model(input_ids=batch, labels=batch if labels is None else labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: dict, warmup: int, repeats: int, rotate: bool = False) -> dict:
    """Median seconds per call of each function, calls interleaved round-robin.

    The order is reversed every round, or with `rotate` rotated by one place every round: with three functions,
    reversing keeps the middle one in the middle, while rotating puts each first, second and last equally often
    (repeats a multiple of 3).
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        if rotate:
            shift = r % len(names)
            order = names[shift:] + names[:shift]
        else:
            order = names if r % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(timed(fns[name]))
    return {name: statistics.median(t) for name, t in times.items()}


def peak_step_memory(step) -> int:
    """Highest sum of live tensor bytes torch allocated during `step()`, relative to its start (profiler events)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
    )
    return max(itertools.accumulate((n for _, n in events), initial=0))


def bench_train(family, size, attns, batch, seq, warmup, repeats, vocab_size, peak_gflops, memory=True):
    """Training rows for one (family, size): every attention kernel, ours and native, interleaved."""
    steps, models = {}, {}
    torch.manual_seed(1)
    data = torch.randint(3, vocab_size, (batch, seq))
    labels = None
    if family == "bert":  # masked LM: 15% of the positions carry a label
        labels = data.masked_fill(torch.rand(batch, seq, generator=torch.Generator().manual_seed(2)) > 0.15, -100)
    natives = ("native", "control") if family in ("gpt", "bert") else ("native",)
    for attn in attns:
        ours, native = build_pair(family, size, attn, vocab_size)
        variants = [("ours", ours), ("native", native)]
        if family == "gpt":
            variants.append(("control", build_pair(family, size, attn, vocab_size, control=True)[1]))
        if family == "bert":  # the control row is ours with sparse_prediction, against the same native model
            variants.append(("ours_sparse", build_pair(family, size, attn, vocab_size, control=True)[0]))
        for who, model in variants:
            model.train()
            optimizer = make_optimizer(model)
            models[attn, who] = model
            steps[attn, who] = (lambda m=model, o=optimizer: train_step(m, o, data, labels))
    seconds = interleaved(steps, warmup, repeats)
    rows = []
    for attn in attns:
        flops = train_flops_per_token(models[attn, "ours"], seq)
        params = sum(p.numel() for p in models[attn, "ours"].parameters())
        ours_tps = batch * seq / seconds[attn, "ours"]
        ours_mb = peak_step_memory(steps[attn, "ours"]) / 2**20 if memory else None
        for native in natives:
            if family == "bert" and native == "control":  # ours sparse vs the native model
                ours_tps = batch * seq / seconds[attn, "ours_sparse"]
                ours_mb = peak_step_memory(steps[attn, "ours_sparse"]) / 2**20 if memory else None
                native = "native"
                control = True
            else:
                control = native == "control"
            row = dict(family=family, size=size, preset=PRESETS[family, size], attn=attn, batch=batch, seq=seq,
                       control=control, native=type(models[attn, native]).__name__)
            if family == "gpt":
                row["native_activation"] = models[attn, native].config.activation_function
            row["flops_per_token"] = flops
            row["params"] = params
            row["static_mb"] = 3 * params * 4 / 2**20  # fp32 weights + AdamW exp_avg + exp_avg_sq, between steps
            row["matmul_params"] = matmul_params(models[attn, "ours"])
            for who, tps in (("ours", ours_tps), ("native", batch * seq / seconds[attn, native])):
                row[f"{who}_tokens_per_s"] = tps
                row[f"{who}_mfu"] = flops * tps / (peak_gflops * 1e9)
            if memory:
                row["ours_peak_step_mb"] = ours_mb
                row["native_peak_step_mb"] = peak_step_memory(steps[attn, native]) / 2**20
            row["ratio"] = row["ours_tokens_per_s"] / row["native_tokens_per_s"]
            row["target"] = None if row["control"] and family == "gpt" else TARGETS["train"][family]
            rows.append(row)
    return rows


def bench_generate(family, size, batches, uncached_batches, new_tokens, prompt_len, repeats, uncached_repeats,
                   vocab_size, uncached_tokens=None):
    """Generation rows for one (family, size) on SDPA: with and without KV cache, ours and native, interleaved.

    `uncached_tokens` (default `new_tokens`) shortens the runs without cache: their cost grows with the square of
    the length. A shorter uncached run is faster per token, so cached / uncached is then a lower bound.
    """
    uncached_tokens = uncached_tokens or new_tokens
    # the learned position table must hold prompt + new tokens (gpt-micro has 256 positions)
    ours, native = build_pair(family, size, "sdpa", vocab_size,
                              max_position_embeddings=max(prompt_len + new_tokens, 256))
    ours.eval(), native.eval()
    rows = []
    for batch in batches:
        torch.manual_seed(2)
        prompt = torch.randint(3, vocab_size, (batch, prompt_len))
        mask = torch.ones_like(prompt)
        caches = (True, False) if batch in uncached_batches else (True,)
        fns, warm, outputs = {}, {}, {}

        def make(model, key, cache, n):
            def run():
                with torch.inference_mode():
                    outputs[key] = model.generate(input_ids=prompt, attention_mask=mask, do_sample=False,
                                                  use_cache=cache, max_new_tokens=n, min_new_tokens=n)
            return run

        for cache in caches:
            for who, model in (("ours", ours), ("native", native)):
                fns[who, cache] = make(model, (who, cache), cache, new_tokens if cache else uncached_tokens)
                warm[who, cache] = make(model, (who, cache), cache, 4)
        interleaved(warm, warmup=0, repeats=1)  # first calls build generation configs and caches
        seconds = interleaved({k: f for k, f in fns.items() if k[1]}, warmup=0, repeats=repeats)
        if False in caches:
            seconds |= interleaved({k: f for k, f in fns.items() if not k[1]}, warmup=0, repeats=uncached_repeats)
        for cache in caches:
            n = new_tokens if cache else uncached_tokens
            row = dict(family=family, size=size, preset=PRESETS[family, size], attn="sdpa", batch=batch,
                       prompt=prompt_len, new_tokens=n, cache=cache, native=type(native).__name__)
            if family == "gpt":
                row["native_activation"] = native.config.activation_function
            for who in ("ours", "native"):
                row[f"{who}_tokens_per_s"] = batch * n / seconds[who, cache]
            row["ratio"] = row["ours_tokens_per_s"] / row["native_tokens_per_s"]
            row["same_tokens"] = bool(torch.equal(outputs["ours", cache], outputs["native", cache]))
            rows.append(row)
        if len(caches) == 2:
            cached, uncached = rows[-2], rows[-1]
            cached["ours_cached_vs_uncached"] = cached["ours_tokens_per_s"] / uncached["ours_tokens_per_s"]
            cached["native_cached_vs_uncached"] = cached["native_tokens_per_s"] / uncached["native_tokens_per_s"]
            cached["cached_vs_uncached_is_lower_bound"] = uncached_tokens < new_tokens
    return rows


def bench_static_cache(family, size, prompt_len, new_tokens, repeats, vocab_size):
    """Batch-1 greedy generation of our model: dynamic cache (eager) vs static cache with the decode step compiled
    (inductor, fullgraph) through generate()'s own compile path; the first call's compile time is reported apart."""
    from transformers.generation.configuration_utils import CompileConfig

    ours, _ = build_pair(family, size, "sdpa", vocab_size, max_position_embeddings=max(prompt_len + new_tokens, 256))
    ours.eval()
    torch.manual_seed(3)
    prompt = torch.randint(3, vocab_size, (1, prompt_len))
    config = CompileConfig(fullgraph=True, dynamic=False, mode="default")
    config._compile_all_devices = True  # generate() compiles on GPUs only unless told
    outputs = {}

    def make(key, **kwargs):
        def run():
            with torch.inference_mode():
                outputs[key] = ours.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                             max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kwargs)
        return run

    fns = {"dynamic": make("dynamic"), "static": make("static", cache_implementation="static", compile_config=config)}
    compile_seconds = timed(fns["static"])  # compiles the decode step
    seconds = interleaved(fns, warmup=1, repeats=repeats)
    return dict(family=family, size=size, preset=PRESETS[family, size], prompt=prompt_len, new_tokens=new_tokens,
                dynamic_tokens_per_s=new_tokens / seconds["dynamic"],
                static_compiled_tokens_per_s=new_tokens / seconds["static"], compile_seconds=compile_seconds,
                same_tokens=bool(torch.equal(outputs["dynamic"], outputs["static"])))


def bench_compile(family, size, batch, seq, warmup, repeats, vocab_size, peak_gflops):
    """torch.compile'd training step (SDPA), ours vs native and ours eager-mode; compile time reported too."""
    torch.manual_seed(1)
    data = torch.randint(3, vocab_size, (batch, seq))
    ours, native = build_pair(family, size, "sdpa", vocab_size)
    plain = build_pair(family, size, "sdpa", vocab_size)[0]
    steps, compile_seconds = {}, {}
    for who, model in (("ours_compiled", ours), ("native_compiled", native), ("ours", plain)):
        model.train()
        optimizer = make_optimizer(model)
        target = torch.compile(model) if who.endswith("compiled") else model
        steps[who] = (lambda m=target, o=optimizer: train_step(m, o, data))
        compile_seconds[who] = timed(steps[who])  # the first call compiles
    seconds = interleaved(steps, warmup, repeats)
    flops = train_flops_per_token(plain, seq)
    row = dict(family=family, size=size, preset=PRESETS[family, size], attn="sdpa", batch=batch, seq=seq)
    for who in steps:
        row[f"{who}_tokens_per_s"] = batch * seq / seconds[who]
        row[f"{who}_mfu"] = flops * row[f"{who}_tokens_per_s"] / (peak_gflops * 1e9)
        row[f"{who}_first_call_s"] = compile_seconds[who]
    row["ratio_compiled"] = row["ours_compiled_tokens_per_s"] / row["native_compiled_tokens_per_s"]
    row["speedup_vs_uncompiled"] = row["ours_compiled_tokens_per_s"] / row["ours_tokens_per_s"]
    return row


# ----------------------------------------------------------------------------------------------------------------
# report


ALLOCATOR_ENV = ("GLIBC_TUNABLES", "LD_PRELOAD", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_CONF")


def machine_info() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return dict(
        cpu=cpu,
        cores=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        transformers=transformers.__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        # the memory allocator decides how often large tensors page-fault, which moves every figure
        # (see benchmarks/README.md)
        allocator_env={k: v for k, v in os.environ.items() if k in ALLOCATOR_ENV},
    )


def load_average() -> list | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def fmt_ratio(ratio, target=None):
    mark = "" if target is None else (" ✓" if ratio >= target else " ✗")
    return f"{ratio:.2f}x{mark}"


def markdown(result: dict) -> str:
    """The results as Markdown: the cells computed here, the words and table layout in templates/bench_models.md.j2."""
    import jinja2

    m = result["machine"]
    train_rows = []
    for r in result["train"]:
        target = f"{r['target']}x" if r["target"] else "control, no target"
        train_rows.append([
            f"{r['preset']} vs {native_label(r)}", r["attn"], f"{r['ours_tokens_per_s']:.0f}",
            f"{r['native_tokens_per_s']:.0f}", f"{fmt_ratio(r['ratio'], r['target'])} ({target})", f"{r['ours_mfu']:.0%}",
            f"{r['native_mfu']:.0%}", f"{r.get('ours_peak_step_mb', float('nan')):.0f}",
            f"{r.get('native_peak_step_mb', float('nan')):.0f}", f"{r['static_mb']:.0f}",
        ])
    generation_rows = []
    for r in result["generation"]:
        vs_uncached = r.get("ours_cached_vs_uncached")
        bound = r.get("cached_vs_uncached_is_lower_bound")
        vs_target = TARGETS["generate_cached_vs_uncached"]
        if bound and vs_uncached and vs_uncached < vs_target:
            vs_target = None  # a bound below the target says nothing either way
        target = TARGETS["generate_cached_vs_native"] if r["cache"] else None
        generation_rows.append([
            f"{r['preset']} vs {native_label(r)}", str(r["batch"]), "yes" if r["cache"] else "no", str(r["new_tokens"]),
            f"{r['ours_tokens_per_s']:.0f}", f"{r['native_tokens_per_s']:.0f}", fmt_ratio(r["ratio"], target),
            "yes" if r["same_tokens"] else "NO",
            f"{'≥ ' if bound else ''}{fmt_ratio(vs_uncached, vs_target) if vs_uncached else ''}",
        ])
    static_rows = [[r["preset"], f"{r['dynamic_tokens_per_s']:.0f}", f"{r['static_compiled_tokens_per_s']:.0f}",
                    f"{r['static_compiled_tokens_per_s'] / r['dynamic_tokens_per_s']:.2f}x",
                    f"{r['compile_seconds']:.0f}", "yes" if r["same_tokens"] else "NO"]
                   for r in result.get("static_cache", [])]
    compile_rows = []
    for r in result.get("compile") or []:
        if "error" in r:
            compile_rows.append([r["preset"], f"failed: {r['error']}", "", "", "", ""])
            continue
        compile_rows.append([
            f"{r['preset']} vs {native_label(r)}", f"{r['ours_compiled_tokens_per_s']:.0f}",
            f"{r['native_compiled_tokens_per_s']:.0f}", f"{r['ratio_compiled']:.2f}x", f"{r['speedup_vs_uncompiled']:.2f}x",
            f"{r['ours_compiled_first_call_s']:.0f} / {r['native_compiled_first_call_s']:.0f}",
        ])
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                                     keep_trailing_newline=True)
    return environment.get_template("bench_models.md.j2").render(
        result=result, m=m, s=result["settings"], native_act=NATIVE_GPT_ACT, control_act=CONTROL_GPT_ACT,
        allocator=" ".join(f"{k}={v}" for k, v in m.get("allocator_env", {}).items()) or "default (no variables set)",
        train_rows=train_rows, generation_rows=generation_rows, static_rows=static_rows, compile_rows=compile_rows,
        lower_bound=any(r.get("cached_vs_uncached_is_lower_bound") for r in result["generation"]),
    )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="fewer repeats and generation sizes: under 3 minutes")
    group.add_argument("--smoke", action="store_true", help="smallest run (seconds), to check the script works")
    parser.add_argument("--families", default="gpt,llama2,bert", help="comma-separated subset of gpt,llama2,bert "
                        "(bert: training only)")
    parser.add_argument("--sizes", help="comma-separated subset of micro,mini (default: by mode)")
    parser.add_argument("--attn", help="comma-separated subset of sdpa,eager (default: by mode)")
    parser.add_argument("--batch", type=int, help="training batch size (default 8)")
    parser.add_argument("--seq", type=int, help="training sequence length (default 256)")
    parser.add_argument("--repeats", type=int, help="timed repeats per variant")
    parser.add_argument("--vocab-size", type=int, default=8192, help="vocabulary of every model (default 8192)")
    parser.add_argument("--no-train", action="store_true", help="skip the training benchmark")
    parser.add_argument("--no-generate", action="store_true", help="skip the generation benchmark")
    parser.add_argument("--no-memory", action="store_true", help="skip the profiled peak-memory step")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd training steps (slow)")
    parser.add_argument("--static-cache", action="store_true",
                        help="also time batch-1 generation with a static cache and a compiled decode step (slow)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON and markdown results")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    settings = dict(MODES[mode], vocab_size=args.vocab_size)
    if args.sizes:
        settings["sizes"] = settings["gen_sizes"] = args.sizes.split(",")
    if args.attn:
        settings["attns"] = settings["mini_attns"] = args.attn.split(",")
    for key in ("batch", "seq", "repeats"):
        if getattr(args, key):
            settings[key] = getattr(args, key)
    families = args.families.split(",")
    for name, values, known in (("family", families, NATIVE_NAME), ("size", settings["sizes"], ("micro", "mini")),
                                ("attention", settings["attns"] + settings["mini_attns"], ("sdpa", "eager"))):
        bad = [v for v in values if v not in known]
        if bad:
            raise SystemExit(f"Unknown {name} {bad[0]!r}; choose from {', '.join(known)}.")
    threads, verbosity = torch.get_num_threads(), transformers.logging.get_verbosity()
    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()  # the vocab-8192 models warn about nothing useful
    try:
        argv = sys.argv[1:] if argv is None else argv
        command = " ".join(["python", "benchmarks/bench_models.py", *map(shlex.quote, argv)])
        return run(args, mode, settings, families, command)
    finally:  # main() is also called in-process by the tests
        torch.set_num_threads(threads)
        transformers.logging.set_verbosity(verbosity)


def run(args, mode, settings, families, command) -> dict:
    """Every benchmark of one invocation; prints the table and writes the JSON and markdown files."""
    started = time.perf_counter()
    result = dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        mode=mode,
        command=command,
        machine=machine_info(),
        load_average_start=load_average(),
        settings=settings,
        targets=TARGETS,
        formulas=dict(
            train_flops_per_token="6*N + 12*L*T*d (N = Linear/Conv1D weights incl. LM head, L layers, T seq, "
                                  "d = heads*head_dim)",
            mfu="train_flops_per_token * tokens_per_s / matmul_peak",
            peak_step_mb="max over one training step of live torch tensor bytes allocated since the step began "
                         "(torch.profiler profile_memory events); params and AdamW state not included",
        ),
        train=[],
        generation=[],
        static_cache=[],
        compile=[],
    )
    peaks = [measure_matmul_peak(settings["matmul_n"])]
    log(f"[bench] mode={mode} matmul peak {peaks[0]:.1f} GFLOP/s")

    if not args.no_train:
        for family in families:
            for size in settings["sizes"]:
                attns = settings["attns"] if size == "micro" else settings["mini_attns"]
                log(f"[bench] train {family} {size} {attns} ({time.perf_counter() - started:.0f} s)")
                warmup = settings["warmup"] if size == "micro" else settings["mini_warmup"]
                result["train"] += bench_train(family, size, attns, settings["batch"], settings["seq"], warmup,
                                               settings["repeats"], args.vocab_size, peaks[0],
                                               memory=not args.no_memory)
    if not args.no_generate:
        for family in [f for f in families if f in DECODERS]:
            for size in settings["gen_sizes"]:
                batches = settings["gen_batches"] if size == "micro" else settings["mini_gen_batches"]
                log(f"[bench] generate {family} {size} batches {batches} ({time.perf_counter() - started:.0f} s)")
                result["generation"] += bench_generate(family, size, batches, settings["gen_uncached_batches"],
                                                       settings["gen_tokens"], settings["prompt"],
                                                       settings["gen_repeats"], settings["gen_uncached_repeats"],
                                                       args.vocab_size,
                                                       None if size == "micro" else settings["mini_uncached_tokens"])
    if args.static_cache:
        for family in [f for f in families if f in DECODERS]:
            for size in settings["gen_sizes"]:
                log(f"[bench] static cache + compile {family} {size} ({time.perf_counter() - started:.0f} s)")
                result["static_cache"].append(bench_static_cache(family, size, settings["prompt"], settings["gen_tokens"],
                                                                 settings["gen_repeats"], args.vocab_size))
    if args.compile:
        for family in [f for f in families if f in DECODERS]:
            log(f"[bench] torch.compile {family} micro")
            try:
                result["compile"].append(bench_compile(family, "micro", settings["batch"], settings["seq"],
                                                       settings["warmup"], settings["repeats"], args.vocab_size,
                                                       peaks[0]))
            except Exception as error:  # inductor needs a working C++ toolchain; report instead of crashing
                result["compile"].append(dict(family=family, size="micro", preset=PRESETS[family, "micro"],
                                              error=f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"))

    # a second peak measurement: the MFU denominator is the best of both, so the machine's load is not flattering
    peaks.append(measure_matmul_peak(settings["matmul_n"]))
    peak = max(peaks)
    result["matmul_peak_gflops"] = peak
    result["matmul_peak_gflops_samples"] = peaks
    for row in result["train"]:
        for who in ("ours", "native"):
            row[f"{who}_mfu"] = row["flops_per_token"] * row[f"{who}_tokens_per_s"] / (peak * 1e9)
    result["load_average_end"] = load_average()
    result["wall_seconds"] = time.perf_counter() - started

    write_results(result, markdown(result), args.out, mode)
    return result


def write_results(result: dict, table: str, out: Path, mode: str, prefix: str = "") -> Path:
    """Print the table; write `out/<prefix><UTC stamp>_<mode>.json` and `out/latest_<prefix><mode>.md`."""
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    json_path = out / f"{prefix}{stamp}_{mode}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    (out / f"latest_{prefix}{mode}.md").write_text(table)
    log(f"[bench] wrote {json_path} and {out / f'latest_{prefix}{mode}.md'}")
    return json_path


if __name__ == "__main__":
    main()

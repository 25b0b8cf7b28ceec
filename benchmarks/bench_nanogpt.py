"""Our GPT against nanoGPT's: the same weights, the same batch, training steps timed side by side.

nanoGPT (karpathy/nanoGPT, `model.py`) is the readable GPT-2 most learners start from, and scratchformers' GPT
family uses its parameter names. For every size, our `GPTForCausalLM` and nanoGPT's `GPT` are built with the same
shape, nanoGPT gets our weights (`load_state_dict`, strict: the names match one to one), and three models are timed
round-robin in one process (the order rotated every round), so a busy machine slows all alike:

- ours as a user gets it (`hidden_act="gelu_pytorch_tanh"`, GPT-2's tanh GELU in one fused kernel);
- nanoGPT as it ships (`nn.GELU()`, the exact erf GELU; SDPA with `is_causal=True`; bias everywhere; tied head);
- the control: ours with `hidden_act="gelu"`, the same function as nanoGPT, whose logits and loss are first checked
  to match nanoGPT's to 1e-5 (the two models then compute the same thing, and the ratio is the code alone).

A step is forward with the loss on every position, backward, `AdamW(fused=True).step()` (what `Trainer` uses on
CPU; the same optimizer for both, nanoGPT's own `configure_optimizers` only fuses on CUDA) and `zero_grad`, fp32,
dropout 0.0. Ours gets `labels=input_ids` and shifts inside; nanoGPT gets the shifted targets with -1 (its ignore
index) at the last position, so both score the same T-1 positions of every row.

    python benchmarks/bench_nanogpt.py                       # micro, mini, small, gpt2 (12 x 768): ~5 min on 2 cores
    python benchmarks/bench_nanogpt.py --sizes micro,mini --repeats 3
    python benchmarks/bench_nanogpt.py --smoke               # seconds; what tests/test_benchmarks.py runs
    python benchmarks/bench_nanogpt.py --nanogpt-dir ~/src/nanoGPT   # another nanoGPT version

nanoGPT's `model.py` is read from `benchmarks/peers/nanogpt/` (copied unchanged at commit 3adf61e1, MIT) unless
`--nanogpt-dir` names a checkout. gpt2-xl (1.5B parameters) is left out: its fp32 weights, gradients and AdamW
state (24 GB) do not fit in this machine's memory twice.
"""

import argparse
import contextlib
import datetime
import importlib.util
import io
import shlex
import sys
import time
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import (  # noqa: E402
    fmt_ratio, interleaved, load_average, machine_info, make_optimizer, write_results,
)

import scratchformers as sf  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PEER_DIR = Path(__file__).resolve().parent / "peers" / "nanogpt"
SIZES = {"micro": "gpt-micro", "mini": "gpt-mini", "small": "gpt-small", "gpt2": "gpt2"}
TARGET = 1.0  # issue 26: our GPT step at least as fast as nanoGPT's at every size
PARITY_ATOL = 1e-5


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def load_nanogpt(folder: Path):
    """nanoGPT's `model` module from `folder/model.py`, with a clear error when it is not there."""
    path = Path(folder) / "model.py"
    if not path.is_file():
        raise SystemExit(f"No nanoGPT model.py in {str(folder)!r}: pass --nanogpt-dir PATH to a clone of "
                         "https://github.com/karpathy/nanoGPT (or leave it out to use benchmarks/peers/nanogpt).")
    spec = importlib.util.spec_from_file_location("nanogpt_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_trio(nanogpt, preset: str, vocab_size: int, seed: int = 0):
    """Ours (fused tanh GELU), nanoGPT's GPT and ours with the exact GELU (control), all with the same weights."""
    torch.manual_seed(seed)
    common = dict(vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, hidden_dropout=0.0, embedding_dropout=0.0,
                  attention_dropout=0.0)
    ours = sf.GPTForCausalLM(sf.GPTConfig.from_preset(preset, **common))
    control = sf.GPTForCausalLM(sf.GPTConfig.from_preset(preset, hidden_act="gelu", **common))
    control.load_state_dict(ours.state_dict())
    c = ours.config
    peer_config = nanogpt.GPTConfig(block_size=c.max_position_embeddings, vocab_size=c.vocab_size,
                                    n_layer=c.num_hidden_layers, n_head=c.num_attention_heads, n_embd=c.hidden_size,
                                    dropout=0.0, bias=True)
    with contextlib.redirect_stdout(io.StringIO()):  # its parameter count; the table has ours
        peer = nanogpt.GPT(peer_config)
    peer.load_state_dict(ours.state_dict(), strict=True)
    for model in (ours, control, peer):
        model.train()
    return ours, peer, control


def shifted_targets(batch: torch.Tensor) -> torch.Tensor:
    """nanoGPT's targets for `batch`: the next token, -1 (ignored) at the last position, as ours shifts labels."""
    return torch.cat([batch[:, 1:], torch.full_like(batch[:, :1], -1)], dim=1)  # (B, T)


def check_parity(peer, control, batch) -> float:
    """Largest |logit difference| of nanoGPT and our exact-GELU control on `batch`; raises above PARITY_ATOL."""
    with torch.no_grad():
        peer_logits, peer_loss = peer(batch, shifted_targets(batch))
        out = control(input_ids=batch, labels=batch)
    diff = (peer_logits - out.logits).abs().max().item()
    loss_diff = abs(peer_loss.item() - out.loss.item())
    if diff > PARITY_ATOL or loss_diff > PARITY_ATOL:
        raise SystemExit(f"nanoGPT and our GPT (exact GELU) disagree on the same weights: max |logit diff| {diff:.2e},"
                         f" |loss diff| {loss_diff:.2e} (> {PARITY_ATOL}); the timing would compare different models.")
    return diff


def bench_size(nanogpt, size: str, batch: int, seq: int, vocab_size: int, warmup: int, repeats: int) -> dict:
    preset = SIZES[size]
    ours, peer, control = build_trio(nanogpt, preset, vocab_size)
    torch.manual_seed(1)
    data = torch.randint(0, vocab_size, (batch, seq))
    targets = shifted_targets(data)
    diff = check_parity(peer, control, data)
    optimizers = {name: make_optimizer(model) for name, model in (("ours", ours), ("nanogpt", peer),
                                                                   ("control", control))}

    def step_ours(model, optimizer):
        model(input_ids=data, labels=data).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def step_peer():
        peer(data, targets)[1].backward()
        optimizers["nanogpt"].step()
        optimizers["nanogpt"].zero_grad(set_to_none=True)

    steps = {"ours": lambda: step_ours(ours, optimizers["ours"]), "nanogpt": step_peer,
             "control": lambda: step_ours(control, optimizers["control"])}
    seconds = interleaved(steps, warmup, repeats, rotate=True)
    tps = {name: batch * seq / s for name, s in seconds.items()}
    return dict(size=size, preset=preset, params=sum(p.numel() for p in ours.parameters()), batch=batch, seq=seq,
                max_abs_logit_diff=diff, ms_per_step={k: 1000 * v for k, v in seconds.items()},
                tokens_per_s=tps, ratio=tps["ours"] / tps["nanogpt"], control_ratio=tps["control"] / tps["nanogpt"],
                target=TARGET)


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"Training step, ours vs nanoGPT (`model.py` from {result['nanogpt']}), fp32, dropout 0.0, fused AdamW, "
        f"median of {result['settings']['repeats']} rotated round-robin repeats after "
        f"{result['settings']['warmup']} warmup; {m['cpu']}, {m['torch_threads']} torch threads, torch {m['torch']}, "
        f"{result['date']}.",
        "",
        "| size | params | batch x seq | ours tokens/s | nanoGPT tokens/s | ours / nanoGPT | ours, exact GELU "
        "(control) / nanoGPT | max \\|logit diff\\| (control) |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        t = row["tokens_per_s"]
        lines.append(f"| {row['preset']} | {row['params'] / 1e6:.2f}M | {row['batch']} x {row['seq']} | "
                     f"{t['ours']:,.0f} | {t['nanogpt']:,.0f} | {fmt_ratio(row['ratio'], row['target'])} | "
                     f"{fmt_ratio(row['control_ratio'])} | {row['max_abs_logit_diff']:.1e} |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="micro,mini,small,gpt2", help=f"comma-separated of {', '.join(SIZES)}")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--vocab-size", type=int, default=8192, help="vocabulary of both models (default 8192)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=6,
                        help="timed repeats per model (a multiple of 3 puts every model in every place)")
    parser.add_argument("--smoke", action="store_true", help="micro, batch 2 x 32, 1 repeat: seconds")
    parser.add_argument("--nanogpt-dir", type=Path, default=PEER_DIR, help="folder holding nanoGPT's model.py")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON and markdown results")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.smoke:
        args.sizes, args.batch, args.seq, args.warmup, args.repeats = "micro", 2, 32, 1, 1
    sizes = args.sizes.split(",")
    bad = [s for s in sizes if s not in SIZES]
    if bad:
        raise SystemExit(f"Unknown size {bad[0]!r}; choose from {', '.join(SIZES)}.")
    nanogpt = load_nanogpt(args.nanogpt_dir)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    argv = sys.argv[1:] if argv is None else argv
    result = dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        command=" ".join(["python", "benchmarks/bench_nanogpt.py", *map(shlex.quote, argv)]),
        nanogpt=str(args.nanogpt_dir.resolve() if args.nanogpt_dir != PEER_DIR else "benchmarks/peers/nanogpt"),
        machine=machine_info(),
        transformers=transformers.__version__,
        load_average_start=load_average(),
        settings=dict(sizes=sizes, batch=args.batch, seq=args.seq, vocab_size=args.vocab_size, warmup=args.warmup,
                      repeats=args.repeats),
        rows=[],
    )
    started = time.perf_counter()
    try:
        for size in sizes:
            log(f"[nanogpt] {size} ({time.perf_counter() - started:.0f} s)")
            result["rows"].append(bench_size(nanogpt, size, args.batch, args.seq, args.vocab_size, args.warmup,
                                             args.repeats))
    finally:
        torch.set_num_threads(threads)
    result["load_average_end"] = load_average()
    result["wall_seconds"] = time.perf_counter() - started
    write_results(result, markdown(result), args.out, "smoke" if args.smoke else "full", prefix="nanogpt_")
    return result


if __name__ == "__main__":
    main()

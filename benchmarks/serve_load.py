"""Load on `scratchformers serve` with the real `openai` async client: 1, 8 and 32 concurrent clients, beside
`python -m llama_cpp.server` on the GGUF export of the same model.

For each preset (a small and a mid-size LLaMA2, random weights: the speed of a model does not depend on what it
learned), the script saves the model with a BPE tokenizer, starts the server as a user would (the command line, in a
process of its own), and lets N clients each send --requests-per-client streamed completions one after the other
(greedy, max_tokens fixed). It reports requests/s, generated tokens/s (from the servers' usage counts), latency and
time to first token (p50/p99), and failed requests. Then the same load against llama.cpp's OpenAI server on the f16
GGUF of that model, where llama-cpp-python[server] is installed (with `--interrupt_requests False`: by default
it cuts the answer being streamed short whenever a new request arrives; and `repeat_penalty` 1.0 for plain greedy
decoding as ours). llama.cpp's server generates one request at a time.

Target (issue 24): 32 clients served with no failed request, aggregate tokens/s >= 4x the single client's.

Run from the repository root (about 6 minutes; nothing else should run on the machine meanwhile):
    python benchmarks/serve_load.py                         # writes benchmarks/results/serve_load_<date>.json
    python benchmarks/serve_load.py --quick                 # smoke size, under a minute
"""

import argparse
import asyncio
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {"small": "llama2-tiny", "mid": "llama2-mini"}
PROMPTS = ["Once upon a time", "The little dog", "Tom and Mia went to", "One day, a bird", "The sun was",
           "She found a box", "In the park there was", "The cat said"]


def log(*args):
    print(f"[serve_load {time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_model(preset: str, folder: Path, context: int) -> Path:
    """A random-weight model of `preset` with a 2,000-token BPE tokenizer trained on the synthetic stories."""
    from transformers import AutoModelForCausalLM

    import scratchformers  # noqa: F401
    from scratchformers.tokenization_scratch import train_tokenizer
    from scratchformers.training.synthetic import make_story_corpus
    from scratchformers.utils import config_from_preset

    text = folder / "stories.txt"
    text.write_text("\n".join(make_story_corpus(2000)), encoding="utf-8")
    tokenizer = train_tokenizer([text], vocab_size=2000, show_progress=False)
    config = config_from_preset(preset, vocab_size=len(tokenizer), max_position_embeddings=context,
                                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    out = folder / preset
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    import urllib.error
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s")


async def load(base_url: str, model: str, clients: int, requests_per_client: int, max_tokens: int,
               extra_body: dict | None = None) -> dict:
    """`clients` concurrent clients, each sending `requests_per_client` streamed completions in turn. Tokens are the
    server's usage count where it sends one (`stream_options`), else the streamed chunks that carry text (one token
    each in llama.cpp's server, which sends no usage when streaming)."""
    import openai

    latencies, first_tokens, tokens, failures = [], [], 0, []

    async def client_loop(index: int, client) -> None:
        nonlocal tokens
        for r in range(requests_per_client):
            started = time.perf_counter()
            first, counted, chunks = None, None, 0
            try:
                stream = await client.completions.create(
                    model=model, prompt=PROMPTS[(index + r) % len(PROMPTS)], max_tokens=max_tokens, temperature=0,
                    stream=True, stream_options={"include_usage": True}, extra_body=extra_body)
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].text:
                        chunks += 1
                        if first is None:
                            first = time.perf_counter() - started
                    if chunk.usage is not None:
                        counted = chunk.usage.completion_tokens
                tokens += chunks if counted is None else counted
            except Exception as error:
                failures.append(f"{type(error).__name__}: {error}"[:200])
                continue
            latencies.append(time.perf_counter() - started)
            if first is not None:
                first_tokens.append(first)

    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600) as client:
        started = time.perf_counter()
        await asyncio.gather(*[client_loop(i, client) for i in range(clients)])
        seconds = time.perf_counter() - started

    def pct(values, q):
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else (
            values[0] if values else float("nan"))

    return dict(clients=clients, requests=len(latencies), failed=len(failures), failures=failures[:5],
                seconds=seconds, requests_per_s=len(latencies) / seconds, tokens=tokens, tokens_per_s=tokens / seconds,
                latency_p50=pct(latencies, 50), latency_p99=pct(latencies, 99),
                ttft_p50=pct(first_tokens, 50), ttft_p99=pct(first_tokens, 99))


def run_server(command: list[str], health: str, base_url: str, model: str, levels, per_client, max_tokens,
               log_file: Path, extra_body: dict | None = None) -> list[dict]:
    with open(log_file, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            wait_until_up(health, process)
            asyncio.run(load(base_url, model, 1, 1, 4))  # warm-up
            rows = []
            for clients in levels:
                row = asyncio.run(load(base_url, model, clients, per_client, max_tokens, extra_body))
                log(f"{clients:>2} clients: {row['tokens_per_s']:.0f} tokens/s, {row['requests_per_s']:.2f} req/s, "
                    f"p50 {row['latency_p50']:.2f}s, p99 {row['latency_p99']:.2f}s, TTFT p50 {row['ttft_p50']:.3f}s, "
                    f"failed {row['failed']}")
                rows.append(row)
            return rows
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small preset only, fewer requests")
    parser.add_argument("--sizes", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--requests-per-client", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--no-llama-cpp", action="store_true", help="skip llama_cpp.server")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.requests_per_client, args.max_tokens, args.clients = ["small"], 1, 16, [1, 8]

    results = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                   machine=f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
                   argv=sys.argv[1:], settings=vars(args), runs=[])
    try:
        import llama_cpp.server  # noqa: F401

        has_llama_cpp = not args.no_llama_cpp
    except ImportError:
        has_llama_cpp = False
        log("llama-cpp-python[server] is not installed: llama_cpp.server is skipped")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            preset = PRESETS[size]
            folder = make_model(preset, Path(tmp), args.context)
            port = free_port()
            log(f"{preset}: scratchformers serve")
            rows = run_server(
                [sys.executable, "-m", "scratchformers.cli", "serve", str(folder), "--port", str(port),
                 "--served-model-name", preset, "--log-level", "warning", "--max-concurrent-requests", "32"],
                f"http://127.0.0.1:{port}/health", f"http://127.0.0.1:{port}/v1", preset, args.clients,
                args.requests_per_client, args.max_tokens, Path(tmp) / f"{preset}-serve.log")
            results["runs"].append(dict(server="scratchformers serve", preset=preset, rows=rows))
            if has_llama_cpp:
                from scratchformers.gguf_export import export_gguf

                gguf = export_gguf(folder, Path(tmp) / f"{preset}.gguf", dtype="f16")
                port = free_port()
                log(f"{preset}: llama_cpp.server")
                rows = run_server(
                    [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--port", str(port),
                     "--model_alias", preset, "--n_ctx", str(args.context), "--n_threads", str(os.cpu_count() or 1),
                     # by default a new request interrupts the one being streamed: answers would be cut short
                     "--interrupt_requests", "False"],
                    f"http://127.0.0.1:{port}/v1/models", f"http://127.0.0.1:{port}/v1", preset, args.clients,
                    args.requests_per_client, args.max_tokens, Path(tmp) / f"{preset}-llama-cpp.log",
                    extra_body={"repeat_penalty": 1.0})  # its default 1.1 would change the greedy answers
                results["runs"].append(dict(server="llama_cpp.server", preset=preset, rows=rows))

    print(f"\n{'server':<22} {'preset':<12} {'clients':>7} {'req/s':>7} {'tok/s':>8} {'x1':>6} {'p50 s':>7} "
          f"{'p99 s':>7} {'TTFT p50':>9} {'TTFT p99':>9} {'failed':>6}")
    for run in results["runs"]:
        single = run["rows"][0]["tokens_per_s"]
        for row in run["rows"]:
            row["speedup_over_one_client"] = row["tokens_per_s"] / single
            print(f"{run['server']:<22} {run['preset']:<12} {row['clients']:>7} {row['requests_per_s']:>7.2f} "
                  f"{row['tokens_per_s']:>8.0f} {row['speedup_over_one_client']:>6.2f} {row['latency_p50']:>7.2f} "
                  f"{row['latency_p99']:>7.2f} {row['ttft_p50']:>9.3f} {row['ttft_p99']:>9.3f} {row['failed']:>6}")
    ours = [row for run in results["runs"] if run["server"] == "scratchformers serve" for row in run["rows"]
            if row["clients"] == max(args.clients)]
    met = all(row["failed"] == 0 and row["speedup_over_one_client"] >= 4 for row in ours)
    print(f"\ntarget ({max(args.clients)} clients, no failure, tokens/s >= 4x one client): {'met' if met else 'MISSED'}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out / f"serve_load_{stamp}{'_quick' if args.quick else ''}.json"
    path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"results: {path}")


if __name__ == "__main__":
    main()

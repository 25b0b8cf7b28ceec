"""The benchmark entry point keeps working: its smallest mode runs end to end and writes complete results."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_models.py"


def load_bench(name: str = "bench_models"):
    """A script of benchmarks/ as a module."""
    spec = importlib.util.spec_from_file_location(name, BENCH.with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_smoke_mode_writes_every_row_with_matching_greedy_tokens(tmp_path):
    bench = load_bench()
    result = bench.main(["--smoke", "--out", str(tmp_path)])

    written = sorted(tmp_path.glob("*_smoke.json"))
    assert len(written) == 1
    saved = json.loads(written[0].read_text())
    assert saved["mode"] == "smoke" and saved["command"].endswith("--smoke --out " + str(tmp_path))
    assert saved["machine"]["cores"] >= 1 and saved["machine"]["torch"] and saved["machine"]["transformers"]
    assert (tmp_path / "latest_smoke.md").read_text().count("\n| gpt-micro vs GPT2LMHeadModel") >= 2

    assert saved["matmul_peak_gflops"] > 0
    assert {(r["family"], r["attn"]) for r in result["train"]} == {("gpt", "sdpa"), ("llama2", "sdpa"), ("bert", "sdpa")}
    # BERT: the same computation as native BertForMaskedLM, and the sparse_prediction step pretrain runs
    assert sorted(r["control"] for r in result["train"] if r["family"] == "bert") == [False, True]
    assert all(r["native"] == "BertForMaskedLM" for r in result["train"] if r["family"] == "bert")
    for row in saved["train"]:
        for key in ("ours_tokens_per_s", "native_tokens_per_s", "ours_mfu", "ours_peak_step_mb", "ratio"):
            assert math.isfinite(row[key]) and row[key] > 0, (key, row)
        assert row["flops_per_token"] > 6 * row["matmul_params"]

    # same weights, same greedy decoding: ours and native must produce identical tokens, cached or not
    assert {(r["family"], r["cache"]) for r in saved["generation"]} == {
        ("gpt", True), ("gpt", False), ("llama2", True), ("llama2", False)
    }
    assert all(r["same_tokens"] for r in saved["generation"])
    assert all(r["ours_cached_vs_uncached"] > 0 for r in saved["generation"] if r["cache"])


def test_train_flops_formula_counts_linear_weights_and_attention():
    bench = load_bench()
    ours, native = bench.build_pair("llama2", "micro", "sdpa", vocab_size=300)
    c = ours.config
    per_layer = 2 * c.hidden_size * c.hidden_size + 2 * c.hidden_size * c.num_key_value_heads * c.head_dim
    per_layer += 3 * c.hidden_size * c.intermediate_size
    n = c.num_hidden_layers * per_layer + c.vocab_size * c.hidden_size  # + untied LM head
    assert bench.matmul_params(ours) == bench.matmul_params(native) == n
    assert bench.train_flops_per_token(ours, 64) == 6 * n + 12 * c.num_hidden_layers * 64 * c.hidden_size


def test_native_gpt2_uses_its_default_gelu_new_and_the_control_our_fused_gelu_with_the_same_weights():
    import torch
    import transformers

    bench = load_bench()
    assert transformers.GPT2Config().activation_function == bench.NATIVE_GPT_ACT == "gelu_new"
    ours, native = bench.build_pair("gpt", "micro", "sdpa", vocab_size=300)
    control = bench.build_pair("gpt", "micro", "sdpa", vocab_size=300, control=True)[1]
    assert ours.config.hidden_act == control.config.activation_function == "gelu_pytorch_tanh"
    assert native.config.activation_function == "gelu_new"
    for model in (native, control):
        assert (model.config.resid_pdrop, model.config.embd_pdrop, model.config.attn_pdrop) == (0.0, 0.0, 0.0)
    assert (ours.config.hidden_dropout, ours.config.embedding_dropout, ours.config.attention_dropout) == (0, 0, 0)

    ids = torch.randint(3, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = [m.eval()(input_ids=ids).logits for m in (ours, native, control)]
    assert torch.equal(logits[0], logits[2])  # same kernels, same weights
    assert (logits[0] - logits[1]).abs().max() < 1e-5  # the two tanh-GELU formulas differ only by rounding


def test_runtimes_benchmark_measures_every_installed_runtime_against_pytorch_fp32(tmp_path):
    """benchmarks/runtimes.py on a tiny model: one row per runtime that is installed here, each with its file size,
    speed, greedy agreement with PyTorch fp32 and validation loss; PyTorch fp32 agrees with itself."""
    import importlib.util as util
    import shutil

    from transformers import AutoModelForCausalLM

    import scratchformers as sf
    from scratchformers.tokenization_scratch import train_tokenizer_from_iterator

    text = "\n".join(f"Line {i}: the cat sat on the mat and looked at the dog." for i in range(40))
    (tmp_path / "val.txt").write_text(text)
    tokenizer = train_tokenizer_from_iterator([text], vocab_size=300)
    config = sf.config_from_preset("llama2-tiny", vocab_size=len(tokenizer), num_hidden_layers=2,
                                   max_position_embeddings=64, bos_token_id=tokenizer.bos_token_id,
                                   eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    runtimes = load_bench("runtimes")
    record = runtimes.main([str(tmp_path / "model"), "--validation_file", str(tmp_path / "val.txt"), "--prompts", "3",
                            "--max_new_tokens", "4", "--validation_chars", "600", "--results_dir", str(tmp_path / "out")])

    names = [row["runtime"] for row in record["rows"]]
    expected = 1 + bool(util.find_spec("torchao")) + 2 * bool(util.find_spec("llama_cpp"))
    expected += 2 * bool(shutil.which("node") and (BENCH.parents[1] / "js" / "node_modules").is_dir())
    assert names[0] == "PyTorch fp32 generate()" and len(names) == expected, names
    assert record["rows"][0]["identical"] == "3/3" and record["rows"][0]["matching_prefix"] == 1.0
    for row in record["rows"]:
        assert row["size_mb"] > 0 and row["tokens_per_s"] > 0 and math.isfinite(row["nats_per_char"]), row
        assert 0.0 <= row["matching_prefix"] <= 1.0
    fp32 = record["rows"][0]["nats_per_char"]
    assert all(abs(row["nats_per_char"] - fp32) < 0.05 for row in record["rows"])  # the same model in each runtime
    assert len(list((tmp_path / "out").glob("runtimes_*.json"))) == 1


def test_nanogpt_benchmark_checks_parity_on_the_same_weights_then_times_both(tmp_path):
    bench = load_bench("bench_nanogpt")
    result = bench.main(["--smoke", "--out", str(tmp_path)])

    (row,) = result["rows"]
    assert row["preset"] == "gpt-micro" and row["max_abs_logit_diff"] <= 1e-5
    for key in ("ours", "nanogpt", "control"):
        assert math.isfinite(row["tokens_per_s"][key]) and row["tokens_per_s"][key] > 0
    assert row["ratio"] == row["tokens_per_s"]["ours"] / row["tokens_per_s"]["nanogpt"]
    assert json.loads(next(tmp_path.glob("nanogpt_*_smoke.json")).read_text())["rows"][0]["size"] == "micro"
    assert "| gpt-micro |" in (tmp_path / "latest_nanogpt_smoke.md").read_text()

    # the check that makes the timing meaningful fails loudly when the models differ
    nanogpt = bench.load_nanogpt(bench.PEER_DIR)
    ours, peer, control = bench.build_trio(nanogpt, "gpt-micro", vocab_size=64)
    with torch.no_grad():
        peer.transformer.ln_f.bias.add_(0.1)
    with pytest.raises(SystemExit, match="disagree on the same weights"):
        bench.check_parity(peer, control, torch.randint(0, 64, (2, 16)))
    with pytest.raises(SystemExit, match="No nanoGPT model.py in"):
        bench.load_nanogpt(tmp_path)


@pytest.fixture
def speedrun_data(tmp_path):
    """A folder standing in for ../shared/data: tinyshakespeare replaced by a small synthetic story corpus."""
    from scratchformers.training.synthetic import make_story_corpus

    data = tmp_path / "shared"
    data.mkdir()
    (data / "en_tinyshakespeare.txt").write_text("\n\n".join(make_story_corpus(120, seed=5)) + "\n", encoding="utf-8")
    return data


def run_speedrun(tmp_path, data, *flags) -> dict:
    """`speedrun.py --budget 2s --runs recipe FLAGS` on the stand-in corpus, its folders under tmp_path."""
    return load_bench("speedrun").main([
        "--budget", "2s", "--runs", "recipe", *flags, "--data_dir", str(data),
        "--output_dir", str(tmp_path / "work"), "--results_dir", str(tmp_path / "results"),
    ])


def test_speedrun_repeats_each_command_and_records_the_spread(tmp_path, speedrun_data):
    with pytest.raises(SystemExit, match="--repeats must be at least 1, got 0"):
        run_speedrun(tmp_path, speedrun_data, "--repeats", "0")

    record = run_speedrun(tmp_path, speedrun_data, "--repeats", "2")

    assert [r["repeat"] for r in record["results"]] == [1, 2]
    assert {Path(r["output_dir"]).name for r in record["results"]} == {"recipe_2s_1", "recipe_2s_2"}
    values = [r["nats_per_char"] for r in record["results"]]
    (group,) = record["spread"]
    assert group["repeats"] == 2 and group["min"] == min(values) and group["max"] == max(values)
    assert group["mean"] == pytest.approx(sum(values) / 2)
    assert json.loads(next((tmp_path / "results").glob("speedrun_*_2s.json")).read_text())["repeats"] == 2


def test_speedrun_ensemble_trains_seeds_side_by_side_and_scores_their_mixture(tmp_path, speedrun_data):
    from transformers import AutoModelForCausalLM

    from scratchformers.tokenization_scratch import load_tokenizer
    from scratchformers.training.common import load_pretrained, nats_per_character

    with pytest.raises(SystemExit, match="--ensemble must be at least 1, got 0"):
        run_speedrun(tmp_path, speedrun_data, "--ensemble", "0")

    record = run_speedrun(tmp_path, speedrun_data, "--ensemble", "2")

    (result,) = record["results"]
    assert result["run"] == "recipe x2 ensemble" and record["ensemble"] == 2
    folders = [Path(m["output_dir"]) for m in result["members"]]
    assert [f.name for f in folders] == ["member1", "member2"]
    seeds = [torch.load(f / "training_args.bin", weights_only=False).seed for f in folders]
    assert seeds == [1, 2]
    members = [m["nats_per_char"] for m in result["members"]]
    assert members[0] != members[1]  # different seeds, different models
    assert result["nats_per_char"] < sum(members) / 2  # the mixture beats its members' mean
    models = [load_pretrained(str(f), AutoModelForCausalLM) for f in folders]
    validation = (tmp_path / "work" / "data" / "tinyshakespeare" / "validation.txt").read_text(encoding="utf-8")
    again = nats_per_character(models, load_tokenizer(str(folders[0])), [validation])
    assert again["nats_per_char"] == pytest.approx(result["nats_per_char"], rel=1e-6)

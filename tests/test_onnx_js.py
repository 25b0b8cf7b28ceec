"""ONNX export with the KV cache, and the same greedy tokens from PyTorch, Node.js (transformers.js with
onnxruntime-node) and a real headless Chromium page; bad input is refused before anything is written.

The JavaScript side needs `npm ci` in js/ and, for the page, Debian's chromium. Without them those tests skip, unless
SCRATCHFORMERS_REQUIRE_JS=1 (set by .ci/run), which makes a missing piece a failure.
"""

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import scratchformers  # noqa: F401  (registers the Auto classes)
from conftest import assert_keeps_a_folder_it_did_not_write, assert_refuses_bad_model_folders, train_small_model
from scratchformers.generation import prompt_ids
from scratchformers.onnx_export import export_onnx
from scratchformers.tokenization_scratch import load_tokenizer
from scratchformers.training.common import load_pretrained
from scratchformers.training.synthetic import make_story_corpus

ROOT = Path(__file__).resolve().parents[1]
JS = ROOT / "js"
ARTIFACTS = ROOT / "test-artifacts"
PROMPTS = [
    "Once upon a time",
    "小猫和小狗在公园里玩。",  # Chinese: bytes the English stories never merged
    # longer than one cache step: the prompt fills the cache, every new token extends it
    "Lily had a red ball. She went to the park with her dog. The dog ran after the ball and Lily laughed. Then",
]


def require(condition: bool, what: str):
    if condition:
        return
    if os.environ.get("SCRATCHFORMERS_REQUIRE_JS") == "1":
        pytest.fail(f"{what} is missing, and SCRATCHFORMERS_REQUIRE_JS=1")
    pytest.skip(f"{what} is missing (install it to run this test)")


def node_ready():
    require(shutil.which("node") is not None, "Node.js")
    require((JS / "node_modules" / "@huggingface" / "transformers").is_dir(), "js/node_modules (npm ci in js/)")


@pytest.fixture(scope="module", params=["gpt-micro", "llama2-tiny"])
def exported(request, tmp_path_factory):
    """A small model of each family, trained a little on stories (so greedy decoding is not one repeated token),
    and its ONNX export."""
    folder = tmp_path_factory.mktemp(request.param)
    train_small_model(folder, request.param, "\n\n".join(make_story_corpus(300, seed=8)) + "\n", vocab_size=400)
    export_onnx(folder / "model", folder / "onnx_export")
    return folder / "model", folder / "onnx_export"


def torch_greedy(model_dir, prompt, max_new_tokens=32):
    model, tokenizer = load_pretrained(model_dir).eval(), load_tokenizer(model_dir)
    ids = prompt_ids(tokenizer, prompt)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return ids[0].tolist(), out[0, ids.shape[1]:].tolist()


def node_greedy(export_dir, prompt, max_new_tokens=32, dtype="fp32"):
    result = subprocess.run(
        ["node", str(JS / "generate.mjs"), str(export_dir), prompt, "--max-new-tokens", str(max_new_tokens),
         "--dtype", dtype, "--json"], capture_output=True, text=True, timeout=300, cwd=JS,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_export_folder_is_what_transformers_js_loads(exported):
    model_dir, export_dir = exported
    files = {p.relative_to(export_dir).as_posix() for p in export_dir.rglob("*") if p.is_file()}
    assert {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "onnx/model.onnx", "onnx/model_quantized.onnx"} <= files
    config = json.loads((export_dir / "config.json").read_text())
    assert config["model_type"] in ("gpt2", "llama")  # the native counterpart, which transformers.js knows
    tokenizer_config = json.loads((export_dir / "tokenizer_config.json").read_text())
    assert tokenizer_config["chat_template"] == (model_dir / "chat_template.jinja").read_text()
    assert (export_dir / "onnx" / "model_quantized.onnx").stat().st_size < 0.6 * (export_dir / "onnx" / "model.onnx").stat().st_size


def test_onnx_first_step_logits_match_pytorch(exported):
    import onnxruntime

    model_dir, export_dir = exported
    model = load_pretrained(model_dir).eval()
    session = onnxruntime.InferenceSession(str(export_dir / "onnx" / "model.onnx"))
    ids = prompt_ids(load_tokenizer(model_dir), PROMPTS[2])  # (1, T)
    feeds = {"input_ids": ids.numpy(), "attention_mask": np.ones_like(ids.numpy()),
             "position_ids": np.arange(ids.shape[1])[None]}
    for item in session.get_inputs()[3:]:  # the empty cache of the first step
        feeds[item.name] = np.zeros([1, item.shape[1], 0, item.shape[3]], np.float32)
    logits = session.run(["logits"], feeds)[0]
    with torch.no_grad():
        expected = model(ids).logits.numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_node_greedy_tokens_equal_pytorch_generate(exported):
    node_ready()
    model_dir, export_dir = exported
    for prompt in PROMPTS:
        prompt_tokens, expected = torch_greedy(model_dir, prompt)
        got = node_greedy(export_dir, prompt)
        assert got["prompt_ids"] == prompt_tokens, prompt
        assert got["new_ids"] == expected, prompt
    quantized = node_greedy(export_dir, PROMPTS[0], dtype="q8")  # int8 runs; its agreement is a benchmark figure
    assert 0 < len(quantized["new_ids"]) <= 32


def test_the_web_page_in_headless_chromium_generates_the_node_tokens(exported):
    node_ready()
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    require(Path(chromium).is_file(), "chromium (apt-get install chromium)")
    import importlib.util

    spec = importlib.util.spec_from_file_location("serve", JS / "web" / "serve.py")
    serve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve)
    model_dir, export_dir = exported
    server = serve.make_server(export_dir, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / f"web-page-{model_dir.parent.name}.png"
    try:
        result = subprocess.run(
            ["node", str(JS / "web" / "browser_check.mjs"), f"http://127.0.0.1:{server.server_address[1]}/",
             PROMPTS[0], "32", str(screenshot)], capture_output=True, text=True, timeout=300, cwd=JS,
            env={**os.environ, "CHROMIUM": chromium},
        )
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr[-2000:]
    page = json.loads(result.stdout.strip().splitlines()[-1])
    assert page["errors"] == [] and page["status"].startswith("Done")
    assert page["new_ids"] == node_greedy(export_dir, PROMPTS[0])["new_ids"]
    assert page["output"].startswith(PROMPTS[0]) and screenshot.stat().st_size > 0


def test_bad_input_is_refused_and_nothing_is_written(exported, tmp_path):
    model_dir, _ = exported
    out = tmp_path / "out"
    (tmp_path / "no_model").mkdir()
    with pytest.raises(ValueError, match="is not a model folder"):
        export_onnx(tmp_path / "no_model", out)
    assert_refuses_bad_model_folders(export_onnx, model_dir, tmp_path, out, "ONNX export")
    assert_keeps_a_folder_it_did_not_write(export_onnx, model_dir, out, "not an ONNX export")


def test_the_cli_exports_and_the_export_pushes_with_the_push_command(exported, tmp_path, capsys):
    from huggingface_hub import ModelCard

    from hub_scripts import stage_model_folder
    from scratchformers.cli import main

    model_dir, _ = exported
    assert main(["export", "onnx", str(model_dir), str(tmp_path / "cli")]) == 0
    assert "node js/generate.mjs" in capsys.readouterr().out
    assert main(["export", "onnx", str(model_dir), str(tmp_path / "cli")]) == 2
    assert "already exists and is not empty; pass --overwrite" in capsys.readouterr().err
    stage_model_folder(tmp_path / "cli", tmp_path / "staged", repo_id="alice/tiny-onnx")
    assert (tmp_path / "staged" / "onnx" / "model_quantized.onnx").is_file()
    card = ModelCard.load(tmp_path / "staged" / "README.md")
    assert card.data.library_name == "transformers.js" and 'pipeline("text-generation", "alice/tiny-onnx"' in card.text


# ------------------------------------------------------------------------------------------------ the encoder (BERT)

ENCODER_TEXTS = ["the cat is playing with a red ball .", "a dog runs in the park and plays with the cat .",
                 "小猫在公园里玩。房间很干净！", "the movie was good and the acting was great ."] * 30


@pytest.fixture(scope="module")
def exported_bert(tmp_path_factory):
    """A bert-tiny pretrained for a few masked-LM steps, a classifier made from it, and the ONNX export of each."""
    from transformers import AutoModelForSequenceClassification

    from scratchformers.cli import main

    folder = tmp_path_factory.mktemp("bert")
    (folder / "corpus.txt").write_text("\n\n".join(ENCODER_TEXTS), encoding="utf-8")
    assert main(["pretrain", "--preset", "bert-tiny", "--train_files", str(folder / "corpus.txt"), "--output_dir",
                 str(folder / "mlm"), "--max_steps", "40", "--block_size", "32", "--vocab_size", "200",
                 "--validation_split_percentage", "0", "--report_to", "none", "--disable_tqdm", "true"]) == 0
    torch.manual_seed(0)
    classifier = AutoModelForSequenceClassification.from_pretrained(
        folder / "mlm", num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    classifier.save_pretrained(folder / "cls")
    load_tokenizer(folder / "mlm").save_pretrained(folder / "cls")
    for name in ("mlm", "cls"):
        export_onnx(folder / name, folder / f"{name}_onnx")
    return folder


def node_pipeline(export_dir, task, text, dtype="fp32"):
    result = subprocess.run(["node", str(JS / "encode.mjs"), str(export_dir), task, text, "--top-k", "3", "--dtype",
                             dtype], capture_output=True, text=True, timeout=300, cwd=JS)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_bert_exports_are_what_transformers_js_loads(exported_bert):
    for name, architecture in (("mlm_onnx", "BertForMaskedLM"), ("cls_onnx", "BertForSequenceClassification")):
        config = json.loads((exported_bert / name / "config.json").read_text())
        assert config["model_type"] == "bert" and config["architectures"] == [architecture]
        assert (exported_bert / name / "onnx" / "model_quantized.onnx").stat().st_size < \
            (exported_bert / name / "onnx" / "model.onnx").stat().st_size
    assert json.loads((exported_bert / "cls_onnx" / "config.json").read_text())["id2label"] == {
        "0": "negative", "1": "positive"}


def test_bert_onnx_logits_match_pytorch_with_padding(exported_bert):
    import onnxruntime
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(exported_bert / "mlm").eval()
    tokenizer = load_tokenizer(exported_bert / "mlm")
    batch = tokenizer(["the cat [MASK] playing .", "小猫在[MASK]园里玩，the dog runs ."], padding=True, return_tensors="pt")
    session = onnxruntime.InferenceSession(str(exported_bert / "mlm_onnx" / "onnx" / "model.onnx"))
    (onnx_logits,) = session.run(None, {k: v.numpy() for k, v in batch.items()})
    with torch.no_grad():
        expected = model(**batch).logits.numpy()
    real = batch["attention_mask"].numpy().astype(bool)
    assert np.abs(onnx_logits[real] - expected[real]).max() < 1e-4


@pytest.mark.parametrize("text", ["the cat is [MASK] with a red ball .", "小猫在公园里[MASK]。"])
def test_node_fill_mask_equals_the_python_pipeline(exported_bert, text):
    from transformers import pipeline

    node_ready()
    expected = pipeline("fill-mask", model=str(exported_bert / "mlm"), top_k=3)(text)
    got = node_pipeline(exported_bert / "mlm_onnx", "fill-mask", text)
    assert [g["token"] for g in got] == [e["token"] for e in expected]
    assert np.allclose([g["score"] for g in got], [e["score"] for e in expected], atol=1e-4)
    assert node_pipeline(exported_bert / "mlm_onnx", "fill-mask", text, dtype="q8")  # int8 runs too


def test_node_text_classification_equals_the_python_pipeline(exported_bert):
    from transformers import pipeline

    node_ready()
    text = "the movie was good and the acting was great ."
    expected = pipeline("text-classification", model=str(exported_bert / "cls"), top_k=2)([text])[0]
    got = node_pipeline(exported_bert / "cls_onnx", "text-classification", text)
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    assert np.allclose([g["score"] for g in got], [e["score"] for e in expected], atol=1e-4)

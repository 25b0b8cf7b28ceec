"""save_pretrained / from_pretrained, Auto classes in-process, and remote code where scratchformers is absent."""

import ast
import json

import torch
from conftest import run_without_scratchformers
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

X = torch.tensor([[5, 17, 33, 9, 71, 12, 3, 250]])


def _logits(model, x=X):
    with torch.no_grad():
        return model(x).logits


def test_round_trip_gives_identical_logits_rope_buffers_and_tied_weights(family, tmp_path):
    model = family.model()
    model.save_pretrained(tmp_path)
    loaded = family.causal_lm.from_pretrained(tmp_path).eval()
    assert torch.equal(_logits(loaded), _logits(model))
    for name, buffer in model.named_buffers():  # non-persistent buffers (RoPE inv_freq) are rebuilt, not garbage
        assert torch.equal(dict(loaded.named_buffers())[name], buffer), name
    tied = loaded.get_output_embeddings().weight is loaded.get_input_embeddings().weight
    assert tied == model.config.tie_word_embeddings


def test_round_trip_of_an_untied_head_keeps_both_matrices(family, tmp_path):
    model = family.model(tie_word_embeddings=False)
    with torch.no_grad():
        model.get_output_embeddings().weight.add_(1.0)
    model.save_pretrained(tmp_path)
    loaded = family.causal_lm.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded.get_output_embeddings().weight, model.get_output_embeddings().weight)
    assert torch.equal(_logits(loaded), _logits(model))


def test_auto_classes_load_every_head_in_process(family, tmp_path):
    model = family.model()
    model.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is family.config_class
    causal = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(causal) is family.causal_lm
    assert torch.equal(_logits(causal), _logits(model))
    base = AutoModel.from_pretrained(tmp_path)
    assert type(base) is family.base
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=3)
    assert type(classifier) is family.seq_cls and classifier.score.out_features == 3


def test_auto_from_config_builds_our_classes(family):
    config = family.config()
    assert type(AutoModelForCausalLM.from_config(config)) is family.causal_lm
    assert type(AutoModel.from_config(config)) is family.base


def test_saved_folder_carries_remote_code_and_full_auto_map(family, tmp_path):
    family.model().save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    stem = "gpt" if family.name == "gpt" else "llama2"
    shared = {"configuration_common.py", "modeling_common.py"}  # the sibling files both families import
    assert {f"configuration_{stem}.py", f"modeling_{stem}.py", "config.json", "model.safetensors"} | shared <= files
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {"AutoConfig", "AutoModel", "AutoModelForCausalLM", "AutoModelForSequenceClassification",
                             "AutoModelForTokenClassification", "AutoModelForQuestionAnswering"}
    for name in (f"modeling_{stem}.py", f"configuration_{stem}.py", *shared):
        tree = ast.parse((tmp_path / name).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(m.split(".")[0] == "scratchformers" for m in imported), name  # siblings come by relative import


def test_dtype_is_kept_by_from_pretrained(family, tmp_path):
    model = family.model().to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    assert family.causal_lm.from_pretrained(tmp_path).dtype == torch.bfloat16
    assert family.causal_lm.from_pretrained(tmp_path, dtype=torch.float32).dtype == torch.float32


REMOTE_SCRIPT = """
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

try:
    import scratchformers  # noqa: F401
    raise SystemExit("scratchformers should not be importable here")
except ModuleNotFoundError:
    pass
folder, out = sys.argv[1], sys.argv[2]
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
classifier = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True, num_labels=2)
with torch.no_grad():
    logits = model(torch.tensor([[5, 17, 33, 9, 71, 12, 3, 250]])).logits
    tokens = model.generate(torch.tensor([[5, 17, 33]]), max_new_tokens=8, min_new_tokens=8, do_sample=False)
torch.save({"logits": logits, "tokens": tokens, "classifier": type(classifier).__name__}, out)
"""


def test_remote_code_loads_without_scratchformers_installed(family, tmp_path):
    model = family.model()
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)
    result_file = tmp_path / "result.pt"
    completed = run_without_scratchformers(tmp_path, REMOTE_SCRIPT, folder, result_file)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = torch.load(result_file)
    assert torch.equal(result["logits"], _logits(model))
    expected = model.generate(torch.tensor([[5, 17, 33]]), max_new_tokens=8, min_new_tokens=8, do_sample=False)
    assert torch.equal(result["tokens"], expected)
    assert result["classifier"] == family.seq_cls.__name__

"""Hub push up to the network boundary: staged folder, HfApi calls, model card, errors, and loading by repo id."""

import hashlib
import json
import re
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import httpx2
import pytest
import torch
from conftest import GPT, LLAMA, make_byte_tokenizer
from huggingface_hub import ModelCard
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import hf_raise_for_status

from hub_scripts import HubError, cli, push_adapter_folder, push_model_folder, stage_model_folder
from hub_scripts import push as push_module

CHAT_TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<s>assistant: {% endif %}")
EXPECTED_FILES = {
    "gpt": ["README.md", "chat_template.jinja", "config.json", "configuration_common.py", "configuration_gpt.py",
            "generation_config.json",
            "model.safetensors", "modeling_common.py", "modeling_gpt.py", "tokenizer.json", "tokenizer_config.json"],
    "llama2": ["README.md", "chat_template.jinja", "config.json", "configuration_common.py", "configuration_llama2.py",
               "generation_config.json", "model.safetensors", "modeling_common.py", "modeling_llama2.py",
               "tokenizer.json", "tokenizer_config.json"],
}


def _model_folder(folder, family, seed=0):
    """A trained-model folder as the training pipeline leaves it: weights, config, tokenizer with chat template."""
    model = family.model(seed=seed)
    model.save_pretrained(folder)
    tokenizer = make_byte_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return model


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


class RecordingHfApi:
    """Stands in for `huggingface_hub.HfApi`: records each call and what upload_folder would have sent."""

    def __init__(self, fail_on=None, error=None, existing=False):
        self.calls, self.uploaded = [], {}
        self.fail_on, self.error, self.existing = fail_on, error, existing

    def _record(self, name, kwargs):
        self.calls.append((name, kwargs))
        if name == self.fail_on:
            raise self.error

    def repo_exists(self, **kwargs):
        self._record("repo_exists", kwargs)
        return self.existing

    def create_repo(self, **kwargs):
        self._record("create_repo", kwargs)
        return f"https://hub.test/{kwargs['repo_id']}"

    def delete_repo(self, **kwargs):
        self._record("delete_repo", kwargs)

    def create_branch(self, **kwargs):
        self._record("create_branch", kwargs)

    def upload_folder(self, **kwargs):
        self._record("upload_folder", kwargs)
        self.uploaded = _digest(kwargs["folder_path"])
        return SimpleNamespace(commit_url=f"https://hub.test/{kwargs['repo_id']}/commit/0123abc")


@pytest.fixture
def model_folder(tmp_path):
    _model_folder(tmp_path / "run", LLAMA)
    return tmp_path / "run"


def test_dry_run_writes_exactly_the_repo_files_lists_them_with_sizes_and_leaves_the_source_untouched(
        tmp_path, model_folder, capsys):
    before = _digest(model_folder)
    command = ["push", str(model_folder), "alice/tiny-llama2", "--dry-run", "--staging-dir", str(tmp_path / "staged")]
    assert cli.main(command) == 0
    staged = tmp_path / "staged"
    assert sorted(p.name for p in staged.iterdir()) == EXPECTED_FILES["llama2"]
    config = json.loads((staged / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_llama2.Llama2ForCausalLM"
    assert (staged / "chat_template.jinja").read_text() == CHAT_TEMPLATE
    printed = capsys.readouterr().out
    for path in staged.iterdir():
        assert path.name in printed
    assert f"{(staged / 'model.safetensors').stat().st_size / 1024:.1f} KB" in printed
    assert "would upload to https://huggingface.co/alice/tiny-llama2" in printed
    assert _digest(model_folder) == before
    with pytest.raises(SystemExit, match="not empty; pass --overwrite"):
        cli.main(["push", str(model_folder), "alice/tiny-llama2", "--dry-run", "--staging-dir", str(staged)])


def test_push_creates_repo_and_branch_then_uploads_the_dry_run_folder_in_one_commit(tmp_path, model_folder):
    stage_model_folder(model_folder, tmp_path / "staged", repo_id="alice/tiny-llama2")
    api = RecordingHfApi()
    info = push_model_folder(model_folder, "alice/tiny-llama2", api=api, token="hf_test", private=True,
                             revision="v1", commit_message="first upload")
    assert info.commit_url.endswith("/commit/0123abc")
    assert [name for name, _ in api.calls] == ["repo_exists", "create_repo", "create_branch", "upload_folder"]
    assert api.calls[1][1] == dict(repo_id="alice/tiny-llama2", repo_type="model", private=True, exist_ok=True)
    assert api.calls[2][1] == dict(repo_id="alice/tiny-llama2", repo_type="model", branch="v1", exist_ok=True)
    upload = api.calls[3][1]
    assert (upload["revision"], upload["commit_message"], upload["path_in_repo"]) == ("v1", "first upload", None)
    assert api.uploaded == _digest(tmp_path / "staged")  # byte for byte what --dry-run showed
    assert not Path(upload["folder_path"]).exists()  # the temporary staging folder is gone

    api = RecordingHfApi()
    push_model_folder(model_folder, "alice/tiny-llama2", api=api, token="hf_test")
    assert [name for name, _ in api.calls] == ["repo_exists", "create_repo", "upload_folder"]  # main: no branch
    assert api.calls[1][1]["private"] is None and api.calls[2][1]["revision"] is None


def test_endpoint_option_or_HF_ENDPOINT_and_token_reach_HfApi(model_folder, monkeypatch):
    made = []

    def fake_hf_api(**kwargs):
        made.append(kwargs)
        return RecordingHfApi()

    monkeypatch.setattr(push_module, "HfApi", fake_hf_api)
    push_model_folder(model_folder, "alice/m", token="hf_abc", endpoint="https://hub.example.org/")
    monkeypatch.setenv("HF_ENDPOINT", "https://mirror.example.org")
    push_model_folder(model_folder, "alice/m", token="hf_abc")
    assert made == [dict(endpoint="https://hub.example.org", token="hf_abc"),
                    dict(endpoint="https://mirror.example.org", token="hf_abc")]


def _trained_run(folder):
    """A real (tiny) Trainer run: its trainer_state.json, training_args.bin and all_results.json feed the card."""
    from transformers import Trainer, TrainingArguments

    model = GPT.model()
    tokenizer = make_byte_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    rows = [{"input_ids": ids, "labels": ids}
            for ids in torch.randint(3, 300, (12, 16), generator=torch.Generator().manual_seed(0)).tolist()]
    args = TrainingArguments(output_dir=str(folder), max_steps=4, per_device_train_batch_size=4, learning_rate=3e-3,
                             eval_strategy="steps", eval_steps=2, logging_steps=1, save_strategy="no",
                             report_to=[], use_cpu=True, seed=3, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=rows[:8], eval_dataset=rows[8:],
                      processing_class=tokenizer)
    trainer.train()
    trainer.save_metrics("all", trainer.evaluate())
    trainer.save_model()
    trainer.save_state()
    return json.loads((folder / "trainer_state.json").read_text())


def test_model_card_metadata_parses_back_and_its_numbers_come_from_the_run_records(tmp_path):
    state = _trained_run(tmp_path / "run")
    (tmp_path / "run" / "loss_curve.png").write_bytes(b"\x89PNG\r\n\x1a\n plot")  # as the training jobs leave it
    stage_model_folder(tmp_path / "run", tmp_path / "staged", repo_id="alice/tiny-gpt", language=["en", "zh"],
                       datasets=["roneneldan/TinyStories", "../data/en_tinyshakespeare.txt"],
                       base_model="alice/gpt-base", license="mit")
    assert sorted(p.name for p in (tmp_path / "staged").iterdir()) == sorted(EXPECTED_FILES["gpt"] + ["loss_curve.png"])
    card = ModelCard.load(tmp_path / "staged" / "README.md")
    data = card.data
    assert (data.license, data.language, data.library_name) == ("mit", ["en", "zh"], "transformers")
    assert {"scratchformers", "scratch_gpt", "custom_code"} <= set(data.tags)
    assert data.base_model == "alice/gpt-base"
    assert data.datasets == ["roneneldan/TinyStories"]  # a local file is not a Hub dataset id
    assert data.metrics == ["perplexity"]
    final_eval = all_results = json.loads((tmp_path / "run" / "all_results.json").read_text())
    [result] = data.eval_results
    assert result.metric_type == "perplexity" and result.dataset_type == "roneneldan/TinyStories"
    assert result.metric_value == pytest.approx(math.exp(final_eval["eval_loss"]), abs=1e-4)
    text = card.text
    assert "## Model" in text and "## 模型" in text and "### 结构与规模" in text and "### 局限" in text
    assert f"| Parameters (stored) | {GPT.model().num_parameters():,} |" in text
    assert "| Learning rate | 0.003 |" in text and "| 学习率 | 0.003 |" in text
    assert f"| Steps completed | {state['global_step']} |" in text and f"| 完成步数 | {state['global_step']} |" in text
    assert "`../data/en_tinyshakespeare.txt`" in text
    assert f"{all_results['eval_loss']:.4g}" in text
    assert "training_args.bin" in text  # read through torch.load(weights_only=True)
    assert "![Training loss curve](loss_curve.png)" in text and "![训练损失曲线](loss_curve.png)" in text
    assert "| Maximum steps | 4 |" in text and "| Epochs |" not in text  # max_steps ran, not the epoch count
    assert "eval_runtime" not in text
    # every table row has a label in its language: no raw keys in English, nothing untranslated in Chinese
    english, chinese = text.split("\n---\n")[0], text.split("\n---\n")[-1]
    assert not re.search(r"^\| [a-z]+(_[a-z]+)+ \|", english, re.M)
    assert not re.search(r"^\| [A-Za-z][A-Za-z _()/]+ \|", chinese.replace("| bf16 |", ""), re.M), chinese


def test_card_labels_a_warmup_ratio_links_to_the_endpoint_in_use_and_names_an_sft_base_model(model_folder, tmp_path):
    (model_folder / "run_record.json").write_text(json.dumps({"settings": {"warmup_steps": 0.05}}))
    (model_folder / "all_results.json").write_text(json.dumps({"base_model": "alice/base-lm", "eval_loss": 2.0}))
    stage_model_folder(model_folder, tmp_path / "staged", repo_id="alice/chat", endpoint="https://hub.example.org")
    card = ModelCard.load(tmp_path / "staged" / "README.md")
    assert "| Warmup (fraction of training) | 0.05 |" in card.text and "| 预热比例（占训练的比例） | 0.05 |" in card.text
    assert "Warmup steps" not in card.text
    assert card.data.base_model == "alice/base-lm"
    assert "[`alice/base-lm`](https://hub.example.org/alice/base-lm)" in card.text
    assert "huggingface.co" not in card.text


def test_card_without_run_records_reports_no_numbers_and_says_so(model_folder, tmp_path):
    stage_model_folder(model_folder, tmp_path / "staged", repo_id="alice/tiny-llama2")
    card = ModelCard.load(tmp_path / "staged" / "README.md")
    assert card.data.eval_results is None and card.data.metrics is None and card.data.datasets is None
    assert card.data.base_model is None and card.data.license == "apache-2.0"
    assert "No training record" in card.text and "没有训练记录" in card.text
    assert "hold no evaluation results" in card.text and "没有评测结果" in card.text
    assert "do not name the training data" in card.text


@pytest.mark.parametrize("repo_id", ["alice/team/model", "alice/bad--name", "alice/", "alice/model.git", " "])
def test_malformed_repo_id_is_refused_before_any_network_or_staging(model_folder, tmp_path, repo_id):
    api = RecordingHfApi()
    with pytest.raises(ValueError, match="Malformed repo id"):
        push_model_folder(model_folder, repo_id, api=api, token="hf_test")
    with pytest.raises(ValueError, match="Malformed repo id"):
        push_model_folder(model_folder, repo_id, dry_run=str(tmp_path / "staged"))
    assert api.calls == [] and not (tmp_path / "staged").exists()


def test_missing_token_is_a_clear_error_before_any_call(model_folder, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_home"))
    monkeypatch.setattr(push_module, "get_token", lambda: None)
    api = RecordingHfApi()
    with pytest.raises(HubError, match="No Hugging Face token found. Log in with `hf auth login`"):
        push_model_folder(model_folder, "alice/m", api=api)
    assert api.calls == []


def _http_error(status, body):
    response = httpx2.Response(status, json=body,
                               request=httpx2.Request("POST", "https://hub.test/api/repos/create"))
    try:
        hf_raise_for_status(response)
    except HfHubHTTPError as error:
        return error
    raise AssertionError(f"hf_raise_for_status accepted status {status}")


@pytest.mark.parametrize("fail_on, error, message", [
    ("create_repo", lambda: _http_error(401, {"error": "Invalid credentials in Authorization header"}),
     "rejected the token \\(401 Unauthorized\\)"),
    ("create_repo", lambda: _http_error(403, {"error": "You don't have the rights"}), "403 Forbidden"),
    ("upload_folder", lambda: httpx2.ConnectError("Name or service not known"),
     "Network failure while uploading .* Nothing was changed locally; .* run the same command again to retry"),
    ("upload_folder", lambda: TimeoutError("timed out"), "Network failure while uploading"),
], ids=["invalid-token", "no-write-access", "connection", "timeout"])
def test_hub_failures_become_clear_errors_and_leave_nothing_behind(model_folder, tmp_path, monkeypatch,
                                                                   fail_on, error, message):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before = _digest(model_folder)
    with pytest.raises(HubError, match=message):
        push_model_folder(model_folder, "alice/m", api=RecordingHfApi(fail_on, error()), token="hf_bad")
    assert list(scratch.iterdir()) == [] and _digest(model_folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "tmp"]


def test_folder_without_weights_or_tokenizer_is_refused_by_name(tmp_path):
    _model_folder(tmp_path / "run", GPT)
    (tmp_path / "run" / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="holds no tokenizer .* --tokenizer DIR"):
        push_model_folder(tmp_path / "run", "alice/m", dry_run=str(tmp_path / "staged"))
    make_byte_tokenizer().save_pretrained(tmp_path / "tok")
    push_model_folder(tmp_path / "run", "alice/m", tokenizer=tmp_path / "tok", dry_run=str(tmp_path / "staged"))
    assert (tmp_path / "staged" / "tokenizer.json").is_file()

    (tmp_path / "run" / "model.safetensors").unlink()
    with pytest.raises(SystemExit, match="holds no model weights: expected one of model.safetensors.index.json"):
        cli.main(["push", str(tmp_path / "run"), "alice/m", "--dry-run", "--staging-dir", str(tmp_path / "staged2")])
    assert not (tmp_path / "staged2").exists()


def test_lora_adapter_goes_to_its_own_repo_or_a_subfolder_with_a_card_naming_the_base_model(tmp_path):
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(LLAMA.model(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                          task_type="CAUSAL_LM"))
    peft_model.save_pretrained(tmp_path / "adapter")
    with pytest.raises(ValueError, match="is not a Hub repo id; name it with --base-model"):
        push_adapter_folder(tmp_path / "adapter", "alice/lora", dry_run=str(tmp_path / "own"))

    api = RecordingHfApi()
    push_adapter_folder(tmp_path / "adapter", "alice/tiny-llama2", subfolder="lora-sft", api=api, token="hf_test")
    upload = api.calls[-1][1]
    assert upload["path_in_repo"] == "lora-sft"
    assert sorted(api.uploaded) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert api.uploaded["adapter_model.safetensors"] == _digest(tmp_path / "adapter")["adapter_model.safetensors"]

    push_adapter_folder(tmp_path / "adapter", "alice/lora", base_model="alice/tiny-llama2",
                        dry_run=str(tmp_path / "own"))
    card = ModelCard.load(tmp_path / "own" / "README.md")
    assert card.data.base_model == "alice/tiny-llama2" and card.data.library_name == "peft"
    assert "PeftModel.from_pretrained(base, \"alice/lora\")" in card.text and "LoRA 适配器" in card.text
    config = json.loads((tmp_path / "own" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "alice/tiny-llama2" and config["r"] == 4

    from peft import PeftModel

    with torch.no_grad():  # a non-zero adapter, so loading it visibly changes the outputs
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(tmp_path / "adapter")
    push_adapter_folder(tmp_path / "adapter", "alice/lora", base_model="alice/tiny-llama2",
                        dry_run=str(tmp_path / "own"), overwrite=True)
    loaded = PeftModel.from_pretrained(LLAMA.model(), tmp_path / "own").eval()
    x = torch.randint(3, 300, (1, 9), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, peft_model.eval()(x).logits, atol=1e-6, rtol=0)


LOAD_BY_REPO_ID = r"""
import json, sys
sys.modules["scratchformers"] = None  # the package must not be importable: only the remote code may be used
sys.modules["hub_scripts"] = None
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(int(sys.argv[1]))  # the parent's thread count, so reductions run in the same order
results = {}
ids = torch.tensor([json.loads(sys.argv[2])])
for repo_id in sys.argv[3:]:
    model = AutoModelForCausalLM.from_pretrained(repo_id, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(repo_id)
    with torch.no_grad():
        logits = model(ids).logits
    greedy = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    results[repo_id] = dict(module=type(model).__module__, logits=logits.tolist(), greedy=greedy.tolist(), chat=chat)
print("RESULTS" + json.dumps(results))
"""


def test_pushed_folder_loads_by_repo_id_offline_without_scratchformers_with_identical_logits(tmp_path):
    ids = [5, 77, 140, 9, 260, 31, 8]
    hub_cache = tmp_path / "hf_home" / "hub"
    expected = {}
    for family in (GPT, LLAMA):
        repo_id = f"alice/tiny-{family.name}"
        model = _model_folder(tmp_path / family.name, family, seed=11)
        stage_model_folder(tmp_path / family.name, tmp_path / f"staged-{family.name}", repo_id=repo_id)
        commit = hashlib.sha1(repo_id.encode()).hexdigest()
        repo_cache = hub_cache / f"models--{repo_id.replace('/', '--')}"
        (repo_cache / "refs").mkdir(parents=True)
        (repo_cache / "refs" / "main").write_text(commit)
        (repo_cache / "snapshots").mkdir()
        (tmp_path / f"staged-{family.name}").rename(repo_cache / "snapshots" / commit)
        with torch.no_grad():
            expected[repo_id] = (model(torch.tensor([ids])).logits,
                                 model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False, pad_token_id=0))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHON", "TRANSFORMERS"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), HF_HUB_CACHE=str(hub_cache),
               HF_MODULES_CACHE=str(tmp_path / "modules"), TOKENIZERS_PARALLELISM="false")
    run = subprocess.run([sys.executable, "-c", LOAD_BY_REPO_ID, str(torch.get_num_threads()), json.dumps(ids),
                          *expected], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.split("RESULTS", 1)[1])
    for repo_id, (logits, greedy) in expected.items():
        got = results[repo_id]
        assert got["module"].startswith("transformers_modules"), got["module"]
        assert torch.equal(torch.tensor(got["logits"], dtype=torch.float32), logits)
        assert got["greedy"] == greedy.tolist()
        assert got["chat"] == "<s>user: hi</s>"


def test_sequence_classifier_is_staged_with_a_text_classification_card_and_its_recorded_accuracy(tmp_path):
    model = GPT.seq_cls(GPT.config(num_labels=2)).eval()
    model.save_pretrained(tmp_path / "cls")
    make_byte_tokenizer().save_pretrained(tmp_path / "cls")
    results = {"eval_loss": 0.61, "eval_accuracy": 0.725, "epoch": 1.0}  # as the classify job's all_results.json
    (tmp_path / "cls" / "all_results.json").write_text(json.dumps(results))
    stage_model_folder(tmp_path / "cls", tmp_path / "staged", repo_id="alice/tiny-cls", datasets=["stanfordnlp/sst2"])
    config = json.loads((tmp_path / "staged" / "config.json").read_text())
    assert config["architectures"] == ["GPTForSequenceClassification"]
    assert config["auto_map"]["AutoModelForSequenceClassification"] == "modeling_gpt.GPTForSequenceClassification"
    card = ModelCard.load(tmp_path / "staged" / "README.md")
    assert card.data.pipeline_tag == "text-classification" and card.data.metrics == ["accuracy"]
    [result] = card.data.eval_results
    assert (result.metric_type, result.metric_value, result.dataset_type) == ("accuracy", 0.725, "stanfordnlp/sst2")
    assert "AutoModelForSequenceClassification.from_pretrained(\"alice/tiny-cls\"" in card.text
    assert "generate(" not in card.text


def test_a_run_record_json_fills_datasets_language_settings_and_metrics(model_folder, tmp_path):
    record = {"datasets": ["roneneldan/TinyStories"], "language": ["en"], "base_model": "alice/base",
              "settings": {"block_size": 128, "preset": "llama2-tiny"}, "metrics": {"eval_perplexity": 7.25}}
    (tmp_path / "record.json").write_text(json.dumps(record))
    assert cli.main(["push", str(model_folder), "alice/m", "--dry-run", "--staging-dir", str(tmp_path / "staged"),
                     "--record", str(tmp_path / "record.json")]) == 0
    card = ModelCard.load(tmp_path / "staged" / "README.md")
    assert (card.data.datasets, card.data.language, card.data.base_model) == (["roneneldan/TinyStories"], ["en"],
                                                                              "alice/base")
    assert card.data.eval_results[0].metric_value == 7.25
    assert "| Block length (tokens) | 128 |" in card.text and "| Preset | llama2-tiny |" in card.text
    assert "| 块长度（token） | 128 |" in card.text and "| 预设 | llama2-tiny |" in card.text


def test_weights_that_do_not_match_the_config_are_refused_by_name_not_pushed_partially(model_folder, tmp_path):
    from safetensors.torch import load_file, save_file

    state_dict = load_file(model_folder / "model.safetensors")
    del state_dict["model.layers.1.mlp.up_proj.weight"]
    save_file(state_dict, model_folder / "model.safetensors", metadata={"format": "pt"})
    api = RecordingHfApi()
    with pytest.raises(ValueError, match="missing keys: model.layers.1.mlp.up_proj.weight"):
        push_model_folder(model_folder, "alice/m", api=api, token="hf_test")
    assert api.calls == []


def test_cli_push_adapter_dry_run_and_an_adapter_given_to_push_is_redirected(tmp_path, capsys):
    from peft import LoraConfig, get_peft_model

    get_peft_model(GPT.model(), LoraConfig(r=2, target_modules=["c_attn"], task_type="CAUSAL_LM")).save_pretrained(
        tmp_path / "adapter")
    with pytest.raises(SystemExit, match="is a PEFT adapter folder; push it with `push-adapter`"):
        cli.main(["push", str(tmp_path / "adapter"), "alice/gpt-lora", "--dry-run"])
    assert cli.main(["push-adapter", str(tmp_path / "adapter"), "alice/gpt-lora", "--base-model", "alice/gpt",
                     "--dry-run", "--staging-dir", str(tmp_path / "staged")]) == 0
    assert "adapter_model.safetensors" in capsys.readouterr().out
    assert ModelCard.load(tmp_path / "staged" / "README.md").data.base_model == "alice/gpt"


def test_a_failed_first_upload_deletes_the_empty_repo_it_created(model_folder, tmp_path):
    error = _http_error(500, {"error": "upload rejected"})
    api = RecordingHfApi(fail_on="upload_folder", error=error)
    with pytest.raises(HubError, match="empty repo alice/new-model created for this upload was deleted again"):
        push_model_folder(model_folder, "alice/new-model", api=api, token="t")
    assert [name for name, _ in api.calls][-1] == "delete_repo"
    existing = RecordingHfApi(fail_on="upload_folder", error=error, existing=True)
    with pytest.raises(HubError) as raised:
        push_model_folder(model_folder, "alice/old-model", api=existing, token="t")
    assert "delete" not in str(raised.value) and "delete_repo" not in [name for name, _ in existing.calls]


def test_push_names_a_file_given_for_a_folder_and_sends_folders_to_the_right_command(model_folder, tmp_path):
    with pytest.raises(ValueError, match="is a file; pass the folder that holds it"):
        push_model_folder(model_folder / "config.json", "alice/x", dry_run=str(tmp_path / "staged"))
    with pytest.raises(ValueError, match="is a model folder .* push it with `push`"):
        push_adapter_folder(model_folder, "alice/x", dry_run=str(tmp_path / "staged"))


LOAD_TOKENIZER_ONLY = r"""
import json, sys
sys.modules["scratchformers"] = None
from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
remote = sorted(name for name in sys.modules if name.startswith("transformers_modules"))
print("RESULT" + json.dumps([type(tokenizer).__name__, tokenizer("Lily had a ball")["input_ids"], remote]))
"""


@pytest.mark.parametrize("answer", ["n\n", None], ids=["answers-no", "no-input"])
def test_a_pushed_models_tokenizer_loads_without_its_code_and_only_transformers_asks(tmp_path, model_folder, answer):
    """The tokenizer files need no code; the question comes from transformers 5.24, whose AutoTokenizer reads
    config.json through AutoConfig first, and config.json's `auto_map` (which AutoModel* needs for remote code)
    makes AutoConfig ask. Answering no, or having no input to read (the question is printed and ends at once), loads
    the tokenizer without running anything. If the question disappears, transformers changed: update
    docs/troubleshooting.md."""
    staged = tmp_path / "staged"
    assert cli.main(["push", str(model_folder), "alice/tiny", "--dry-run", "--staging-dir", str(staged)]) == 0
    result = subprocess.run(
        [sys.executable, "-c", LOAD_TOKENIZER_ONLY, str(staged)], capture_output=True, text=True, timeout=120,
        **({"input": answer} if answer else {"stdin": subprocess.DEVNULL}), env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    name, ids, remote = json.loads(result.stdout.split("RESULT")[-1])
    expected = make_byte_tokenizer()("Lily had a ball")["input_ids"]
    assert (name, ids, remote) == ("TokenizersBackend", expected, [])
    asked = "Do you wish to run the custom code?" in result.stdout + result.stderr
    assert asked, "transformers no longer asks: update docs/troubleshooting.md"

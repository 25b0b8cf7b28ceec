"""The shipped speedrun recipes run as documented (tiny budget here; the quality figures live in benchmarks/)."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

import scratchformers  # noqa: F401  (registers the Auto classes)
from scratchformers.cli import main
from scratchformers.training.synthetic import make_story_corpus

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("recipe_corpus") / "all.txt"
    path.write_text("\n\n".join(make_story_corpus(150, seed=21)) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("recipe", ["tinyshakespeare.yaml", "tinyshakespeare-gpt.yaml"])
def test_recipe_runs_the_documented_command_and_writes_an_ordinary_model_folder(recipe, text_file, tmp_path, capsys):
    split = tmp_path / "split"
    assert main(["split-text", "--input_file", str(text_file), "--output_dir", str(split)]) == 0
    out = tmp_path / "out"
    code = main([
        "pretrain", "--config", str(RECIPES / recipe), "--train_files", str(split / "train.txt"),
        "--validation_files", str(split / "validation.txt"), "--time_budget", "3s", "--output_dir", str(out),
        "--disable_tqdm", "true",
    ])
    assert code == 0
    settings = yaml.safe_load((RECIPES / recipe).read_text())
    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(out, trust_remote_code=True)
    assert model.config.max_position_embeddings == settings["block_size"]  # the context it was trained with
    assert model.config.model_type == {"tinyshakespeare.yaml": "scratch_llama2"}.get(recipe, "scratch_gpt")
    assert len(tokenizer) <= model.config.vocab_size
    results = json.loads((out / "all_results.json").read_text())
    assert results["train_wall_seconds"] <= 3.0 + 2.0 and results["eval_nats_per_char"] > 0
    assert results["eval_context"] == settings["block_size"]
    used = torch.load(out / "training_args.bin", weights_only=False)  # the arguments Trainer built its optimizer from
    assert (used.weight_decay, used.learning_rate) == (settings["weight_decay"], settings["learning_rate"])
    assert (out / "loss_vs_time.png").is_file()
    sample = (out / "samples.txt").read_text(encoding="utf-8")
    assert 0 < len(sample.split("\n", 1)[1].strip()) <= settings["sample_max_chars"]
    assert "nats/char" in capsys.readouterr().out


def test_the_two_recipes_differ_only_in_the_model():
    llama = yaml.safe_load((RECIPES / "tinyshakespeare.yaml").read_text())
    gpt = yaml.safe_load((RECIPES / "tinyshakespeare-gpt.yaml").read_text())
    model_keys = {"preset", "config_overrides"}
    assert {k: v for k, v in llama.items() if k not in model_keys} == {k: v for k, v in gpt.items() if k not in model_keys}

"""The `scratchformers` command: help of every job, config files, errors, pretrain -> generate, the demo."""

import json
import os
import re
import subprocess
import sys

import pytest

from scratchformers.cli import COMMANDS, main, parse_command
from scratchformers.training.common import parse_config_overrides
from scratchformers.training.synthetic import (
    instruction_followed,
    make_instruction_checks,
    make_story,
    make_story_corpus,
)

TINY_GPT = "num_hidden_layers=2,hidden_size=64,num_attention_heads=2"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli_corpus") / "stories.txt"
    path.write_text("\n\n".join(make_story_corpus(120, seed=9)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """A tiny model trained through the CLI (tokenizer trained on the fly)."""
    out = tmp_path_factory.mktemp("cli_run") / "model"
    code = main([
        "pretrain", "--train_files", str(corpus), "--output_dir", str(out), "--vocab_size", "300",
        "--config_overrides", TINY_GPT, "--block_size", "32", "--max_steps", "4", "--eval_steps", "2",
        "--save_steps", "4", "--per_device_train_batch_size", "4", "--disable_tqdm", "true",
        "--sample_prompts", "Tom had", "--sample_max_new_tokens", "4",
    ])
    assert code == 0
    return out


def test_every_command_has_help_listing_its_flags(capsys):
    expected = {
        "split-text": "--validation_percentage",
        "train-tokenizer": "--vocab_size",
        "pretrain": "--gradient_accumulation_steps",
        "sft": "--max_length",
        "classify": "--label_column",
        "generate": "--no_repeat_ngram_size",
        "demo": "--overwrite",
        "build-preferences": "--rejected",
        "dpo": "--beta",  # a field of TRL's DPOConfig, shown in the short help
        "grpo": "--num_generations",
    }
    assert set(expected) == set(COMMANDS)
    for command, flag in expected.items():
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert flag in text and "--config" in text, command
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert all(command in top for command in COMMANDS)


def test_help_is_short_marks_required_flags_and_help_all_lists_everything(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    short = capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["pretrain", "--help-all"])
    full = capsys.readouterr().out
    assert len(short.splitlines()) < 200 < len(full.splitlines())
    assert re.search(r"--train_files .*\n?\s*\(required\)", short) and "--time_budget" in short
    assert "--learning_rate" in short and "--dataloader_num_workers" not in short
    assert "--dataloader_num_workers" in full and "--help-all" in short


def _launch(args: list[str], cache, check: str = "pass") -> subprocess.CompletedProcess:
    """The console command's entry (`scratchformers_cli.main`) in a fresh process, with its own help cache folder;
    `check` is Python run after it, in the same process."""
    code = f"import sys, scratchformers_cli; code = scratchformers_cli.main({args!r}); {check}; sys.exit(code)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "XDG_CACHE_HOME": str(cache), "COLUMNS": "100"})


def test_the_console_command_prints_help_without_importing_torch_and_as_the_parser_does(tmp_path):
    from scratchformers.cli import help_texts

    texts = help_texts()
    assert {"", "dpo", "export onnx", "serve", "push"} <= set(texts)
    for args, command in ((["dpo", "--help"], "dpo"), (["export", "onnx", "-h"], "export onnx"), ([], "")):
        first = _launch(args, tmp_path)  # from the shipped texts, or the parser (which then stores them here)
        assert first.returncode == 0 and first.stdout == texts[command], first.stderr[-2000:]
        again = _launch(args, tmp_path, "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
        assert again.returncode == 0 and again.stdout == texts[command], again.stderr[-2000:]
    # not a help request, or help of a command that does not exist: the real parser answers
    wrong = _launch(["pretrian", "--help"], tmp_path)
    assert wrong.returncode == 2 and "invalid choice: 'pretrian'" in wrong.stderr


def test_the_shipped_help_texts_are_current_and_never_served_stale():
    from pathlib import Path

    import scratchformers_cli
    from scratchformers.cli import help_texts

    shipped = json.loads((Path(scratchformers_cli._package_dir("scratchformers")) / "cli_help.json").read_text())
    if shipped["made_with"] == scratchformers_cli.help_versions():
        assert shipped["key"] == scratchformers_cli.help_key(), (
            "the command line's sources changed since scratchformers/cli_help.json was written: run "
            "`python -m scratchformers.cli --write-help-cache`")
        assert shipped["texts"] == help_texts()
    else:  # other versions of transformers / TRL / Python than the texts were made with: the launcher asks the parser
        assert shipped["key"] != scratchformers_cli.help_key()


def test_help_texts_made_on_this_machine_serve_only_their_own_key(tmp_path, monkeypatch):
    import scratchformers_cli
    from scratchformers.cli import help_texts, write_help_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert scratchformers_cli.cached_help("dpo", "another-key") is None
    write_help_cache(scratchformers_cli.user_cache_file("another-key"), "another-key")
    assert scratchformers_cli.cached_help("dpo", "another-key") == help_texts()["dpo"]
    assert scratchformers_cli.cached_help("no-such-command", "another-key") is None
    assert scratchformers_cli.help_request(["export", "onnx", "--help"]) == "export onnx"
    assert scratchformers_cli.help_request(["dpo", "--beta", "0.2", "--help"]) is None  # flags: the parser decides
    assert scratchformers_cli.help_request(["dpo", "--help-all"]) is None


def test_help_states_the_machine_dependent_defaults_instead_of_this_machines(capsys):
    with pytest.raises(SystemExit):
        main(["dpo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: False on a CPU (TRL's True slows its steps down there), True with a GPU)" in text
    assert "(default: True on a machine without a GPU)" not in text  # use_cpu is not among the short help's flags
    assert main([]) == 0 and "scratchformers COMMAND --help" in capsys.readouterr().out


def test_training_arguments_come_from_a_config_file_and_flags_override_it(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("train_files: [a.txt, b.txt]\nlearning_rate: 0.01\nmax_steps: 7\nbf16: true\npreset: llama2-tiny\n")
    model_args, data_args, training_args = parse_command("pretrain", ["--config", str(config), "--max_steps", "9",
                                                                      "--output_dir", str(tmp_path / "o")])
    assert data_args.train_files == ["a.txt", "b.txt"] and model_args.preset == "llama2-tiny"
    assert training_args.learning_rate == 0.01 and training_args.bf16 is True
    assert training_args.max_steps == 9  # the flag wins over the file
    assert training_args.lr_scheduler_type == "cosine" and training_args.save_total_limit == 2  # CLI defaults
    as_json = tmp_path / "run.json"
    as_json.write_text(json.dumps({"model_name_or_path": "m", "max_length": 64, "num_train_epochs": 2}))
    sft_args, training_args = parse_command("sft", ["--config", str(as_json)])
    assert sft_args.max_length == 64 and training_args.num_train_epochs == 2


def test_config_file_with_an_unknown_key_is_a_clear_error(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("learning_rate: 0.01\nlerning_rate: 0.02\n")
    assert main(["pretrain", "--config", str(config)]) == 2
    assert "bad.yaml: unknown keys ['lerning_rate']" in capsys.readouterr().err


@pytest.mark.parametrize("name, content, message", [
    ("broken.yaml", "learning_rate: [0.01\nmax_steps: 3\n", r"broken.yaml:\d+: not valid YAML"),
    ("broken.json", '{"learning_rate": 0.01,}', r"broken.json:1: not valid JSON"),
])
def test_a_config_file_that_does_not_parse_names_file_and_line(name, content, message, tmp_path, capsys):
    config = tmp_path / name
    config.write_text(content)
    assert main(["pretrain", "--config", str(config)]) == 2
    assert re.search(message, capsys.readouterr().err)


@pytest.mark.parametrize("name, content, message", [
    ("empty.txt", b"", r"empty corpus: .*empty.txt"),
    ("blank.txt", b"\n \n", r"empty corpus: no non-empty text in .*blank.txt"),
    ("bad.jsonl", b'{"text": "ok"}\n{"text": oops}\n', r"bad.jsonl:2: not valid JSON"),
    ("latin1.txt", "ok\nd\xe9j\xe0 vu\n".encode("latin-1"), r"latin1.txt:2: not UTF-8 text"),
    ("rows.jsonl", b'{"text": "ok"}\n{"title": "x"}\n', r"rows.jsonl:2: row has no 'text' value"),
])
def test_bad_pretraining_data_is_a_sentence_naming_file_and_line(name, content, message, tmp_path, capsys):
    data = tmp_path / name
    data.write_bytes(content)
    code = main(["pretrain", "--train_files", str(data), "--output_dir", str(tmp_path / "out"), "--max_steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and re.search(message, err), err
    assert "Traceback" not in err


def test_a_typo_in_config_overrides_names_the_closest_key(corpus, tmp_path, capsys):
    code = main(["pretrain", "--train_files", str(corpus), "--output_dir", str(tmp_path / "out"), "--max_steps", "1",
                 "--config_overrides", "num_hiden_layers=1"])
    assert code == 2
    assert "unknown config key 'num_hiden_layers' (did you mean 'num_hidden_layers'?)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written: the rerun needs no --overwrite


def test_config_overrides_read_true_false_and_a_wrong_type_is_one_line_naming_the_field(corpus, tmp_path, capsys):
    assert parse_config_overrides("tie_word_embeddings=true, hidden_dropout=0.1,rope_scaling=None,a=FALSE") == {
        "tie_word_embeddings": True, "hidden_dropout": 0.1, "rope_scaling": None, "a": False}
    code = main(["pretrain", "--train_files", str(corpus), "--output_dir", str(tmp_path / "out"), "--max_steps", "1",
                 "--preset", "llama2-tiny", "--config_overrides", "hidden_size=wide"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert re.search(r"field 'hidden_size'.*expected int, got str \(value: 'wide'\)", err), err
    assert not (tmp_path / "out").exists()


def test_missing_training_file_is_a_clear_error(tmp_path, capsys):
    code = main(["pretrain", "--train_files", str(tmp_path / "nope.txt"), "--output_dir", str(tmp_path / "o")])
    assert code == 2
    assert f"data file not found: {tmp_path / 'nope.txt'}" in capsys.readouterr().err


def test_pretrain_output_is_not_overwritten_without_the_flag(trained, corpus, capsys):
    before = (trained / "model.safetensors").read_bytes()
    code = main(["pretrain", "--train_files", str(corpus), "--output_dir", str(trained), "--max_steps", "1"])
    assert code == 2
    assert "already holds results" in capsys.readouterr().err
    assert (trained / "model.safetensors").read_bytes() == before


def test_generate_streams_tokens_with_every_sampling_option(trained, capsys):
    sampling = ["--model_name_or_path", str(trained), "--prompt", "Tom had", "--max_new_tokens", "6",
                "--do_sample", "true", "--temperature", "0.9", "--top_k", "20", "--top_p", "0.95",
                "--repetition_penalty", "1.2", "--no_repeat_ngram_size", "2", "--seed", "3"]
    assert main(["generate", *sampling]) == 0
    first = capsys.readouterr().out
    assert first.startswith("Tom had") and len(first.strip()) > len("Tom had")
    assert main(["generate", *sampling]) == 0
    assert capsys.readouterr().out == first  # the seed makes sampling repeatable
    beams = ["--model_name_or_path", str(trained), "--prompt", "Tom", "--max_new_tokens", "4", "--do_sample", "false",
             "--num_beams", "2", "--num_return_sequences", "2"]
    assert main(["generate", *beams]) == 0
    assert capsys.readouterr().out.count("--- sample") == 2
    assert main(["generate", "--model_name_or_path", str(trained / "absent")]) == 2


def test_train_tokenizer_command_reports_compression_and_keeps_an_existing_tokenizer(corpus, tmp_path, capsys):
    out = tmp_path / "tok"
    args = ["train-tokenizer", "--train_files", str(corpus), "--output_dir", str(out), "--vocab_size", "300"]
    assert main(args) == 0
    assert "bytes/token" in capsys.readouterr().out
    assert (out / "tokenizer.json").is_file()
    assert main(args) == 2
    assert "already holds a tokenizer" in capsys.readouterr().err
    other = tmp_path / "mine"
    other.mkdir()
    (other / "chat_template.jinja").write_text("{{ my own template }}")
    assert main(["train-tokenizer", "--train_files", str(corpus), "--output_dir", str(other)]) == 2
    assert "(chat_template.jinja)" in capsys.readouterr().err
    assert (other / "chat_template.jinja").read_text() == "{{ my own template }}"


def test_demo_quick_runs_the_whole_path_and_never_clobbers_a_foreign_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--num_stories", "200", "--output_dir", str(out)]) == 0
    text = capsys.readouterr().out
    assert "pretraining validation loss:" in text and "[sft] assistant:" in text
    results = json.loads((out / "demo_results.json").read_text())
    assert results["pretrain_eval_loss"] > 0
    assert sum(score["total"] for score in results["instructions_followed"].values()) == 2
    assert "instructions followed (count, greedy, fresh prompts): " in text
    for folder in ("pretrained", "sft", "tokenizer"):
        assert (out / folder / "tokenizer.json").is_file()
    assert (out / "pretrained" / "loss_curve.png").is_file()
    # Re-running replaces the previous demo folder ...
    assert main(["demo", "--quick", "--num_stories", "200", "--output_dir", str(out)]) == 0
    capsys.readouterr()
    # ... but a folder holding anything else is refused, and with --overwrite only the demo's entries are replaced.
    (out / "notes.txt").write_text("keep me")
    assert main(["demo", "--quick", "--num_stories", "200", "--output_dir", str(out)]) == 2
    assert "were not made by `scratchformers demo` (notes.txt)" in capsys.readouterr().err
    assert main(["demo", "--quick", "--num_stories", "200", "--output_dir", str(out), "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "keep me" and (out / "sft" / "config.json").is_file()
    capsys.readouterr()


@pytest.mark.parametrize("where", [".", "..", "~", "/"])
def test_demo_never_takes_the_current_folder_its_parents_home_or_root(where, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / "precious.txt").write_text("source code")
    monkeypatch.chdir(work)
    for attempt in (["--overwrite"], []):
        assert main(["demo", "--quick", "--output_dir", where, *attempt]) == 2
        assert "is the current folder, one of its parents, the home folder or the root" in capsys.readouterr().err
    assert (work / "precious.txt").read_text() == "source code" and sorted(p.name for p in work.iterdir()) == [
        "precious.txt"]


def test_instruction_check_accepts_exact_answers_and_rejects_drift():
    import random

    checks = make_instruction_checks(6, seed=3)
    assert [task for task, _, _ in checks] == ["count", "story"] * 3
    for task, prompt, want in checks:
        if task == "count":
            assert instruction_followed(task, want["expected"], want)
            assert not instruction_followed(task, want["expected"][:-1] + ", 99.", want)
        else:
            story = make_story(random.Random(0), want["name"], want["animal"])
            assert instruction_followed(task, story, want), story
            other = next(a for a in ("cat", "dog") if a != want["animal"])
            assert not instruction_followed(task, story.replace(f"the {want['animal']}", f"the {other}"), want)
            assert not instruction_followed(task, story.replace(want["name"], "Nobody", 1), want)
    assert instruction_followed("count", "4, 5, 6.", {"expected": "4, 5, 6."})
    assert not instruction_followed("story", "Tom and the cat.\nTom saw a catfish and a dog.", {"name": "Tom", "animal": "cat"})


def _fake_hub_package(monkeypatch, tmp_path, cli_source):
    import sys
    import types

    folder = tmp_path / "hub_scripts"
    folder.mkdir(parents=True)
    (folder / "cli.py").write_text(cli_source)
    package = types.ModuleType("hub_scripts")
    package.__path__ = [str(folder)]
    monkeypatch.setitem(sys.modules, "hub_scripts", package)
    monkeypatch.delitem(sys.modules, "hub_scripts.cli", raising=False)


def test_hub_commands_are_registered_and_a_broken_hub_module_is_not_hidden(monkeypatch, tmp_path):
    from scratchformers.cli import build_main_parser

    _fake_hub_package(monkeypatch, tmp_path / "ok", "def register(sub):\n    sub.add_parser('hub-job', help='a hub job')\n")
    assert "hub-job" in build_main_parser().format_help()
    _fake_hub_package(monkeypatch, tmp_path / "broken", "import a_dependency_that_is_not_installed\n")
    with pytest.raises(ModuleNotFoundError, match="a_dependency_that_is_not_installed"):
        build_main_parser()
    import sys

    monkeypatch.setitem(sys.modules, "hub_scripts.cli", None)  # hub_scripts without its cli: the jobs still work
    assert "pretrain" in build_main_parser().format_help()

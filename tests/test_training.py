"""Pretraining pipeline: data loading and packing, the Trainer setup, saved outputs, resume, accelerate."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments, pipeline

import scratchformers  # noqa: F401  (registers the Auto classes)
from scratchformers.tokenization_scratch import train_tokenizer
from scratchformers.training.arguments import ModelArguments, PretrainDataArguments
from scratchformers.training.common import ScratchTrainer, build_config, check_model_fits
from scratchformers.training.data import load_text_dataset, pack_dataset
from scratchformers.training.pretrain import run_pretrain

TINY_GPT = "num_hidden_layers=2,hidden_size=64,num_attention_heads=2"
TINY_LLAMA = "num_hidden_layers=2,hidden_size=64,num_attention_heads=2,num_key_value_heads=1,intermediate_size=128"


@pytest.fixture(scope="module")
def tokenizer_dir(corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer([corpus], vocab_size=300, show_progress=False).save_pretrained(folder)
    return folder


def tiny_args(output_dir, **overrides) -> TrainingArguments:
    kwargs = dict(
        output_dir=str(output_dir),
        max_steps=6,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        learning_rate=3e-3,
        lr_scheduler_type="cosine",
        warmup_steps=1,
        weight_decay=0.1,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=3,
        save_steps=3,
        save_total_limit=2,
        report_to=["tensorboard"],
        use_cpu=True,
        seed=7,
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def run_tiny(corpus, tokenizer_dir, output_dir, preset="gpt-micro", overrides=TINY_GPT, **training):
    return run_pretrain(
        ModelArguments(preset=preset, config_overrides=overrides, tokenizer_name_or_path=str(tokenizer_dir)),
        PretrainDataArguments(train_files=[str(corpus)], block_size=32, sample_max_new_tokens=8, overwrite=True),
        tiny_args(output_dir, **training),
        verbose=False,
    )


def test_pack_dataset_ends_every_document_with_eos_and_cuts_equal_blocks(tokenizer_dir):
    from datasets import Dataset

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    docs = ["Tom had a ball.", "Mia saw a frog.", "The end."]
    ids = [tokenizer(d, add_special_tokens=False)["input_ids"] for d in docs]
    stream = [t for doc in ids for t in doc + [tokenizer.eos_token_id]]
    packed = pack_dataset(Dataset.from_dict({"text": docs}), tokenizer, block_size=4)
    blocks = list(packed["input_ids"])
    assert all(len(b) == 4 for b in blocks)
    assert [t for b in blocks for t in b] == stream[: len(stream) // 4 * 4]
    assert list(packed["labels"]) == blocks
    # With num_proc=2 each process packs one contiguous half (its own tail shorter than a block is dropped).
    big = Dataset.from_dict({"text": docs * 40})
    halves = [list(pack_dataset(big.shard(2, i, contiguous=True), tokenizer, 8)["input_ids"]) for i in range(2)]
    assert list(pack_dataset(big, tokenizer, 8, num_proc=2)["input_ids"]) == halves[0] + halves[1]


def test_load_text_dataset_reads_txt_jsonl_csv_and_a_saved_dataset_folder(tmp_path):
    from datasets import Dataset

    (tmp_path / "a.txt").write_text("first doc\nstill first\n\nsecond doc\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"text": "json doc"}\n{"text": "another"}\n', encoding="utf-8")
    (tmp_path / "c.csv").write_text('text,label\n"csv, doc",1\n', encoding="utf-8")
    Dataset.from_dict({"text": ["saved doc"]}).save_to_disk(tmp_path / "saved")
    files = [tmp_path / "a.txt", tmp_path / "b.jsonl", tmp_path / "c.csv", tmp_path / "saved"]
    texts = list(load_text_dataset([str(f) for f in files])["text"])
    assert [t.strip() for t in texts] == ["first doc\nstill first", "second doc", "json doc", "another", "csv, doc",
                                          "saved doc"]
    assert len(load_text_dataset([str(tmp_path / "a.txt")], split_by="document")) == 1


def test_load_text_dataset_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_text_dataset([str(tmp_path / "missing.txt")])
    (tmp_path / "empty.txt").write_text("\n\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty corpus.*empty.txt"):
        load_text_dataset([str(tmp_path / "empty.txt")])
    (tmp_path / "rows.jsonl").write_text('{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="rows.jsonl.*'text'"):
        load_text_dataset([str(tmp_path / "rows.jsonl")])
    (tmp_path / "gap.jsonl").write_text('{"text": "a"}\n\n{"text": "b"}\n{"title": "no text"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="gap.jsonl:4: row has no 'text' value"):
        load_text_dataset([str(tmp_path / "gap.jsonl")])


def test_model_fit_checks_reject_big_blocks_and_oversized_tokenizers(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = build_config("gpt-micro", tokenizer, TINY_GPT)
    check_model_fits(config, tokenizer, config.max_position_embeddings)
    with pytest.raises(ValueError, match="block size 257 .*max_position_embeddings=256"):
        check_model_fits(config, tokenizer, 257)
    small = build_config("gpt-micro", tokenizer, TINY_GPT + ",vocab_size=100")
    with pytest.raises(ValueError, match="300 tokens but the model's vocab_size is 100"):
        check_model_fits(small, tokenizer)


def test_weight_decay_applies_to_matrices_only(tokenizer_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    for preset, overrides in (("gpt-micro", TINY_GPT), ("llama2-tiny", TINY_LLAMA)):
        model = AutoModelForCausalLM.from_config(build_config(preset, tokenizer, overrides))
        trainer = ScratchTrainer(model=model, args=tiny_args(tmp_path, eval_strategy="no"), processing_class=tokenizer)
        optimizer = trainer.create_optimizer()
        decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
        for name, param in model.named_parameters():
            assert (id(param) in decayed) == (param.ndim >= 2), name
        assert any(p.ndim == 1 for p in model.parameters())  # the check above covers both kinds


def test_pretrain_saves_a_model_that_auto_classes_and_pipeline_load(corpus, tokenizer_dir, tmp_path):
    out = tmp_path / "run"
    metrics = run_tiny(corpus, tokenizer_dir, out)
    assert metrics["global_step"] == 6
    assert math.isclose(metrics["eval_perplexity"], math.exp(metrics["eval_loss"]), rel_tol=1e-6)
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    losses = [e["loss"] for e in history if "loss" in e]
    assert losses[-1] < losses[0]
    assert any("eval_perplexity" in e for e in history)
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(out.glob("runs/*/events.out.tfevents.*"))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]

    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == "GPTForCausalLM"
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    text = generator("Tom had a", max_new_tokens=5, do_sample=False)[0]["generated_text"]
    assert text.startswith("Tom had a") and len(text) > len("Tom had a")


def test_resume_from_checkpoint_reproduces_the_uninterrupted_run_exactly(corpus, tokenizer_dir, tmp_path):
    full = tmp_path / "full"
    run_tiny(corpus, tokenizer_dir, full)
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-3", resumed / "checkpoint-3")
    run_tiny(corpus, tokenizer_dir, resumed, resume_from_checkpoint="last")
    expected = load_file(full / "model.safetensors")
    got = load_file(resumed / "model.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    # And the run really changed the weights after the checkpoint.
    middle = load_file(full / "checkpoint-3" / "model.safetensors")
    assert not all(torch.equal(middle[k], expected[k]) for k in expected)
    # Trainer's train_loss covers only the resumed steps: it says so
    results = json.loads((resumed / "all_results.json").read_text())
    assert "train_loss" not in results and results["resumed_from_step"] == 3 and results["train_loss_since_resume"] > 0
    assert "train_loss" in json.loads((full / "all_results.json").read_text())


def test_pretrain_llama2_with_bf16_and_activation_checkpointing(corpus, tokenizer_dir, tmp_path):
    out = tmp_path / "llama"
    metrics = run_tiny(
        corpus, tokenizer_dir, out, preset="llama2-tiny", overrides=TINY_LLAMA, max_steps=3, eval_steps=3,
        save_steps=3, bf16=True, activation_checkpointing=True, gradient_accumulation_steps=2,
    )
    assert metrics["global_step"] == 3 and math.isfinite(metrics["eval_loss"])
    model = AutoModelForCausalLM.from_pretrained(out)
    assert type(model).__name__ == "Llama2ForCausalLM"


def test_pretrain_refuses_an_output_dir_with_results(corpus, tokenizer_dir, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="already holds results.*--overwrite"):
        run_pretrain(
            ModelArguments(config_overrides=TINY_GPT, tokenizer_name_or_path=str(tokenizer_dir)),
            PretrainDataArguments(train_files=[str(corpus)], block_size=32),
            tiny_args(out),
        )
    assert (out / "config.json").read_text() == "{}"


def test_accelerate_launch_two_cpu_processes_trains(corpus, tmp_path):
    """The unchanged CLI as a 2-process gloo DDP job on CPU; the tokenizer is trained on rank 0.

    accelerate 1.15's `--cpu` launcher starts ONE process unless MPI is configured, so the two CPU workers are
    started with `--multi_gpu` (torchrun underneath); on a machine without GPU the CLI's use_cpu=True default makes
    them join one gloo process group.
    """
    out = tmp_path / "ddp"
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [
        str(accelerate), "launch", "--num_processes", "2", "--num_machines", "1", "--multi_gpu", "--mixed_precision", "no",
        "--dynamo_backend", "no", "-m", "scratchformers.cli", "pretrain",
        "--train_files", str(corpus), "--output_dir", str(out), "--vocab_size", "300", "--config_overrides", TINY_GPT,
        "--block_size", "32", "--max_steps", "3", "--per_device_train_batch_size", "2", "--eval_steps", "3",
        "--save_steps", "3", "--logging_steps", "1", "--disable_tqdm", "true", "--sample_max_new_tokens", "4",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "all_results.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 3
    assert math.isfinite(metrics["eval_loss"])
    # the saved model is the one both workers trained: the weights of the step-3 checkpoint, changed by training
    final, checkpoint = load_file(out / "model.safetensors"), load_file(out / "checkpoint-3" / "model.safetensors")
    assert final.keys() == checkpoint.keys() and all(torch.equal(final[k], checkpoint[k]) for k in final)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert type(model).__name__ == "GPTForCausalLM" and model.config.num_hidden_layers == 2


def test_a_distributed_job_leaves_its_process_group_before_exit(corpus, tmp_path):
    """Under torchrun's environment the CLI joins a gloo group and destroys it when the job ends: a group left to
    the interpreter's finalisation made a worker of the 2-process test above abort at exit (SIGABRT) after training
    had succeeded."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["pretrain", "--train_files", str(corpus), "--output_dir", str(tmp_path / "run"), "--vocab_size", "300",
            "--config_overrides", TINY_GPT, "--block_size", "32", "--max_steps", "1", "--eval_strategy", "no",
            "--save_strategy", "no", "--disable_tqdm", "true", "--sample_max_new_tokens", "0"]
    script = (
        "import sys, torch.distributed as dist, accelerate\n"
        "from scratchformers.cli import main\n"
        f"assert main({args!r}) == 0\n"
        "print(accelerate.PartialState().distributed_type, accelerate.PartialState().num_processes)\n"
        "print('still initialized' if dist.is_initialized() else 'destroyed')\n"
    )
    env = {**os.environ, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    joined, state = result.stdout.strip().splitlines()[-2:]
    assert joined == "DistributedType.MULTI_CPU 1", joined  # the job did run in a process group
    assert state == "destroyed"
    assert not (tmp_path / "run" / "samples.txt").exists()  # --sample_max_new_tokens 0: no samples


def test_a_negative_sample_length_is_refused_before_anything_is_written(corpus, tmp_path):
    data_args = PretrainDataArguments(train_files=[str(corpus)], sample_max_new_tokens=-1)
    args = TrainingArguments(str(tmp_path / "run"), use_cpu=True, report_to="none")
    with pytest.raises(ValueError, match="--sample_max_new_tokens must be >= 0.*got -1"):
        run_pretrain(ModelArguments(preset="gpt-micro"), data_args, args, verbose=False)
    assert not (tmp_path / "run").exists()


def test_any_file_the_run_would_write_needs_overwrite(corpus, tokenizer_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "loss_curve.png").write_bytes(b"the user's own plot")
    (out / "notes.txt").write_text("unrelated, never touched")
    with pytest.raises(FileExistsError, match=r"already holds results .*\(loss_curve.png\).*--overwrite"):
        run_pretrain(
            ModelArguments(config_overrides=TINY_GPT, tokenizer_name_or_path=str(tokenizer_dir)),
            PretrainDataArguments(train_files=[str(corpus)], block_size=32),
            tiny_args(out),
            verbose=False,
        )
    assert (out / "loss_curve.png").read_bytes() == b"the user's own plot"
    run_tiny(corpus, tokenizer_dir, out, max_steps=2, eval_steps=2, save_steps=2)  # with --overwrite
    assert (out / "loss_curve.png").read_bytes() != b"the user's own plot"
    assert (out / "notes.txt").read_text() == "unrelated, never touched"


def test_overwrite_clears_the_earlier_runs_checkpoints_so_resume_last_finds_this_runs(corpus, tokenizer_dir, tmp_path):
    from scratchformers.training.common import resolve_checkpoint

    out = tmp_path / "run"
    run_tiny(corpus, tokenizer_dir, out, max_steps=6)  # checkpoint-3, checkpoint-6
    run_tiny(corpus, tokenizer_dir, out, max_steps=4, save_steps=4, eval_steps=4)  # --overwrite: checkpoint-4 only
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4"]
    assert resolve_checkpoint("last", str(out)) == str(out / "checkpoint-4")


def test_overwrite_without_samples_or_a_budget_removes_the_earlier_runs_samples_and_time_plot(
    corpus, tokenizer_dir, tmp_path, capsys
):
    out = tmp_path / "run"
    data = dict(train_files=[str(corpus)], block_size=32, overwrite=True)
    model_args = ModelArguments(config_overrides=TINY_GPT, tokenizer_name_or_path=str(tokenizer_dir))
    run_pretrain(model_args, PretrainDataArguments(**data, time_budget="60s", sample_max_new_tokens=4),
                 tiny_args(out, eval_steps=3, save_steps=3, warmup_steps=0.1), verbose=False)
    assert (out / "samples.txt").is_file() and (out / "loss_vs_time.png").is_file()
    run_pretrain(model_args, PretrainDataArguments(**data, sample_max_new_tokens=0),
                 tiny_args(out, max_steps=2, eval_steps=2, save_steps=2))
    # neither file would describe the model now in the folder
    assert not (out / "samples.txt").exists() and not (out / "loss_vs_time.png").exists()
    assert "removed loss_vs_time.png and samples.txt of an earlier run" in capsys.readouterr().out
    assert (out / "model.safetensors").is_file() and (out / "loss_curve.png").is_file()


def test_random_windows_are_slices_of_the_stream_that_move_every_epoch(tokenizer_dir):
    from datasets import Dataset

    from scratchformers.training.data import EpochToDataset, RandomWindows

    stream = list(range(100, 148))  # 6 blocks of 8 tokens
    blocks = Dataset.from_dict({"input_ids": [stream[i:i + 8] for i in range(0, 48, 8)],
                                "labels": [stream[i:i + 8] for i in range(0, 48, 8)]})
    windows = RandomWindows(blocks, 8, seed=3)
    assert len(windows) == 5
    starts = {}
    for epoch in range(4):
        EpochToDataset(windows).on_epoch_begin(None, type("S", (), {"epoch": epoch + 0.0})(), None)
        for i in range(len(windows)):
            item = windows[i]
            first = int(item["input_ids"][0]) - 100
            assert item["input_ids"].tolist() == stream[first:first + 8] and 0 <= first < 40  # any start that fits
            assert torch.equal(item["labels"], item["input_ids"])
            starts.setdefault(epoch, []).append(first)
    assert len({tuple(s) for s in starts.values()}) == 4  # every epoch cuts elsewhere
    assert len({s % 8 for epoch in starts.values() for s in epoch}) > 1  # windows start mid-block, not only on blocks
    windows.set_epoch(2)
    assert [int(windows[i]["input_ids"][0]) - 100 for i in range(5)] == starts[2]  # deterministic: resume-safe
    with pytest.raises(ValueError, match="at least two blocks"):
        RandomWindows(blocks.select([0]), 8)


def test_late_dropout_keeps_dropout_off_for_the_first_epochs_and_the_saved_config_keeps_its_rate(
    corpus, tokenizer_dir, tmp_path
):
    from transformers import TrainerCallback

    seen = []  # (epoch when the step began, rate of the dropout layers during the step)

    class Spy(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            rates = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
            seen.append((seen[-1][2] if seen else 0.0, rates, state.epoch))

    run_pretrain(
        ModelArguments(preset="llama2-tiny", config_overrides=TINY_LLAMA + ",hidden_dropout=0.2",
                       tokenizer_name_or_path=str(tokenizer_dir)),
        PretrainDataArguments(train_files=[str(corpus)], block_size=32, sample_max_new_tokens=8, overwrite=True,
                              dropout_after_epochs=0.25),
        tiny_args(tmp_path, max_steps=40, eval_strategy="no", save_strategy="no", per_device_train_batch_size=8),
        callbacks=[Spy()],
        verbose=False,
    )
    assert seen[-1][2] > 0.35  # the run crossed the switch
    assert all(rates == ({0.0} if began < 0.25 else {0.2}) for began, rates, _ in seen)
    assert {0.0} in [r for _, r, _ in seen] and {0.2} in [r for _, r, _ in seen]
    assert json.loads((tmp_path / "config.json").read_text())["hidden_dropout"] == 0.2
    with pytest.raises(ValueError, match="dropout_after_epochs must be >= 0, got -1"):
        from scratchformers.training.data import LateDropout

        LateDropout(torch.nn.Dropout(0.1), -1)

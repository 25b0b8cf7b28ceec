"""Knowledge distillation (`--distill_from`): the loss against a hand computation, its normalisation under gradient
accumulation, a student that really moves to its teacher, SFT with a teacher, and the errors."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    TrainingArguments,
)

import scratchformers  # noqa: F401  (registers the Auto classes)
from scratchformers.tokenization_scratch import train_tokenizer
from scratchformers.training.arguments import ModelArguments, PretrainDataArguments, SFTArguments
from scratchformers.training.common import ScratchTrainer, build_config
from scratchformers.training.data import SFTCollator
from scratchformers.training.distill import distillation_loss, load_teachers
from scratchformers.training.pretrain import run_pretrain
from scratchformers.training.sft import run_sft
from scratchformers.training.synthetic import make_instruction_data

TINY_GPT = "num_hidden_layers=2,hidden_size=64,num_attention_heads=2"
TINY_LLAMA = "num_hidden_layers=2,hidden_size=64,num_attention_heads=2,num_key_value_heads=1,intermediate_size=128"


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return train_tokenizer([corpus], vocab_size=300, show_progress=False)


def save_model(folder, tokenizer, preset="llama2-tiny", overrides=TINY_LLAMA, seed=0, sharpen=1.0, **config):
    """An untrained model with `tokenizer`, saved to `folder`; `sharpen` scales its output head, for a teacher whose
    next-token distributions are peaked and far from the data's."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(build_config(preset, tokenizer, overrides, **config))
    with torch.no_grad():
        model.lm_head.weight *= sharpen
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def kl_by_hand(student, teachers, labels, temperature):
    total, positions = 0.0, 0
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            if labels[b, t + 1] == -100:
                continue
            p = sum(torch.softmax(x[b, t] / temperature, -1) for x in teachers) / len(teachers)
            q = torch.softmax(student[b, t] / temperature, -1)
            total += (p * (p.log() - q.log())).sum().item()
            positions += 1
    return total * temperature**2, positions


def test_distillation_loss_is_the_kl_from_the_teachers_mean_distribution_on_the_scored_positions():
    torch.manual_seed(0)
    student, first, second = (torch.randn(2, 6, 11) * 3 for _ in range(3))  # (B, T, V)
    labels = torch.tensor([[5, 1, -100, 3, 4, -100], [-100, -100, 2, 2, 7, 9]])
    for temperature in (1.0, 2.5):
        got, positions = distillation_loss(student, [first, second], labels, temperature)
        expected, n = kl_by_hand(student, [first, second], labels, temperature)
        assert positions.item() == n == 7
        assert math.isclose(got.item(), expected, rel_tol=1e-5)
    one, _ = distillation_loss(student, [first], labels)
    assert math.isclose(one.item(), kl_by_hand(student, [first], labels, 1.0)[0], rel_tol=1e-5)
    assert distillation_loss(first, [first], labels)[0].abs().item() < 1e-5  # a student equal to its teacher
    with pytest.raises(ValueError, match="one vocabulary"):
        distillation_loss(student[..., :10], [first], labels)


def sft_like_dataset(vocab_size, rows=8, length=12, seed=0):
    """Rows whose labels keep different numbers of tokens, so a per-batch mean and a mean over the accumulated
    batch differ."""
    generator = torch.Generator().manual_seed(seed)
    data = {"input_ids": [], "attention_mask": [], "labels": []}
    for row in range(rows):
        ids = torch.randint(3, vocab_size, (length,), generator=generator).tolist()
        masked = 2 + row % 5  # the prompt's tokens
        data["input_ids"].append(ids)
        data["attention_mask"].append([1] * length)
        data["labels"].append([-100] * masked + ids[masked:])
    return Dataset.from_dict(data)


def one_step(folder, teacher_dir, tokenizer, dataset, alpha, **args):
    model = AutoModelForCausalLM.from_pretrained(folder)
    trainer = ScratchTrainer(
        model=model,
        args=TrainingArguments(output_dir=str(folder / "run"), max_steps=1, optim="sgd", learning_rate=1.0,
                               weight_decay=0.0, lr_scheduler_type="constant", report_to="none", use_cpu=True,
                               save_strategy="no", disable_tqdm=True, logging_steps=1, seed=3, **args),
        train_dataset=dataset,
        data_collator=SFTCollator(tokenizer.pad_token_id),
        teachers=load_teachers([teacher_dir], tokenizer),
        distill_alpha=alpha,
    )
    trainer.train()
    return model, trainer


def test_a_distillation_step_is_the_same_with_gradient_accumulation_and_its_loss_matches_the_formula(
    tokenizer, tmp_path
):
    student_dir = save_model(tmp_path / "student", tokenizer, seed=1)
    teacher_dir = save_model(tmp_path / "teacher", tokenizer, preset="gpt-micro", overrides=TINY_GPT, seed=2)
    dataset = sft_like_dataset(len(tokenizer))
    whole, trainer = one_step(student_dir, teacher_dir, tokenizer, dataset, 0.5, per_device_train_batch_size=8)
    accumulated, _ = one_step(student_dir, teacher_dir, tokenizer, dataset, 0.5, per_device_train_batch_size=2,
                              gradient_accumulation_steps=4)
    start = AutoModelForCausalLM.from_pretrained(student_dir).state_dict()
    moved = 0.0
    for name, value in whole.state_dict().items():
        assert torch.allclose(value, accumulated.state_dict()[name], atol=2e-6), name
        moved = max(moved, (value - start[name]).abs().max().item())
    assert moved > 1e-3  # the step did change the weights

    # the loss of a training step: alpha x mean KL + (1 - alpha) x mean cross-entropy, over the label tokens;
    # an evaluation loss is the plain cross-entropy
    student = AutoModelForCausalLM.from_pretrained(student_dir)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir)
    batch = SFTCollator(tokenizer.pad_token_id)([dataset[i] for i in range(8)])
    with torch.no_grad():
        plain = student(**batch).loss.item()
        kl, positions = kl_by_hand(student(**batch).logits, [teacher(**batch).logits], batch["labels"], 1.0)
        trainer.model = student.train()
        got = trainer.compute_loss(student, dict(batch)).item()
        student.eval()
        assert math.isclose(trainer.compute_loss(student, dict(batch)).item(), plain, rel_tol=1e-6)
    assert math.isclose(got, 0.5 * kl / positions + 0.5 * plain, rel_tol=1e-5)
    assert kl > 0.1  # the teacher is another model: the KL part is not zero


def test_pretrain_moves_a_new_model_to_its_teachers_distribution_and_takes_their_tokenizer(
    corpus, tokenizer, tmp_path
):
    teacher_dir = save_model(tmp_path / "teacher", tokenizer, sharpen=20.0, max_position_embeddings=64)
    common = dict(output_dir=None, max_steps=40, per_device_train_batch_size=8, learning_rate=3e-3, logging_steps=10,
                  eval_strategy="no", save_strategy="no", report_to="none", use_cpu=True, seed=7, disable_tqdm=True)

    def pretrain(out, tokenizer_name_or_path=None, **data):
        return run_pretrain(
            ModelArguments(preset="gpt-micro", config_overrides=TINY_GPT, tokenizer_name_or_path=tokenizer_name_or_path),
            PretrainDataArguments(train_files=[str(corpus)], block_size=32, sample_max_new_tokens=0,
                                  validation_split_percentage=10, **data),
            TrainingArguments(**{**common, "output_dir": str(out)}),
            verbose=False,
        )

    metrics = pretrain(tmp_path / "distilled", distill_from=[str(teacher_dir)], distill_alpha=1.0)
    plain_metrics = pretrain(tmp_path / "plain", tokenizer_name_or_path=str(teacher_dir))
    assert metrics["distilled_from"] == [str(teacher_dir)] and metrics["distill_alpha"] == 1.0
    assert "distilled_from" not in plain_metrics
    assert AutoTokenizer.from_pretrained(tmp_path / "distilled").get_vocab() == tokenizer.get_vocab()
    history = json.loads((tmp_path / "distilled" / "trainer_state.json").read_text())["log_history"]
    logged = [entry for entry in history if "distill_loss" in entry]
    assert len(logged) == 4 and all("lm_loss" in entry for entry in logged)
    assert logged[-1]["distill_loss"] < 0.8 * logged[0]["distill_loss"]
    assert all(math.isclose(e["loss"], e["distill_loss"], rel_tol=1e-3) for e in logged)  # alpha 1: the KL alone

    # on text, the distilled model's next-token distributions are much closer to the teacher's than those of the
    # same model trained on the text
    ids = tokenizer(corpus.read_text(encoding="utf-8")[:4000])["input_ids"]
    windows = torch.tensor(ids[: len(ids) // 32 * 32]).view(-1, 32)  # (N, 32)
    with torch.no_grad():
        teacher = AutoModelForCausalLM.from_pretrained(teacher_dir)(windows).logits

        def kl_to_teacher(folder):
            logits = AutoModelForCausalLM.from_pretrained(folder)(windows).logits
            total, positions = distillation_loss(logits, [teacher], windows)
            return (total / positions).item()

        distilled, plain = kl_to_teacher(tmp_path / "distilled"), kl_to_teacher(tmp_path / "plain")
    assert distilled < 0.7 * plain, (distilled, plain)


def test_sft_distills_on_the_assistants_tokens_from_a_teacher_equal_to_the_model_at_first(tokenizer, tmp_path):
    base = save_model(tmp_path / "base", tokenizer, max_position_embeddings=96)
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_instruction_data(40, seed=2)), encoding="utf-8")
    out = tmp_path / "sft"
    args = TrainingArguments(output_dir=str(out), max_steps=6, per_device_train_batch_size=4, learning_rate=3e-3,
                             logging_steps=1, eval_strategy="no", save_strategy="no", report_to="none",
                             use_cpu=True, disable_tqdm=True)
    metrics = run_sft(SFTArguments(model_name_or_path=str(base), train_file=str(data), sample_max_new_tokens=0,
                                   validation_split_percentage=0, distill_from=[str(base)], distill_alpha=0.5), args)
    assert metrics["distilled_from"] == [str(base)]
    logged = [e for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "distill_loss" in e]
    assert len(logged) == 6
    assert logged[0]["distill_loss"] < 1e-6  # step 1: the model is still its teacher, token for token
    assert logged[-1]["distill_loss"] > 1e-4  # then it moves away from it
    assert all(math.isclose(e["loss"], 0.5 * e["distill_loss"] + 0.5 * e["lm_loss"], rel_tol=1e-3) for e in logged)


def test_two_processes_distill_with_the_teachers_on_each_and_log_the_parts_over_both(corpus, tokenizer, tmp_path):
    """torchrun, 2 gloo workers on CPU, gradient accumulation 2; the student starts as a copy of its teacher."""
    teacher = save_model(tmp_path / "teacher", tokenizer, max_position_embeddings=32)
    out = tmp_path / "student"
    cmd = [
        str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", "2", "-m", "scratchformers.cli",
        "pretrain", "--model_name_or_path", str(teacher), "--distill_from", str(teacher), "--train_files", str(corpus),
        "--output_dir", str(out), "--block_size", "32", "--max_steps", "4", "--per_device_train_batch_size", "2",
        "--gradient_accumulation_steps", "2", "--logging_steps", "1", "--learning_rate", "1e-2", "--eval_strategy",
        "no", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true", "--sample_max_new_tokens", "0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "all_results.json").read_text())["world_size"] == 2
    logged = [e for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "distill_loss" in e]
    assert len(logged) == 4
    assert logged[0]["distill_loss"] < 1e-6 < logged[-1]["distill_loss"]  # each process: teacher and model see one batch
    # Trainer's loss is the mean over both processes; the parts are added up over both, so the formula holds
    assert all(math.isclose(e["loss"], 0.75 * e["distill_loss"] + 0.25 * e["lm_loss"], rel_tol=1e-4) for e in logged)


def test_bad_teachers_and_settings_are_refused_with_the_bad_value_named(corpus, tokenizer, tmp_path):
    def pretrain(out, preset="gpt-micro", **data):
        return run_pretrain(
            ModelArguments(preset=preset, config_overrides=TINY_GPT if preset == "gpt-micro" else None),
            PretrainDataArguments(train_files=[str(corpus)], block_size=32, sample_max_new_tokens=0, **data),
            TrainingArguments(output_dir=str(out), max_steps=1, report_to="none", use_cpu=True, disable_tqdm=True),
            verbose=False,
        )

    teacher = save_model(tmp_path / "teacher", tokenizer)
    for setting, message in [({"distill_alpha": 0.0}, "--distill_alpha must be in \\(0, 1\\].*got 0.0"),
                             ({"distill_alpha": 1.5}, "got 1.5"),
                             ({"distill_temperature": 0.0}, "--distill_temperature must be > 0, got 0.0")]:
        with pytest.raises(ValueError, match=message):
            pretrain(tmp_path / "never", distill_from=[str(teacher)], **setting)
        assert not (tmp_path / "never").exists()  # refused before anything is written
    with pytest.raises(ValueError, match="--distill_from trains a causal LM"):
        pretrain(tmp_path / "bert", preset="bert-tiny", distill_from=[str(teacher)])

    other = train_tokenizer([corpus], vocab_size=280, show_progress=False)
    stranger = save_model(tmp_path / "stranger", other)
    with pytest.raises(ValueError, match=f"--distill_from {stranger}: its tokenizer \\(280 tokens\\) is not the "
                                         "student's \\(300 tokens\\)"):
        pretrain(tmp_path / "run1", distill_from=[str(teacher), str(stranger)], overwrite=True)
    short = save_model(tmp_path / "short", tokenizer, max_position_embeddings=16)
    with pytest.raises(ValueError, match=f"--distill_from {short}: block size 32 is over the model's "
                                         "max_position_embeddings=16"):
        pretrain(tmp_path / "run2", distill_from=[str(short)], overwrite=True)
    encoder = tmp_path / "encoder"
    AutoModelForMaskedLM.from_config(build_config("bert-tiny", tokenizer)).save_pretrained(encoder)
    tokenizer.save_pretrained(encoder)
    with pytest.raises(ValueError, match=f"--distill_from {encoder}: a teacher must be a causal LM .*"
                                         "model_type 'scratch_bert' is not"):
        load_teachers([str(encoder)], tokenizer)

    # a teacher of transformers' own classes (e.g. converted by hub_scripts) is a causal LM too
    native = tmp_path / "native"
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=64)).save_pretrained(native)
    tokenizer.save_pretrained(native)
    [teacher] = load_teachers([str(native)], tokenizer, block_size=32)
    assert type(teacher).__name__ == "LlamaForCausalLM" and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())

"""Muon + AdamW as one optimizer: which parameters each half trains, Trainer steps, schedules and exact resume."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainingArguments

import scratchformers  # noqa: F401  (registers the Auto classes)
from scratchformers.tokenization_scratch import train_tokenizer
from scratchformers.training.arguments import ModelArguments, PretrainDataArguments
from scratchformers.training.optim import Muon, MuonAdamW, build_muon_adamw, muon_parameter_names
from scratchformers.training.pretrain import run_pretrain
from scratchformers.training.synthetic import make_story_corpus

TINY_LLAMA = "num_hidden_layers=2,hidden_size=64,num_attention_heads=2,num_key_value_heads=1,intermediate_size=128"


def test_muon_takes_the_block_matrices_and_adamw_the_embeddings_head_and_vectors(family):
    model = family.model()
    names = set(muon_parameter_names(model))
    for name, param in model.named_parameters():
        is_embedding_or_head = any(key in name for key in ("wte", "wpe", "embed_tokens", "lm_head"))
        assert (name in names) == (param.ndim == 2 and not is_embedding_or_head), name
    args = TrainingArguments(output_dir="unused", learning_rate=0.01, weight_decay=0.1, report_to=[])
    optimizer = build_muon_adamw(model, args, [n for n, p in model.named_parameters() if p.ndim >= 2])
    assert {id(p) for p in optimizer.muon.param_groups[0]["params"]} == {
        id(p) for n, p in model.named_parameters() if n in names
    }
    adamw_groups = {g["weight_decay"]: {id(p) for p in g["params"]} for g in optimizer.adamw.param_groups}
    assert adamw_groups[0.0] == {id(p) for n, p in model.named_parameters() if p.ndim == 1}


def test_one_scheduler_scales_both_halves_and_a_step_moves_every_parameter(family):
    model = family.model().train()
    args = TrainingArguments(output_dir="unused", learning_rate=0.01, weight_decay=0.0, report_to=[])
    optimizer = build_muon_adamw(model, args, [])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    assert {group["lr"] for group in optimizer.muon.param_groups + optimizer.adamw.param_groups} == {0.005}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.randint(3, 320, (2, 16))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    scheduler.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == set(before)
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def _muon_steps(optimizer_class, params, grads, **kwargs):
    params = [torch.nn.Parameter(p.clone()) for p in params]
    optimizer = optimizer_class(params, lr=0.02, weight_decay=0.1, **kwargs)
    for step_grads in grads:
        for param, grad in zip(params, step_grads):
            param.grad = grad.clone()
        optimizer.step()
    return [p.detach() for p in params]


@pytest.mark.parametrize("adjust_lr_fn", [None, "match_rms_adamw"])
def test_our_muon_in_bfloat16_is_torchs_muon_step_for_step(adjust_lr_fn):
    torch.manual_seed(0)
    params = [torch.randn(48, 128), torch.randn(128, 48)]  # wide and tall: both sides of the transpose
    grads = [[torch.randn_like(p) for p in params] for _ in range(3)]
    theirs = _muon_steps(torch.optim.Muon, params, grads, adjust_lr_fn=adjust_lr_fn)
    ours = _muon_steps(Muon, params, grads, adjust_lr_fn=adjust_lr_fn, ns_dtype=torch.bfloat16)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    in_float32 = _muon_steps(Muon, params, grads, adjust_lr_fn=adjust_lr_fn)  # the default
    assert all(not torch.equal(a, b) and torch.allclose(a, b, atol=2e-3) for a, b in zip(in_float32, theirs))


def test_muon_orthogonalizes_in_float32_to_singular_values_near_one():
    torch.manual_seed(0)
    grad = torch.randn(64, 32) @ torch.diag(torch.logspace(-3, 1, 32))  # condition number 10,000
    update = Muon.orthogonalize(grad, (3.4445, -4.7750, 2.0315), 5, 1e-7, torch.float32)
    assert update.dtype == torch.float32 and update.shape == grad.shape
    singular = torch.linalg.svdvals(update)
    assert singular[:20].min() > 0.6 and singular.max() < 1.3  # 1e-3 .. 10 in, all but the weakest near 1 out


def test_muon_adamw_on_cpu_runs_newton_schulz_in_float32(family):
    optimizer = build_muon_adamw(family.model(), TrainingArguments(output_dir="unused", report_to=[]), [])
    assert isinstance(optimizer.muon, Muon) and optimizer.muon.ns_dtype == torch.float32


def test_muon_adamw_needs_a_matrix_for_muon():
    with pytest.raises(ValueError, match="at least one weight matrix"):
        MuonAdamW([], [{"params": [torch.zeros(3, requires_grad=True)]}], lr=0.1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("muon_corpus")
    (folder / "train.txt").write_text("\n\n".join(make_story_corpus(120, seed=9)) + "\n", encoding="utf-8")
    train_tokenizer([folder / "train.txt"], vocab_size=300, show_progress=False).save_pretrained(folder / "tokenizer")
    return folder


def run(corpus, output_dir, **training):
    kwargs = dict(
        output_dir=str(output_dir), max_steps=6, per_device_train_batch_size=4, learning_rate=3e-3, warmup_steps=1,
        lr_scheduler_type="cosine", weight_decay=0.1, logging_steps=1, eval_strategy="no", save_steps=3,
        report_to=[], use_cpu=True, seed=11, disable_tqdm=True,
    )
    kwargs.update(training)
    return run_pretrain(
        ModelArguments(preset="llama2-tiny", config_overrides=TINY_LLAMA, tokenizer_name_or_path=str(corpus / "tokenizer")),
        PretrainDataArguments(train_files=[str(corpus / "train.txt")], block_size=32, use_muon=True,
                              sample_max_new_tokens=4, overwrite=True, validation_split_percentage=0),
        TrainingArguments(**kwargs),
        verbose=False,
    )


def test_pretrain_with_muon_learns_and_resume_reproduces_the_uninterrupted_run(corpus, tmp_path):
    full = tmp_path / "full"
    run(corpus, full)
    losses = [e["loss"] for e in json.loads((full / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert losses[-1] < losses[0]
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-3", resumed / "checkpoint-3")
    run(corpus, resumed, resume_from_checkpoint="last")
    a, b = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    saved = torch.load(full / "checkpoint-3" / "optimizer.pt", weights_only=True)
    assert set(saved) == {"muon", "adamw"} and saved["muon"]["state"]  # Muon's momentum is in the checkpoint

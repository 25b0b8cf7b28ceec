"""The models train under transformers' Trainer; gradient accumulation is exact."""

import torch
from datasets import Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments


def _dataset(rows=8, length=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 40, (rows, length), generator=generator)  # a small alphabet: learnable in a few steps
    labels = ids.clone()
    labels[::2, : length // 2] = -100  # uneven numbers of counted tokens per row
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": labels.tolist()})


def _args(tmp_path, **overrides):
    defaults = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, learning_rate=3e-3, max_steps=1, report_to=[],
        save_strategy="no", logging_steps=1, use_cpu=True, seed=0, data_seed=0, dataloader_num_workers=0,
        disable_tqdm=True,
    )
    return TrainingArguments(**{**defaults, **overrides})


def test_trainer_steps_lower_the_loss(family, tmp_path):
    model = family.model(seed=1).train()
    data = _dataset()
    trainer = Trainer(model=model, args=_args(tmp_path, max_steps=25, lr_scheduler_type="constant"), train_dataset=data)
    with torch.no_grad():
        before = model(torch.tensor(data["input_ids"]), labels=torch.tensor(data["labels"])).loss.item()
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    with torch.no_grad():
        after = model(torch.tensor(data["input_ids"]), labels=torch.tensor(data["labels"])).loss.item()
    assert len(losses) == 25
    assert after < 0.7 * before, (before, after)


class _GradientRecorder(TrainerCallback):
    def __init__(self):
        self.grads = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _first_step_gradients(family, tmp_path, batch, accumulation):
    model = family.model(seed=2).train()
    recorder = _GradientRecorder()
    args = _args(tmp_path, per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
                 max_grad_norm=0.0)
    trainer = Trainer(model=model, args=args, train_dataset=_dataset(rows=4), callbacks=[recorder])
    trainer.train()
    return recorder.grads


def test_gradient_accumulation_gives_the_gradients_of_the_large_batch(family, tmp_path):
    large = _first_step_gradients(family, tmp_path / "large", batch=4, accumulation=1)
    accumulated = _first_step_gradients(family, tmp_path / "accumulated", batch=1, accumulation=4)
    assert large.keys() == accumulated.keys() and len(large) > 0
    for name in large:
        torch.testing.assert_close(accumulated[name], large[name], atol=1e-6, rtol=1e-4, msg=name)

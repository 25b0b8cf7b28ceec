"""Training for a wall-clock budget with `Trainer`: stop when the time is spent, schedule the learning rate by time.

`TimeBudget` is a `TrainerCallback`: it measures the training time (evaluations and checkpoints included), stops
the run before the next step would pass the budget, and keeps the time spent in every checkpoint so a resumed run
continues the same clock. `time_budget_scheduler` runs any of transformers' step-based schedules (`cosine`,
`linear`, `warmup_stable_decay`, ...) on the fraction of the budget spent instead of the fraction of steps done,
so warmup and decay finish with the budget whatever the machine's speed.
按墙钟时间预算训练：时间用完即停止，学习率按已用时间（而非步数）预热和衰减，断点续训沿用已用时间。
"""

from __future__ import annotations

import math
import re
import time

import torch
from transformers import TrainerCallback, get_scheduler
from transformers.trainer_callback import ExportableState, ProgressCallback

# A schedule's step-based shape is evaluated at `fraction of the budget * SCHEDULE_RESOLUTION`.
SCHEDULE_RESOLUTION = 10_000
_UNITS = {"s": 1, "m": 60, "h": 3600}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smh])")


def parse_duration(text) -> float:
    """Seconds in a duration such as `"120s"`, `"2m"`, `"1h"`, `"1h30m"` or a plain number of seconds.

    解析时间预算字符串（如 "120s"、"2m"、"1h"、"1h30m"），返回秒数。
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        compact = str(text).strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", compact):
            seconds = float(compact)
        elif compact and re.fullmatch(r"(\d+(\.\d+)?[smh])+", compact):
            seconds = sum(float(value) * _UNITS[unit] for value, unit in _DURATION.findall(compact))
        else:
            raise ValueError(
                f"time budget {text!r} is not a duration: write e.g. '120s', '2m', '1h', '1h30m' or seconds as a number"
            )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"time budget {text!r} must be a positive duration")
    return seconds


class TimeBudget(TrainerCallback, ExportableState):
    """Stops training when `seconds` of training wall-clock are spent; its clock survives checkpoints and resume.

    The run stops after the step whose successor would end past the budget (the expected step time is the median
    of the last 20 steps), so a run ends within its budget unless a single step is longer than what is left.
    """

    def __init__(self, seconds: float, elapsed_before: float = 0.0):
        self.seconds = float(seconds)
        self.elapsed_before = float(elapsed_before)  # spent by earlier runs that this one resumes
        self._start = None
        self._stopped = None  # the clock's reading when training ended
        self._step_start = None
        self._step_times: list[float] = []

    def elapsed(self) -> float:
        """Training seconds spent so far (until training ended), earlier runs of a resumed training included."""
        if self._stopped is not None:
            return self._stopped
        return self.elapsed_before + (0.0 if self._start is None else time.perf_counter() - self._start)

    def expected_step_time(self) -> float:
        recent = sorted(self._step_times[-20:])
        return recent[len(recent) // 2] if recent else 0.0

    def spent(self) -> bool:
        """True once the next step would end past the budget."""
        return self.elapsed() + self.expected_step_time() > self.seconds

    def progress(self) -> float:
        """Fraction of the budget that will be spent when the next step ends, in [0, 1]; 1 once `spent()`."""
        if self.spent():
            return 1.0
        return min(1.0, (self.elapsed() + self.expected_step_time()) / self.seconds)

    def on_train_begin(self, args, state, control, **kwargs):
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if isinstance(saved, dict) and state.global_step > 0:  # resuming: continue the checkpoint's clock
            self.elapsed_before = float(saved.get("attributes", {}).get("elapsed_before", 0.0))
        self._start = time.perf_counter()
        self._stopped = None
        self._step_times = []

    def on_train_end(self, args, state, control, **kwargs):
        self._stopped = self.elapsed()  # saving and the final evaluation are not training time

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._step_start is not None:
            self._step_times.append(time.perf_counter() - self._step_start)
        if self.spent():
            control.should_training_stop = True

    def state(self) -> dict:
        return {"args": {"seconds": self.seconds}, "attributes": {"elapsed_before": self.elapsed()}}


def _budget_fraction_steps(value, name: str) -> int:
    """A warmup/decay length given as a fraction of the budget, in steps of the schedule's resolution."""
    if value is None:
        return None
    if not 0 <= value < 1:
        raise ValueError(
            f"with a time budget, {name} is a fraction of the budget (0 <= value < 1, e.g. 0.05), got {value}: "
            "the number of steps is not known before training"
        )
    return math.ceil(value * SCHEDULE_RESOLUTION)


def time_budget_scheduler(optimizer, budget: TimeBudget, name="cosine", warmup=0.0, scheduler_kwargs=None):
    """A `LambdaLR` whose factor is transformers' `name` schedule at the fraction of `budget` spent.

    `warmup` and any `num_*_steps` keyword of the schedule (e.g. `num_decay_steps` of `warmup_stable_decay`) are
    fractions of the budget. The factor reaches the schedule's floor when the budget is spent.
    将 transformers 的学习率调度（cosine、linear、warmup_stable_decay 等）改为按已用时间比例计算。
    """
    kwargs = dict(scheduler_kwargs or {})
    for key, value in kwargs.items():
        if key.startswith("num_") and key.endswith("_steps"):
            kwargs[key] = _budget_fraction_steps(value, f"lr_scheduler_kwargs[{key!r}]")
    # The shape of the schedule, built on a stand-in optimizer so that the real one is not touched.
    stand_in = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=optimizer.defaults["lr"])
    shape = get_scheduler(
        name,
        optimizer=stand_in,
        num_warmup_steps=_budget_fraction_steps(warmup, "warmup_steps"),
        num_training_steps=SCHEDULE_RESOLUTION,
        scheduler_specific_kwargs=kwargs,
    )
    if not isinstance(shape, torch.optim.lr_scheduler.LambdaLR):
        raise ValueError(f"lr_scheduler_type={name!r} does not follow a fixed schedule, so it cannot follow a time budget")
    factor = shape.lr_lambdas[0]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _step: factor(round(budget.progress() * SCHEDULE_RESOLUTION)))


class TimeBudgetProgress(ProgressCallback):
    """Trainer's progress bar measured in seconds of the budget: time spent, time left, steps done."""

    def __init__(self, budget: TimeBudget):
        super().__init__()
        self.budget = budget

    def on_train_begin(self, args, state, control, **kwargs):
        from tqdm.auto import tqdm

        if state.is_world_process_zero:
            self.training_bar = tqdm(
                total=round(self.budget.seconds),
                initial=round(self.budget.elapsed_before),
                unit="s",
                dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}s, {postfix}",
            )
        self.current_step = 0

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None:
            elapsed = min(self.budget.elapsed(), self.budget.seconds)
            self.training_bar.n = round(elapsed)
            left = max(0.0, self.budget.seconds - elapsed)
            self.training_bar.set_postfix_str(f"{left:.0f}s left, step {state.global_step}", refresh=False)
            self.training_bar.refresh()

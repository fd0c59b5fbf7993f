"""The driver's gate: may one more trial start, and how long will the rest take.

The budget (engine/search/budget.py) says what the study may still spend; this gate adds the
clock: a time budget's deadline, the pace measured as trials train (engine/search/pace.py),
and the estimates the driver prints and records on the study for the app.
"""

from __future__ import annotations

import math
import time

import optuna

from engine.protocol import Prediction
from engine.search.budget import BudgetState, SearchBudget
from engine.search.pace import Pace
from engine.units import format_duration

__all__ = ["BudgetGate"]


class BudgetGate:
    """The budget of one driver's search, with its deadline and measured pace.

    Args:
        study: The study whose trials the budget counts.
        budget: The limits (whole study; the deadline is this driver's).
        max_concurrent: Trials this driver runs at once (for the time estimate).
    """

    def __init__(self, study: optuna.Study, budget: SearchBudget, *, max_concurrent: int = 1):
        self.study = study
        self.budget = budget
        self.epochs = budget.epochs_per_trial
        self.max_concurrent = max_concurrent
        self.pace = Pace()

    def read(self) -> BudgetState:
        """What the study has spent (take the database lock around it to decide)."""
        return self.budget.read(self.study)

    def deadline_reached(self) -> str | None:
        """Why no new trial can finish by the deadline at the fastest pace seen (None: one
        can, or there is no time budget)."""
        deadline = self.budget.deadline
        if deadline is None:
            return None
        smallest = min((m for m, _ in self.pace.samples), default=None)
        fastest = None if smallest is None else self.pace.epoch_seconds(smallest)
        if time.time() >= deadline or (fastest is not None
                                       and time.time() + self.epochs * fastest > deadline):
            return "time budget reached: no new trial could finish by the deadline"
        return None

    def would_miss_deadline(self, pred: Prediction) -> str | None:
        """Why a candidate of this predicted size would not finish by the deadline (None: it
        would, or the pace is not measured yet)."""
        if self.budget.deadline is None:
            return None
        epoch_s = self.pace.epoch_seconds(pred.peak_memory_mb)
        if epoch_s is None or time.time() + self.epochs * epoch_s <= self.budget.deadline:
            return None
        return (f"time budget reached: a {pred.peak_memory_mb:.0f} MB candidate needs "
                f"~{format_duration(self.epochs * epoch_s)} at this pace, beyond the deadline")

    def eta_s(self, *, until_deadline: bool = True) -> float | None:
        """Seconds until the budget is spent at the measured pace, or until the deadline if
        that comes first (None: not measured yet, or no budget at all)."""
        epoch_s = self.pace.epoch_seconds()
        if epoch_s is None:
            return None
        state = self.read()
        left = [self.budget.trials_left(state) * self.epochs, self.budget.epoch_room(state)]
        epochs_left = min(left) + state.promised_epochs
        eta = epochs_left * epoch_s / max(1, min(self.max_concurrent, max(1, state.running)))
        if until_deadline and self.budget.deadline is not None:
            eta = min(eta, max(0.0, self.budget.deadline - time.time()))
        return eta if math.isfinite(eta) else None

    def estimate_line(self) -> str | None:
        """After the first measured epoch: what the whole search will take at this pace."""
        eta = self.eta_s(until_deadline=False)
        epoch_s = self.pace.epoch_seconds()
        state = self.read()
        if eta is None or epoch_s is None:
            return None
        what = (f"{self.budget.n_trials} trials" if self.budget.n_trials is not None
                else f"{self.budget.budget_epochs} epochs")
        if self.budget.deadline is None:
            hint = (f"; --set search.budget_minutes={max(1, round(eta / 60 / 4))} bounds it"
                    if eta > 600 else "")
        else:
            left = max(0.0, self.budget.deadline - time.time())
            hint = f"; the time budget ends it in {format_duration(left)}" if left < eta else ""
        return (f"estimate: ~{format_duration(eta)} for {what} at this pace "
                f"({format_duration(epoch_s)} an epoch, {max(1, state.running)} at a time)"
                f"{hint}")

    def progress_line(self) -> str:
        """Trials trained, epochs spent, running trials and the ETA, in one line."""
        state = self.read()
        parts = [f"{state.finished}" + (f"/{self.budget.n_trials}" if self.budget.n_trials
                                        else "") + " trials trained"]
        if self.budget.budget_epochs is not None:
            parts.append(f"{state.spent_epochs}/{self.budget.budget_epochs} epochs")
        if state.running:
            parts.append(f"{state.running} running")
        eta = self.eta_s()
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        return "progress: " + ", ".join(parts)

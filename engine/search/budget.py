"""The budget of a search, counted in the study so that several drivers share it.

Every limit counts the whole study, earlier runs and other drivers included:

- ``n_trials`` counts trained trials (``TrialRecord.counts_as_trained``, storage/record/):
  finished ones (COMPLETE, PRUNED, or FAIL while training) and those running now. Candidates
  screened out before training do not count; ``max_rejected`` bounds them separately. Trials
  cut off by a stopped or dead driver (FAIL "interrupted") do not count: their parameters are
  queued again.
- ``budget_epochs`` counts every epoch any trial trained (one intermediate value per epoch)
  plus the epochs running trials may still train.
- ``budget_minutes`` is the wall clock of one driver's run (its deadline).

A driver decides whether one more trial may start from :meth:`SearchBudget.read` taken under
the database lock, and asks Optuna for the trial under the same lock: N drivers started
together finish exactly the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from storage import read_trials

__all__ = ["BudgetState", "SearchBudget", "finished_trials"]


def finished_trials(study: optuna.Study) -> int:
    """Finished trials that count towards ``n_trials``."""
    return sum(1 for r in read_trials(study) if r.finished and r.counts_as_trained)


@dataclass(frozen=True)
class BudgetState:
    """What a study has spent, read in one pass over its trials.

    Attributes:
        finished: Finished trials that count towards ``n_trials``.
        running: Trials running now (any driver), screened or not.
        spent_epochs: Epochs trained so far.
        promised_epochs: Epochs the running trials may still train.
        rejected: Candidates screened out before training.
    """

    finished: int
    running: int
    spent_epochs: int
    promised_epochs: int
    rejected: int


@dataclass(frozen=True)
class SearchBudget:
    """The limits of a search (None: no such limit) and the rules that apply them.

    Attributes:
        n_trials: Trained trials, whole study.
        budget_epochs: Training epochs, whole study.
        epochs_per_trial: Epochs of one full trial.
        max_rejected: Screened-out candidates, whole study.
        deadline: Unix time by which this driver's trials must end (None: no time budget).
    """

    n_trials: int | None
    budget_epochs: int | None
    epochs_per_trial: int
    max_rejected: int = 200
    deadline: float | None = None

    def read(self, study: optuna.Study) -> BudgetState:
        """Count what ``study`` has spent (take the database lock around it to decide)."""
        finished = running = spent = promised = rejected = 0
        for r in read_trials(study):
            spent += r.epochs_trained
            if r.state == TrialState.RUNNING:
                running += 1
                promised += max(0, self.epochs_per_trial - r.epochs_trained)
            elif r.finished:
                if r.screened_out:
                    rejected += 1
                elif r.counts_as_trained:
                    finished += 1
        return BudgetState(finished, running, spent, promised, rejected)

    def trials_left(self, state: BudgetState) -> float:
        """New trials that may start (``inf``: no trial limit)."""
        if self.n_trials is None:
            return math.inf
        return max(0, self.n_trials - state.finished - state.running)

    def epoch_room(self, state: BudgetState) -> float:
        """Epochs neither trained nor promised to running trials (``inf``: no epoch limit)."""
        if self.budget_epochs is None:
            return math.inf
        return self.budget_epochs - state.spent_epochs - state.promised_epochs

    def why_not(self, state: BudgetState) -> str | None:
        """Why no new trial may start now (None: one may); the reason is final only when no
        trial is running (a running trial may stop early and leave epochs)."""
        if self.trials_left(state) <= 0:
            return f"trial budget reached: {state.finished} of {self.n_trials} trials trained"
        if self.epoch_room(state) < self.epochs_per_trial:
            return (f"epoch budget reached: {state.spent_epochs} of {self.budget_epochs} epochs "
                    "trained")
        if state.rejected >= self.max_rejected:
            return (f"{state.rejected} candidates were screened out (search.max_rejected = "
                    f"{self.max_rejected}); loosen the caps or shrink the search space")
        return None

    def describe(self, state: BudgetState) -> str:
        """The state of the budget in words ("1 finished, 2 to run, 4 of 9 epochs trained")."""
        parts = [f"{state.finished} finished"]
        if state.running:
            parts.append(f"{state.running} running")
        if self.n_trials is not None:
            parts.append(f"{int(self.trials_left(state))} to run")
        if self.budget_epochs is not None:
            parts.append(f"{state.spent_epochs} of {self.budget_epochs} epochs trained")
        return ", ".join(parts)

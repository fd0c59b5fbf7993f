"""The budget of a search: how many trials and training epochs it may still spend.

Both limits count the whole study, earlier runs included: ``n_trials`` counts finished trials
(those cut off by a stopped search are re-queued and do not count), ``budget_epochs`` counts
every epoch any trial trained (one intermediate value per epoch). The search stops at
whichever is reached first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from storage import schema

__all__ = ["SearchBudget", "finished_trials", "spent_epochs"]

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def finished_trials(study: optuna.Study) -> int:
    """Trials that count towards ``n_trials``: finished, and not cut off by a stopped search."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=_FINISHED)
               if t.user_attrs.get(schema.TRIAL_FAIL_REASON) != schema.INTERRUPTED_REASON)


def spent_epochs(study: optuna.Study) -> int:
    """Epochs trained by every trial of the study so far (one intermediate value per epoch)."""
    return sum(len(t.intermediate_values) for t in study.get_trials(deepcopy=False))


@dataclass
class SearchBudget:
    """What a search may still spend; updated as trials start and train.

    Attributes:
        trials_left: New trials that may start (``math.inf``: no trial limit).
        budget_epochs: Epochs all trials together may train (None: no epoch limit).
        spent_epochs: Epochs trained so far, earlier runs included.
        epochs_per_trial: Epochs of one full trial.
        finished: Trials that counted towards ``n_trials`` when the run began.
        n_trials: The trial limit (None: none).
    """

    trials_left: float
    budget_epochs: int | None
    spent_epochs: int
    epochs_per_trial: int
    finished: int = 0
    n_trials: int | None = None

    @classmethod
    def of_study(cls, study: optuna.Study, *, n_trials: int | None, budget_epochs: int | None,
                 epochs_per_trial: int) -> SearchBudget:
        """The budget left in ``study`` for the given limits."""
        done = finished_trials(study)
        left = math.inf if n_trials is None else max(0, n_trials - done)
        return cls(left, budget_epochs, spent_epochs(study), epochs_per_trial, done, n_trials)

    def epoch_room(self, promised: int = 0) -> float:
        """Epochs neither trained nor ``promised`` to running trials (``inf``: no limit)."""
        if self.budget_epochs is None:
            return math.inf
        return self.budget_epochs - self.spent_epochs - promised

    def trial_fits(self, promised: int = 0) -> bool:
        """A new trial may start: trials are left and its full training still fits."""
        return self.trials_left > 0 and self.epoch_room(promised) >= self.epochs_per_trial

    def start_trial(self) -> None:
        """Count one started trial against the trial limit."""
        self.trials_left -= 1

    def add_epochs(self, n: int) -> None:
        """Count ``n`` newly trained epochs."""
        self.spent_epochs += n

    def describe(self) -> str:
        """The state of the budget in words ("1 finished, 2 to run, 4 of 9 epochs trained")."""
        parts = [f"{self.finished} finished"]
        if self.n_trials is not None:
            parts.append(f"{int(self.trials_left)} to run")
        if self.budget_epochs is not None:
            parts.append(f"{self.spent_epochs} of {self.budget_epochs} epochs trained")
        return ", ".join(parts)

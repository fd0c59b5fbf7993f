"""Read-only views of a study for the app, the CLI summary and export.

Everything the app shows comes through here; the app never opens a database itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from storage.front import front_numbers
from storage.live import StudySnapshot
from storage.record import BudgetRecord, DriverInfo, StudyRecord, TrialRecord

__all__ = ["DriverInfo", "SearchProgress", "TrialRow", "best_accuracy_trial", "drivers",
           "is_feasible", "memory_cap_mb", "pareto_numbers", "progress_of", "rows_of",
           "search_progress", "trial_rows"]


def memory_cap_mb(study: optuna.Study) -> float | None:
    """The study's per-trial memory cap (MB), if its spec set one."""
    return StudyRecord.read(study).cap_mb


def is_feasible(t: FrozenTrial) -> bool:
    """True when every recorded constraint is satisfied (no constraints = feasible)."""
    return all(v <= 0 for v in t.constraints.values())


def pareto_numbers(study: optuna.Study) -> set[int]:
    """Trial numbers on the feasible Pareto front (Optuna's ``best_trials``; for a single
    objective, the best trial)."""
    if len(study.directions) > 1:
        return {t.number for t in study.best_trials}
    try:
        return {study.best_trial.number}
    except ValueError:  # no feasible complete trial yet
        return set()


@dataclass(frozen=True)
class TrialRow:
    """One trial, flattened for tables and charts."""

    number: int
    state: str
    family: str | None
    val_accuracy: float | None
    peak_memory_mb: float | None
    param_count: int | None
    memory_method: str | None
    feasible: bool
    pareto: bool
    epochs_run: int | None
    wall_time_s: float | None
    reason: str | None
    params: dict[str, Any] = field(default_factory=dict)
    curve: list[float] = field(default_factory=list)
    switched_at: int | None = None
    interrupted: bool = False

    @property
    def category(self) -> str:
        """'pareto', 'dominated', 'infeasible', 'interrupted' (cut off by a stopped search,
        queued again), or the state for other unfinished trials."""
        if self.interrupted:
            return "interrupted"
        if self.state != "COMPLETE":
            return self.state.lower()
        if not self.feasible:
            return "infeasible"
        return "pareto" if self.pareto else "dominated"


def trial_rows(study: optuna.Study) -> list[TrialRow]:
    """Every trial of ``study`` as a :class:`TrialRow`, in trial-number order."""
    return rows_of(StudySnapshot.of(study))


def rows_of(snap: StudySnapshot) -> list[TrialRow]:
    """Every trial of a snapshot as a :class:`TrialRow`, in trial-number order."""
    front = front_numbers(snap.records, snap.record.directions)
    objectives = snap.record.objectives
    rows = []
    for r in snap.records:
        # Objective values are the record of truth; the recorded fields fill in the rest.
        told = {m: v for m, v in zip(objectives, r.values or (), strict=False)
                if isinstance(v, (int, float)) and math.isfinite(v)}
        pc = told.get("param_count", r.param_count)
        # A candidate rejected before training has no accuracy (its objective value is a
        # placeholder for the sampler); an interrupted trial's numbers are those of an
        # epoch it never finished the run of (its parameters run again), so none are shown.
        no_result = r.screened_out or r.interrupted
        rows.append(TrialRow(
            number=r.number,
            state=r.state.name,
            family=r.family,
            val_accuracy=None if no_result else told.get("val_accuracy", r.val_accuracy),
            peak_memory_mb=told.get("peak_memory_mb", r.peak_memory_mb),
            param_count=None if pc is None else int(pc),
            memory_method=r.memory_method,
            feasible=r.feasible,
            pareto=r.number in front,
            epochs_run=r.epochs_run,
            wall_time_s=None if r.interrupted else r.wall_time_s,
            reason=r.reason,
            params=dict(r.params),
            curve=r.learning_curve,
            switched_at=r.switched_at,
            interrupted=r.interrupted,
        ))
    return rows


def best_accuracy_trial(study: optuna.Study) -> FrozenTrial:
    """The feasible Pareto trial with the highest validation accuracy (export's default).

    Raises:
        StorageError: the study has no feasible finished trial with weights.
    """
    from engine.errors import StorageError

    front = pareto_numbers(study)
    complete = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.number in front}
    candidates = [r for r in map(TrialRecord.read, complete.values())
                  if r.weights_artifact_id is not None]
    if not candidates:
        raise StorageError(f"study {study.study_name!r} has no feasible finished trial with saved "
                           "weights yet; wait for a trial to complete or pass --trial N")
    best = max(candidates, key=lambda r: -1.0 if r.val_accuracy is None else r.val_accuracy)
    return complete[best.number]


def drivers(study: optuna.Study) -> list[DriverInfo]:
    """Every driver that recorded itself on ``study``, oldest first."""
    return list(StudyRecord.read(study).drivers)


@dataclass(frozen=True)
class SearchProgress:
    """How far a study's search has come, for progress bars.

    Attributes:
        finished: Finished trials that count towards ``n_trials`` (neither interrupted nor
            screened out before training).
        n_trials: The trial budget (None: none).
        epochs: Epochs trained by all trials so far.
        budget_epochs: The epoch budget (None: none).
        running: Trials running now.
        live_drivers: Drivers whose heartbeat is fresh.
        eta_s: The freshest live driver's estimate of the seconds left (None: unknown).
        deadline: Unix time the time budget ends (None: no time budget).
    """

    finished: int
    n_trials: int | None
    epochs: int
    budget_epochs: int | None
    running: int
    live_drivers: int
    eta_s: float | None
    deadline: float | None

    @property
    def fraction(self) -> float | None:
        """Share of the budget spent, 0..1 (the larger of trials and epochs; None: no budget)."""
        parts = []
        if self.n_trials:
            parts.append(self.finished / self.n_trials)
        if self.budget_epochs:
            parts.append(self.epochs / self.budget_epochs)
        return min(1.0, max(parts)) if parts else None


def search_progress(study: optuna.Study, now: float | None = None) -> SearchProgress:
    """The progress of ``study``'s search against its recorded budget (trials count as
    :attr:`~storage.record.TrialRecord.counts_as_trained` says, as the search's budget does)."""
    return progress_of(StudySnapshot.of(study), now)


def progress_of(snap: StudySnapshot, now: float | None = None) -> SearchProgress:
    """:func:`search_progress` of a snapshot."""
    rec = snap.record
    budget = rec.budget or BudgetRecord()
    trials = snap.records
    live = [d for d in rec.drivers if d.live(now)]
    freshest = max(live, key=lambda d: d.heartbeat_at, default=None)
    return SearchProgress(
        finished=sum(1 for r in trials if r.finished and r.counts_as_trained),
        n_trials=budget.n_trials,
        epochs=sum(r.epochs_trained for r in trials),
        budget_epochs=budget.budget_epochs,
        running=sum(r.state == TrialState.RUNNING for r in trials), live_drivers=len(live),
        eta_s=freshest.eta_s if freshest else None,
        deadline=freshest.deadline if freshest else None)

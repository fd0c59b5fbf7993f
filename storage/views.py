"""Read-only views of a study for the app, the CLI summary and export.

Everything the app shows comes through here; the app never opens a database itself.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from storage import schema

__all__ = ["DriverInfo", "SearchProgress", "TrialRow", "best_accuracy_trial", "drivers",
           "is_feasible", "memory_cap_mb", "pareto_numbers", "search_progress", "trial_rows"]


def memory_cap_mb(study: optuna.Study) -> float | None:
    """The study's per-trial memory cap (MB), if its spec set one."""
    cap = (study.user_attrs.get(schema.STUDY_CONSTRAINTS) or {}).get("gpu_ram_mb")
    return float(cap) if isinstance(cap, (int, float)) else None


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

    @property
    def category(self) -> str:
        """'pareto', 'dominated', 'infeasible', or the state for unfinished trials."""
        if self.state != "COMPLETE":
            return self.state.lower()
        if not self.feasible:
            return "infeasible"
        return "pareto" if self.pareto else "dominated"


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def trial_rows(study: optuna.Study) -> list[TrialRow]:
    """Every trial of ``study`` as a :class:`TrialRow`, in trial-number order."""
    front = pareto_numbers(study)
    objectives = study.user_attrs.get(schema.STUDY_OBJECTIVES) or []
    rows = []
    for t in study.get_trials(deepcopy=False):
        # Objective values are the record of truth; user attributes fill in the other metrics.
        ua = {**t.user_attrs, **dict(zip(objectives, t.values or [], strict=False))}
        cfg = ua.get(schema.TRIAL_CONFIG) or {}
        curve = ua.get(schema.TRIAL_CURVE) or [v for _, v in sorted(t.intermediate_values.items())]
        pc = ua.get(schema.TRIAL_PARAM_COUNT)
        rows.append(TrialRow(
            number=t.number,
            state=t.state.name,
            family=cfg.get("family"),
            # A candidate rejected before training has no accuracy (its objective value is a
            # placeholder for the sampler).
            val_accuracy=(None if ua.get(schema.TRIAL_TRAINED) is False
                          else _num(ua.get(schema.TRIAL_VAL_ACCURACY))),
            peak_memory_mb=_num(ua.get(schema.TRIAL_PEAK_MEMORY_MB)),
            param_count=int(pc) if isinstance(pc, (int, float)) else None,
            memory_method=ua.get(schema.TRIAL_MEMORY_METHOD),
            feasible=is_feasible(t),
            pareto=t.number in front,
            epochs_run=ua.get(schema.TRIAL_EPOCHS_RUN),
            wall_time_s=_num(ua.get(schema.TRIAL_WALL_TIME_S)),
            reason=ua.get(schema.TRIAL_FAIL_REASON) or ua.get(schema.TRIAL_STATE_REASON),
            params=dict(t.params),
            curve=list(curve),
            switched_at=ua.get(schema.TRIAL_SWITCHED_AT),
        ))
    return rows


def best_accuracy_trial(study: optuna.Study) -> FrozenTrial:
    """The feasible Pareto trial with the highest validation accuracy (export's default).

    Raises:
        StorageError: the study has no feasible finished trial with weights.
    """
    from engine.errors import StorageError

    front = pareto_numbers(study)
    candidates = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                  if t.number in front and schema.TRIAL_WEIGHTS in t.user_attrs]
    if not candidates:
        raise StorageError(f"study {study.study_name!r} has no feasible finished trial with saved "
                           "weights yet; wait for a trial to complete or pass --trial N")
    return max(candidates, key=lambda t: t.user_attrs.get(schema.TRIAL_VAL_ACCURACY, -1.0))


@dataclass(frozen=True)
class DriverInfo:
    """One ``engine search`` process that worked on a study (see ``schema.DRIVER_PREFIX``)."""

    id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    state: str
    deadline: float | None = None
    eta_s: float | None = None
    running_trials: int = 0

    def live(self, now: float | None = None) -> bool:
        """Running, with a heartbeat younger than ``schema.DRIVER_STALE_S``."""
        now = time.time() if now is None else now
        return self.state == "running" and now - self.heartbeat_at <= schema.DRIVER_STALE_S


def drivers(study: optuna.Study) -> list[DriverInfo]:
    """Every driver that recorded itself on ``study``, oldest first."""
    out = []
    for key, value in study.user_attrs.items():
        if key.startswith(schema.DRIVER_PREFIX) and isinstance(value, dict):
            out.append(DriverInfo(
                id=key[len(schema.DRIVER_PREFIX):], host=str(value.get("host", "?")),
                pid=int(value.get("pid", 0)), started_at=float(value.get("started_at", 0.0)),
                heartbeat_at=float(value.get("heartbeat_at", 0.0)),
                state=str(value.get("state", "running")), deadline=value.get("deadline"),
                eta_s=value.get("eta_s"), running_trials=int(value.get("running_trials", 0))))
    return sorted(out, key=lambda d: d.started_at)


@dataclass(frozen=True)
class SearchProgress:
    """How far a study's search has come, for progress bars.

    Attributes:
        finished: Trials that count towards ``n_trials`` (interrupted ones do not).
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
    """The progress of ``study``'s search against its recorded budget."""
    budget = study.user_attrs.get(schema.STUDY_BUDGET) or {}
    trials = study.get_trials(deepcopy=False)
    finished = sum(1 for t in trials if t.state.is_finished()
                   and t.user_attrs.get(schema.TRIAL_FAIL_REASON) != schema.INTERRUPTED_REASON)
    live = [d for d in drivers(study) if d.live(now)]
    freshest = max(live, key=lambda d: d.heartbeat_at, default=None)
    return SearchProgress(
        finished=finished, n_trials=budget.get("n_trials"),
        epochs=sum(len(t.intermediate_values) for t in trials),
        budget_epochs=budget.get("budget_epochs"),
        running=sum(t.state == TrialState.RUNNING for t in trials), live_drivers=len(live),
        eta_s=freshest.eta_s if freshest else None,
        deadline=freshest.deadline if freshest else None)

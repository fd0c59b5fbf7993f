"""Read-only views of a study for the app, the CLI summary and export.

Everything the app shows comes through here; the app never opens a database itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from storage import schema

__all__ = ["TrialRow", "best_accuracy_trial", "is_feasible", "memory_cap_mb", "pareto_numbers",
           "trial_rows"]


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

"""The trial record: one trial's Optuna fields and everything WaveSearch writes on it, with
its one read (:meth:`TrialRecord.read`) and one write (:func:`write_trial`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar

import optuna
from optuna.trial import FrozenTrial, TrialState

from storage import optuna_api, schema

__all__ = ["TrialRecord", "read_trials", "write_trial"]


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) \
        and math.isfinite(v) else None


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) \
        and math.isfinite(v) else None


# -- trials ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialRecord:
    """One trial as WaveSearch recorded it: Optuna's own fields and every attribute we write.

    Attributes (Optuna's):
        number: The trial's number in its study.
        trial_id: Optuna's storage id of the trial (what the storage calls take).
        state: Optuna's state.
        params: The sampled parameters (``model.*``, ``train.*``, ``family``).
        values: Objective values, in the study's order (None until told COMPLETE).
        constraints: Named constraint values, <= 0 satisfied.
        intermediate: Validation accuracy after each epoch (epoch -> value).
        datetime_start, datetime_complete: When it was asked and finished.

    Attributes (ours; None when not recorded):
        config: ``TrialConfig.to_dict()``: family, model keyword arguments, training recipe.
        val_accuracy: Validation top-1 of the last epoch trained.
        curve: Validation accuracy after each epoch, written when the trial ends.
        param_count: Parameters of the model (predicted before training, then measured).
        peak_memory_mb: Peak training memory in MB.
        memory_method: ``predicted`` or ``measured``.
        wall_time_s: Seconds the worker spent on the trial.
        run_started_at: Unix time the worker began.
        epochs_run: Epochs trained.
        switched_at: First epoch trained with SGD under DualOpT (None: never switched).
        device, host, node: Where it ran (``node`` is the Ray node id).
        trained: False for a candidate screened out before training (over a cap).
        fail_reason: Why it failed (``schema.INTERRUPTED_REASON``: cut off by a stopped
            search, its parameters queued again).
        state_reason: Why it was pruned or is infeasible.
        constraint_violations: The violations told to Optuna, by name.
        weights_artifact_id: The artifact holding its trained weights.
        tune_trial_id: Ray Tune's id of the trial.
        probe_logits: The trained model's logits on the fixed probe input.
        driver_id: The ``engine search`` process that runs it.
    """

    number: int
    trial_id: int
    state: TrialState
    params: dict[str, Any] = field(default_factory=dict)
    values: tuple[float, ...] | None = None
    constraints: dict[str, float] = field(default_factory=dict)
    intermediate: dict[int, float] = field(default_factory=dict)
    datetime_start: datetime | None = None
    datetime_complete: datetime | None = None
    config: dict[str, Any] | None = None
    val_accuracy: float | None = None
    curve: tuple[float, ...] | None = None
    param_count: int | None = None
    peak_memory_mb: float | None = None
    memory_method: str | None = None
    wall_time_s: float | None = None
    run_started_at: float | None = None
    epochs_run: int | None = None
    switched_at: int | None = None
    device: str | None = None
    host: str | None = None
    node: str | None = None
    trained: bool | None = None
    fail_reason: str | None = None
    state_reason: str | None = None
    constraint_violations: dict[str, float] | None = None
    weights_artifact_id: str | None = None
    tune_trial_id: str | None = None
    probe_logits: Any = None
    driver_id: str | None = None

    @classmethod
    def read(cls, t: FrozenTrial) -> TrialRecord:
        """The record of an Optuna trial (the one read of trial attributes)."""
        ua = t.user_attrs
        got = {name: ua.get(key) for name, key in _TRIAL_KEYS.items() if key in ua}
        for name in ("val_accuracy", "peak_memory_mb", "wall_time_s", "run_started_at"):
            if name in got:
                got[name] = _num(got[name])
        for name in ("param_count", "epochs_run", "switched_at"):
            if name in got:
                got[name] = _int(got[name])
        if "config" in got and not isinstance(got["config"], dict):
            got["config"] = None
        if isinstance(got.get("curve"), list):
            got["curve"] = tuple(got["curve"])
        elif "curve" in got:
            got["curve"] = None
        return cls(number=t.number, trial_id=optuna_api.trial_id(t), state=t.state,
                   params=dict(t.params), values=None if t.values is None else tuple(t.values),
                   constraints=dict(t.constraints or {}),
                   intermediate=dict(t.intermediate_values),
                   datetime_start=t.datetime_start, datetime_complete=t.datetime_complete,
                   **got)

    # -- the rules every reader shares ------------------------------------------------------
    @property
    def interrupted(self) -> bool:
        """Cut off by a stopped or dead driver: it does not count, its parameters run again."""
        return self.fail_reason == schema.INTERRUPTED_REASON

    @property
    def screened_out(self) -> bool:
        """A candidate rejected before training (over a cap): it never trained."""
        return self.trained is False

    @property
    def counts_as_trained(self) -> bool:
        """True for a trial that counts towards the trial budget and the search's progress:
        running or finished, neither screened out before training nor interrupted."""
        return not (self.state == TrialState.WAITING or self.interrupted or self.screened_out)

    @property
    def finished(self) -> bool:
        """COMPLETE, PRUNED or FAIL."""
        return self.state.is_finished()

    @property
    def feasible(self) -> bool:
        """Every recorded constraint satisfied (no constraints = feasible)."""
        return all(v <= 0 for v in self.constraints.values())

    @property
    def family(self) -> str | None:
        """The model family of its config."""
        return (self.config or {}).get("family")

    @property
    def reason(self) -> str | None:
        """Why it failed, was pruned or is infeasible."""
        return self.fail_reason or self.state_reason

    @property
    def epochs_trained(self) -> int:
        """Epochs trained so far (one intermediate value per epoch)."""
        return len(self.intermediate)

    # The fields a checkpoint carries as the search's metrics of the trial (export).
    METRIC_FIELDS: ClassVar[tuple[str, ...]] = ("val_accuracy", "peak_memory_mb", "memory_method", "param_count",
                     "epochs_run", "wall_time_s")

    def metrics(self) -> dict[str, Any]:
        """The search's metrics of the trial (``METRIC_FIELDS``; None where not recorded)."""
        return {name: getattr(self, name) for name in self.METRIC_FIELDS}

    @property
    def learning_curve(self) -> list[float]:
        """Validation accuracy after each epoch (the final record, else the live values)."""
        if self.curve is not None:
            return list(self.curve)
        return [v for _, v in sorted(self.intermediate.items())]


# Optuna's own fields; every other field of TrialRecord is a user attribute stored under its
# own name, except these two, stored under older names (storage.schema lists every key).
_OPTUNA_FIELDS = {"number", "trial_id", "state", "params", "values", "constraints",
                  "intermediate", "datetime_start", "datetime_complete"}
_RENAMED = {"curve": schema.TRIAL_CURVE, "node": schema.TRIAL_NODE}
_TRIAL_KEYS = {f.name: _RENAMED.get(f.name, f.name) for f in fields(TrialRecord)
               if f.name not in _OPTUNA_FIELDS}


def check_fields(values: dict[str, Any], keys: dict[str, str], what: str) -> None:
    """Refuse names that are not recorded fields (a typo must not become a new attribute)."""
    unknown = sorted(set(values) - set(keys))
    if unknown:
        raise TypeError(f"not a recorded {what} field: {', '.join(unknown)} (fields: "
                        f"{', '.join(keys)})")


def write_trial(study: optuna.Study, trial_id: int, **values: Any) -> None:
    """Record fields of :class:`TrialRecord` on a trial (the one write of trial attributes).

    Only the fields given are written; a None value is skipped (absent means "not
    recorded"). Optuna refuses attributes on a finished trial, so write before telling it.

    Raises:
        TypeError: a name that is not one of our recorded fields.
    """
    check_fields(values, _TRIAL_KEYS, "trial")
    storage = optuna_api.storage(study)
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, tuple):
            value = list(value)
        storage.set_trial_user_attr(trial_id, _TRIAL_KEYS[name], value)


def read_trials(study: optuna.Study, states: Iterable[TrialState] | None = None
                ) -> list[TrialRecord]:
    """Every trial of ``study`` (or those in ``states``) as records, in number order."""
    trials = study.get_trials(deepcopy=False,
                              states=None if states is None else tuple(states))
    return [TrialRecord.read(t) for t in trials]

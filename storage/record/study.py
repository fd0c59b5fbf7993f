"""The study record: what WaveSearch writes on a study (its spec, caps, data, budget,
drivers, retrains), with its one read (:meth:`StudyRecord.read`) and one write
(:func:`write_study`)."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import optuna

from storage import optuna_api, schema
from storage.record.trial import _int, _num, check_fields

__all__ = ["BudgetRecord", "DriverInfo", "StudyRecord", "cap_for", "name_objectives",
           "summary_objectives", "write_study"]


# -- drivers ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DriverInfo:
    """One ``engine search`` process that worked on a study (see ``schema.DRIVER_PREFIX``).

    Attributes:
        id: The driver's id.
        host, pid: Where it runs.
        started_at, heartbeat_at: Unix times it started and last beat.
        state: ``running``, ``finished`` or ``stopped``.
        deadline: Unix time its time budget ends (None: no time budget).
        eta_s: Its estimate of the seconds left (None: not measured yet).
        running_trials: Trials it runs now.
    """

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

    def to_json(self) -> dict[str, Any]:
        """The stored form (without the id, which is in the key)."""
        return {"host": self.host, "pid": self.pid, "started_at": self.started_at,
                "heartbeat_at": self.heartbeat_at, "state": self.state,
                "deadline": self.deadline, "eta_s": self.eta_s,
                "running_trials": self.running_trials}

    @classmethod
    def from_json(cls, driver_id: str, value: dict[str, Any]) -> DriverInfo:
        """Inverse of :meth:`to_json` (missing fields take harmless defaults)."""
        return cls(id=driver_id, host=str(value.get("host", "?")), pid=int(value.get("pid", 0)),
                   started_at=float(value.get("started_at", 0.0)),
                   heartbeat_at=float(value.get("heartbeat_at", 0.0)),
                   state=str(value.get("state", "running")), deadline=value.get("deadline"),
                   eta_s=value.get("eta_s"),
                   running_trials=int(value.get("running_trials", 0)))


# -- studies ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BudgetRecord:
    """The budget of a search, as the last driver that ran it was given it (None: no limit).

    Attributes:
        n_trials: Trained trials, whole study.
        budget_epochs: Training epochs, whole study.
        budget_minutes: Wall clock of one driver's run.
        epochs_per_trial: Epochs of one full trial.
    """

    n_trials: int | None = None
    budget_epochs: int | None = None
    budget_minutes: float | None = None
    epochs_per_trial: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return {"n_trials": self.n_trials, "budget_epochs": self.budget_epochs,
                "budget_minutes": self.budget_minutes, "epochs_per_trial": self.epochs_per_trial}

    @classmethod
    def from_json(cls, value: Any) -> BudgetRecord | None:
        """Inverse of :meth:`to_json` (None for a study that recorded no budget)."""
        if not isinstance(value, dict):
            return None
        return cls(n_trials=_int(value.get("n_trials")),
                   budget_epochs=_int(value.get("budget_epochs")),
                   budget_minutes=_num(value.get("budget_minutes")),
                   epochs_per_trial=_int(value.get("epochs_per_trial")))


def cap_for(metric: str, constraints: dict[str, Any] | None) -> float | None:
    """The cap ``constraints`` (a spec's ``constraints`` section) puts on ``metric``, if any."""
    key = schema.CAP_OF.get(metric)
    return None if key is None else _num((constraints or {}).get(key))


@dataclass(frozen=True)
class StudyRecord:
    """A study as WaveSearch recorded it.

    Attributes:
        name: The study's name.
        directions: ``maximize`` / ``minimize`` per objective.
        objectives: Metric name per objective (the study's metric names, else "objective i",
            for studies another tool made).
        spec: The validated spec as JSON (None: not made by ``engine search``).
        spec_hash: ``engine.spec.spec_hash`` of the spec that began the study.
        constraints: The spec's caps (``gpu_ram_mb``, ``max_params``).
        data: The data the models were built for (``dataset``, ``in_channels``,
            ``image_size``, ``num_classes``, ``classes``, ``mean``, ``std``).
        budget: The recorded budget (None: none recorded).
        drivers_opened: How many driver processes have opened the study (None: not counted).
        retrains: Every ``engine retrain`` of its architectures, oldest first.
        drivers: The search processes that recorded themselves, oldest first.
    """

    name: str
    directions: tuple[str, ...]
    objectives: tuple[str, ...]
    spec: dict[str, Any] | None = None
    spec_hash: str | None = None
    constraints: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    budget: BudgetRecord | None = None
    drivers_opened: int | None = None
    retrains: tuple[dict[str, Any], ...] = ()
    drivers: tuple[DriverInfo, ...] = ()

    @classmethod
    def read(cls, study: optuna.Study) -> StudyRecord:
        """The record of an Optuna study (the one read of study attributes)."""
        ua = study.user_attrs
        directions = tuple(d.name.lower() for d in study.directions)
        drivers = sorted((DriverInfo.from_json(k[len(schema.DRIVER_PREFIX):], v)
                          for k, v in ua.items()
                          if k.startswith(schema.DRIVER_PREFIX) and isinstance(v, dict)),
                         key=lambda d: d.started_at)
        opened = ua.get(schema.STUDY_DRIVERS)
        return cls(name=study.study_name, directions=directions,
                   objectives=_objectives(ua, study.metric_names, len(directions)),
                   spec=ua.get(schema.STUDY_SPEC) if isinstance(ua.get(schema.STUDY_SPEC), dict)
                   else None,
                   spec_hash=ua.get(schema.STUDY_SPEC_HASH),
                   constraints=dict(ua.get(schema.STUDY_CONSTRAINTS) or {}),
                   data=dict(ua.get(schema.STUDY_DATA) or {}),
                   budget=BudgetRecord.from_json(ua.get(schema.STUDY_BUDGET)),
                   drivers_opened=None if opened is None else int(opened),
                   retrains=tuple(ua.get(schema.STUDY_RETRAINS) or ()),
                   drivers=tuple(drivers))

    @property
    def cap_mb(self) -> float | None:
        """The per-trial memory cap (MB), if the spec set one."""
        return cap_for("peak_memory_mb", self.constraints)

    @property
    def max_params(self) -> int | None:
        """The parameter cap, if the spec set one."""
        cap = cap_for("param_count", self.constraints)
        return None if cap is None else int(cap)

    def cap_for(self, metric: str) -> float | None:
        """The cap on ``metric`` (None: uncapped)."""
        return cap_for(metric, self.constraints)

    @property
    def spec_data(self) -> dict[str, Any] | None:
        """The spec's ``data`` section (None: no stored spec)."""
        d = (self.spec or {}).get("data")
        return d if isinstance(d, dict) else None

    @property
    def spec_search(self) -> dict[str, Any]:
        """The spec's ``search`` section ({} when there is none)."""
        return dict((self.spec or {}).get("search") or {})


def _objectives(ua: dict[str, Any], metric_names: list[str] | None, n: int) -> tuple[str, ...]:
    names = ua.get(schema.STUDY_OBJECTIVES) or metric_names
    if isinstance(names, list) and len(names) == n:
        return tuple(str(x) for x in names)
    return tuple(f"objective {i}" for i in range(n))


_STUDY_KEYS = {"spec": schema.STUDY_SPEC, "spec_hash": schema.STUDY_SPEC_HASH,
               "objectives": schema.STUDY_OBJECTIVES, "constraints": schema.STUDY_CONSTRAINTS,
               "data": schema.STUDY_DATA, "budget": schema.STUDY_BUDGET,
               "drivers_opened": schema.STUDY_DRIVERS, "retrains": schema.STUDY_RETRAINS}


def write_study(study: optuna.Study, *, driver: DriverInfo | None = None, **values: Any) -> None:
    """Record fields of :class:`StudyRecord` on a study (the one write of study attributes).

    Args:
        study: The study.
        driver: A driver's record, stored under its own key (``schema.DRIVER_PREFIX`` + id).
        **values: Fields of StudyRecord (``spec``, ``spec_hash``, ``objectives``,
            ``constraints``, ``data``, ``budget``, ``drivers_opened``, ``retrains``); None
            values are skipped.

    Raises:
        TypeError: a name that is not one of the recorded fields.
    """
    check_fields(values, _STUDY_KEYS, "study")
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, BudgetRecord):
            value = value.to_json()
        elif isinstance(value, tuple):
            value = list(value)
        study.set_user_attr(_STUDY_KEYS[name], value)
    if driver is not None:
        study.set_user_attr(schema.DRIVER_PREFIX + driver.id, driver.to_json())


def summary_objectives(summary: Any) -> tuple[str, ...]:
    """The objectives a study summary (``optuna.study.StudySummary`` or a storage's
    ``FrozenStudy``) records, () when none."""
    names = summary.user_attrs.get(schema.STUDY_OBJECTIVES, ())
    return tuple(names) if isinstance(names, list) else ()


def name_objectives(storage: optuna.storages.BaseStorage) -> int:
    """Give studies begun before the engine named its objectives their metric names, so
    optuna-dashboard labels them (not "Objective 0/1"); returns how many were named."""
    named = 0
    for s in storage.get_all_studies():
        names = list(summary_objectives(s))
        if len(names) == len(s.directions) and not optuna_api.has_metric_names(s):
            with warnings.catch_warnings():  # "experimental" in Optuna 5, stable since 3.2
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.load_study(study_name=s.study_name, storage=storage).set_metric_names(names)
            named += 1
    return named

"""The few Optuna internals WaveSearch needs, behind one small adapter.

Optuna's public API has no way to reach a trial's storage id, a study's storage, or a
distribution's membership test; the driver needs them because it owns ask/tell itself
(docs/ARCHITECTURE.md, "Why the driver owns ask/tell"): it writes intermediate values for
multi-objective studies (``Trial.report`` is single-objective only), records heartbeats outside
``Study.optimize``, and fails trials of dead drivers. Every private attribute is read here and
nowhere else, so an Optuna upgrade that renames one breaks one file (tests/test_storage.py
exercises each function against a real storage).
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

__all__ = ["contains", "fail_running", "get_frozen", "has_metric_names", "intermediate_values",
           "record_heartbeat", "set_intermediate", "set_system_attr", "stale_trial_ids",
           "storage", "study_id", "trial_id"]


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage id of a live or frozen trial (what storage calls take)."""
    return trial._trial_id


def study_id(study: optuna.Study) -> int:
    """The storage id of a study."""
    return study._study_id


def storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study reads and writes through."""
    return study._storage


def record_heartbeat(study: optuna.Study, trial: int) -> None:
    """A heartbeat for RUNNING trial ``trial`` (Optuna beats only inside ``optimize``); none
    for a storage that keeps no heartbeats (in memory: a replay of the benchmark table)."""
    beat = getattr(storage(study), "record_heartbeat", None)
    if beat is not None:
        beat(trial)


def set_intermediate(study: optuna.Study, trial: int, step: int, value: float) -> None:
    """An intermediate value (``Trial.report`` is single-objective only; this is not)."""
    storage(study).set_trial_intermediate_value(trial, step, value)


def intermediate_values(study: optuna.Study, trial: int) -> dict[int, float]:
    """The intermediate values of a trial, fresh from the storage."""
    return dict(storage(study).get_trial(trial).intermediate_values)


def fail_running(study: optuna.Study, trial: int) -> bool:
    """Set a RUNNING trial to FAIL; False when it had already finished."""
    return storage(study).set_trial_state_values(trial, TrialState.FAIL)


def stale_trial_ids(study: optuna.Study) -> list[int]:
    """RUNNING trials of the study whose heartbeat is older than the storage's grace period."""
    s = storage(study)
    rdb = getattr(s, "_backend", s)  # Optuna wraps an RDB storage in a cache
    return rdb.stale_trial_ids(study_id(study))


def set_system_attr(study: optuna.Study, trial: int, key: str, value: Any) -> None:
    """A trial system attribute (a sampler's own record of how it chose the trial)."""
    storage(study).set_trial_system_attr(trial, key, value)


def get_frozen(study: optuna.Study, trial: int) -> FrozenTrial:
    """A trial, fresh from the storage."""
    return storage(study).get_trial(trial)


def contains(distribution: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` lies in ``distribution`` (False for a value it cannot represent)."""
    try:
        return distribution._contains(distribution.to_internal_repr(value))
    except ValueError:  # e.g. not one of a categorical's choices
        return False


def has_metric_names(summary: Any) -> bool:
    """Whether a stored study (a storage's ``FrozenStudy``) has named objectives."""
    return "study:metric_names" in summary.system_attrs

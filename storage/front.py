"""Pareto fronts computed from trial records, without asking Optuna to load the study again.

:func:`front_numbers` keeps Optuna's rule for ``Study.best_trials`` (complete trials that meet
every constraint; equal points are all on the front) and ``Study.best_trial`` for a single
objective; tests/test_live.py checks it against Optuna on random studies.
:func:`front_2d` is the front of any two quantities (accuracy against parameters or wall
time), for charts whose axis is not an objective of the study.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from optuna.trial import TrialState

from storage.record import TrialRecord

__all__ = ["front_2d", "front_numbers", "non_dominated"]


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Which rows of ``points`` (n, k), all to be minimised, no other row dominates.

    Rows that are equal do not dominate each other (both stay). O(n log n + n * front) for
    the sort and the checks against the front found so far.
    """
    n = len(points)
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    order = np.lexsort(points.T[::-1])  # by the first column, then the next...
    front: list[np.ndarray] = []
    for i in order:
        p = points[i]
        if front:
            f = np.asarray(front)
            dominated = np.any(np.all(f <= p, axis=1) & np.any(f < p, axis=1))
            if dominated:
                continue
        keep[i] = True
        front.append(p)
    return keep


def front_numbers(records: Sequence[TrialRecord], directions: Sequence[str]) -> set[int]:
    """Trial numbers on the feasible Pareto front (one objective: the best trial)."""
    done = [r for r in records if r.state == TrialState.COMPLETE and r.feasible
            and r.values is not None and len(r.values) == len(directions)]
    if not done:
        return set()
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    points = np.array([r.values for r in done], dtype=float) * sign
    if len(directions) == 1:
        best = min(range(len(done)), key=lambda i: (points[i, 0], done[i].number))
        return {done[best].number}
    return {r.number for r, k in zip(done, non_dominated(points), strict=True) if k}


def front_2d(pairs: Sequence[tuple[int, float, float]]) -> set[int]:
    """Numbers of the ``(number, accuracy, cost)`` points on the front of highest accuracy
    at lowest cost."""
    if not pairs:
        return set()
    points = np.array([(-a, c) for _, a, c in pairs], dtype=float)
    return {n for (n, _, _), k in zip(pairs, non_dominated(points), strict=True) if k}

"""What a study's trials tell the cost-aware sampler: learning curves, the feasible front, costs.

One pass over the trials (any driver's, any sampler's, resumed ones included) sorts them into:
trained trials with their curves (fraction of the epoch budget, accuracy), the feasible front
of finished ones (their objective values), the trials still running, and every candidate's
predicted memory and size (for the memory estimate). A trial that lacks what a part needs
(NaN accuracies, no recorded size, a foreign parameter set) is left out of that part only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from optuna.trial import TrialState

from engine.samplers.candidates import CostOracle, candidate_key
from engine.samplers.hypervolume import pareto_mask
from engine.space import training_params
from storage import TrialRecord

__all__ = ["Evidence", "Goals", "Observed", "read_study"]

COSTS = ("peak_memory_mb", "param_count")


@dataclass(frozen=True)
class Goals:
    """The study's objectives as the sampler sees them.

    Attributes:
        accuracy: Index of ``val_accuracy`` among the values (None: not an objective).
        maximize: Accuracy is maximised (else minimised, modelled as 1 - accuracy).
        costs: ``(metric, index)`` of each minimised cost objective.
    """

    accuracy: int | None
    maximize: bool
    costs: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, objectives: Sequence[tuple[str, str]]) -> Goals:
        acc = next((i for i, (m, _) in enumerate(objectives) if m == "val_accuracy"), None)
        maximize = acc is None or objectives[acc][1] == "maximize"
        costs = tuple((m, i) for i, (m, d) in enumerate(objectives) if m in COSTS and d == "minimize")
        return cls(acc, maximize, costs)

    def signed(self, accuracy: float) -> float:
        """Accuracy as the quantity to maximise."""
        return accuracy if self.maximize else 1.0 - accuracy


@dataclass(frozen=True)
class Observed:
    """One trained (or running) trial.

    Attributes:
        number: The trial number.
        params: Its parameters.
        memory: Predicted peak memory, MB (None: unknown).
        size: Parameter count (None: unknown).
        curve: (fraction of the epoch budget, accuracy) per finished epoch, NaN-free; the last
            of a COMPLETE trial is its final value at fraction 1.
        final: The trial finished its budget (COMPLETE).
    """

    number: int
    params: dict[str, Any]
    memory: float | None
    size: int | None
    curve: tuple[tuple[float, float], ...]
    final: bool


@dataclass(frozen=True)
class FrontPoint:
    """A trained, feasible, finished trial (or a running one at its believed accuracy).

    Attributes:
        score: Its accuracy as the quantity to maximise (:meth:`Goals.signed`).
        costs: Metric -> value as recorded, for each cost objective.
        params: Its parameters.
    """

    score: float
    costs: dict[str, float]
    params: dict[str, Any]


@dataclass(frozen=True)
class Evidence:
    """The study as the sampler reads it (see the module docstring)."""

    trained: list[Observed] = field(default_factory=list)
    pending: list[Observed] = field(default_factory=list)
    front: list[FrontPoint] = field(default_factory=list)
    seen: frozenset[str] = frozenset()
    memory_rows: list[tuple[dict, float, int]] = field(default_factory=list)

    @property
    def n_trained(self) -> int:
        """Trials trained or training (the current one excepted)."""
        return len(self.trained)

    @functools.cached_property
    def _front_mask(self) -> np.ndarray:
        if not self.front:
            return np.zeros(0, dtype=bool)
        metrics = sorted(set.intersection(*(set(p.costs) for p in self.front)))
        costs = np.array([[p.costs.get(m, np.nan) for m in metrics] for p in self.front])
        return pareto_mask(np.array([p.score for p in self.front]), costs.reshape(len(self.front), -1))

    @property
    def front_params(self) -> list[dict[str, Any]]:
        """Parameters of the non-dominated front members (the best first)."""
        members = [p for p, keep in zip(self.front, self._front_mask, strict=True) if keep]
        return [p.params for p in sorted(members, key=lambda p: -p.score)]

    def best_recipes(self, k: int) -> list[dict[str, Any]]:
        """The training parameters (``train.*``) of the ``k`` most accurate feasible finished
        trials, distinct, the best first (empty when the space searches none)."""
        out: list[dict[str, Any]] = []
        for p in sorted(self.front, key=lambda p: -p.score):
            if len(out) >= k:
                break
            recipe = training_params(p.params)
            if recipe and recipe not in out:
                out.append(recipe)
        return out

    @property
    def front_numbers(self) -> set[int]:
        """Trial numbers of the non-dominated front members."""
        keys = {candidate_key(p) for p in self.front_params}
        return {o.number for o in self.trained if candidate_key(o.params) in keys}

    def spread_costs(self, oracle: CostOracle) -> list[float]:
        """The cost the start-up spreads over, of each trained or running trial: predicted
        memory once the screen predicts memory, else parameter count."""
        values = [o.memory if oracle.memory_known else o.size for o in self.trained]
        return [float(v) for v in values if v]

    def with_believed(self, pending: Sequence[Observed], score: np.ndarray) -> Evidence:
        """The front as if each running trial ended at the score (signed accuracy) believed
        for it."""
        extra = []
        for o, acc in zip(pending, score, strict=True):
            costs = {"peak_memory_mb": o.memory, "param_count": o.size}
            extra.append(FrontPoint(float(acc), {k: float(v) for k, v in costs.items()
                                                 if v is not None}, o.params))
        return replace(self, front=self.front + extra)


def _curve(t: TrialRecord, epochs: int, final: float | None) -> tuple[tuple[float, float], ...]:
    pts = {int(e): float(v) for e, v in t.intermediate.items() if math.isfinite(v)}
    if final is not None:
        pts[epochs] = final  # the recorded final value is the full-budget point
    # At most 4 points a trial: the last and up to 3 earlier ones, evenly spread.
    steps = sorted(pts)
    if len(steps) > 4:
        idx = np.linspace(0, len(steps) - 1, 4).round().astype(int)
        steps = [steps[i] for i in sorted(set(idx))]
    return tuple((min(1.0, e / epochs), pts[e]) for e in steps)


def read_study(trials: Iterable[TrialRecord], goals: Goals, epochs: int, oracle: CostOracle,
               *, exclude: int | None = None,
               canonical: Callable[[dict], dict] = dict) -> Evidence:
    """Sort a study's trials for the sampler (``exclude``: the trial being chosen for;
    ``canonical``: folds parameters that do not change training, see engine.space)."""
    trained, pending, front, seen, rows = [], [], [], set(), []
    for t in trials:
        if t.number == exclude or t.state == TrialState.WAITING:
            continue
        params = canonical(dict(t.params))
        key = candidate_key(params)
        seen.add(key)
        archived = oracle.archive.get(key)
        memory = archived.memory_mb if archived is not None else None
        size = archived.verdict.size if archived is not None and archived.verdict else None
        memory = memory if memory is not None else _positive(t.peak_memory_mb)
        size = size if size is not None else _positive(t.param_count)
        if memory is not None and size is not None:
            rows.append((params, memory, int(size)))
        if not t.counts_as_trained:
            continue
        complete = t.state == TrialState.COMPLETE and t.values is not None
        final = None
        if complete and goals.accuracy is not None:
            v = t.values[goals.accuracy]
            final = float(v) if math.isfinite(v) else None
        obs = Observed(t.number, params, memory, None if size is None else int(size),
                       _curve(t, epochs, final), final is not None)
        trained.append(obs)
        if t.state == TrialState.RUNNING:
            pending.append(obs)
        if complete and final is not None and all(v <= 0 for v in t.constraints.values()):
            costs = {m: float(t.values[i]) for m, i in goals.costs}
            if all(math.isfinite(v) for v in costs.values()):
                front.append(FrontPoint(goals.signed(final), costs, params))
    return Evidence(trained, pending, front, frozenset(seen), rows)


def _positive(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) and v > 0 else None

"""What the cost-aware sampler's model and acquisition see of a candidate.

:class:`FeatureScale` turns a candidate into the accuracy model's input (its encoded parameters
plus its log memory and log size scaled over the values in play); :class:`Front` is the
feasible front in the acquisition's units (accuracy to maximise, each cost divided by its cap or
reference).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.caps import CapsConfig
from engine.samplers.candidates import Candidate, CostOracle
from engine.samplers.evidence import Evidence, Goals
from engine.samplers.hypervolume import pareto_mask
from engine.samplers.surrogate import ParamEncoder

__all__ = ["FeatureScale", "Front"]


@dataclass(frozen=True)
class FeatureScale:
    """Log memory and log size scaled to [0, 1] over the values in play this round."""

    memory: tuple[float, float]
    size: tuple[float, float]

    @classmethod
    def of(cls, ev: Evidence, pool: Sequence[Candidate], oracle: CostOracle) -> FeatureScale:
        mem = [o.memory for o in ev.trained if o.memory] + [c.memory_mb for c in pool
                                                             if c.memory_mb]
        size = [o.size for o in ev.trained if o.size] + [s for c in pool if (s := oracle.size(c))]
        return cls(_log_range(mem), _log_range(size))

    def features(self, encoder: ParamEncoder, params: dict[str, Any], memory: float | None,
                 size: int | None) -> np.ndarray:
        extra = [_unit(memory, self.memory), _unit(size, self.size)]
        return np.append(encoder.encode(params), extra)


def _log_range(values: Sequence[float]) -> tuple[float, float]:
    logs = [math.log(v) for v in values if v and v > 0]
    return (min(logs), max(logs)) if logs else (0.0, 0.0)


def _unit(v: float | None, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    if v is None or v <= 0 or hi <= lo:
        return 0.5
    return (math.log(v) - lo) / (hi - lo)


@dataclass(frozen=True)
class Front:
    """The feasible front in the acquisition's units: accuracy to maximise, costs / reference."""

    acc: np.ndarray  # (n,)
    costs: np.ndarray  # (n, d)
    scales: tuple[tuple[str, float], ...]  # (metric, reference value) per cost dimension

    @classmethod
    def of(cls, ev: Evidence, goals: Goals, caps: CapsConfig, pool: Sequence[Candidate],
           oracle: CostOracle) -> Front:
        scales = []
        for metric, _ in goals.costs:
            if metric == "peak_memory_mb" and not oracle.memory_known:
                continue  # candidates' memory is unknown: this cost cannot be compared
            cap = caps.cap_for(metric)
            if cap is None:
                seen = [p.costs.get(metric, 0.0) for p in ev.front]
                seen += [(c.memory_mb if metric == "peak_memory_mb" else oracle.size(c)) or 0.0
                         for c in pool]
                cap = 1.1 * max(seen, default=0.0) or 1.0
            scales.append((metric, float(cap)))
        pts = [p for p in ev.front if all(m in p.costs for m, _ in scales)]
        acc = np.array([p.score for p in pts])
        costs = np.array([[p.costs[m] / s for m, s in scales] for p in pts]).reshape(len(pts),
                                                                                   len(scales))
        keep = pareto_mask(acc, costs) if len(pts) else np.zeros(0, bool)
        return cls(acc[keep], costs[keep], tuple(scales))

    def scaled(self, values: dict[str, float | None]) -> np.ndarray | None:
        """A candidate's costs in front units (None: one is unknown)."""
        out = []
        for metric, scale in self.scales:
            v = values.get(metric)
            if v is None:
                return None
            out.append(v / scale)
        return np.array(out)

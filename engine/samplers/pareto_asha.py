"""Successive halving that respects every objective, not only accuracy.

ASHA compares trials at each rung by one metric. In an accuracy/memory search that is the
wrong test: small models learn more slowly in their first epochs, so ASHA stops exactly the
candidates that would hold the low-memory end of the Pareto front (measured in
docs/BENCHMARKS.md, section 6). Here a trial's memory and size are known before it trains
(the driver's :class:`~engine.protocol.Prediction`), so at a rung each trial is a point
(validation accuracy so far,
predicted memory, parameter count) and it is stopped only when at least ``n / reduction_factor``
of the n trials recorded at that rung dominate it. With accuracy as the only objective the rule
is ASHA's: stop unless in the top 1/rf.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from engine.protocol import Assignment, Report

__all__ = ["ParetoASHAScheduler", "dominates"]


def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """True when ``a`` is at least as good as ``b`` everywhere and better somewhere
    (every component is to be maximised)."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(
        x > y for x, y in zip(a, b, strict=True))


class ParetoASHAScheduler(FIFOScheduler):
    """Asynchronous successive halving over (accuracy, static objectives).

    Args:
        max_t: Epochs of a full trial.
        grace_period: First rung, in epochs.
        reduction_factor: Keep about 1/rf of the trials at each rung.
        static_objectives: ``(key, direction)`` pairs read from the trial's prediction
            (``peak_memory_mb``, ``param_count``), known before training.
    """

    def __init__(self, *, max_t: int, grace_period: int = 1, reduction_factor: int = 2,
                 static_objectives: list[tuple[str, str]] | None = None):
        super().__init__()
        self.rf = reduction_factor
        self.static = list(static_objectives or [])
        self.rungs: list[int] = []
        r = grace_period
        while r < max_t:
            self.rungs.append(r)
            r *= reduction_factor
        self.recorded: dict[int, dict[str, tuple[float, ...]]] = {r: {} for r in self.rungs}

    def _point(self, trial: Any, accuracy: float) -> tuple[float, ...]:
        prediction = Assignment.from_tune(trial.config).prediction
        sign = {"maximize": 1.0, "minimize": -1.0}
        return (accuracy, *(sign[d] * float(getattr(prediction, k)) for k, d in self.static))

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        report = Report.from_tune(result)
        if report is None or not report.has_epoch:
            return TrialScheduler.CONTINUE
        acc, epoch = report.val_accuracy, report.epoch
        decision = TrialScheduler.CONTINUE
        for rung in self.rungs:
            seen = self.recorded[rung]
            if epoch < rung or trial.trial_id in seen:
                continue
            point = self._point(trial, acc)
            seen[trial.trial_id] = point
            better = sum(dominates(other, point) for tid, other in seen.items()
                         if tid != trial.trial_id)
            if better and better >= len(seen) / self.rf:
                decision = TrialScheduler.STOP
        return decision

    def debug_string(self) -> str:
        return f"ParetoASHA: rungs {self.rungs}, recorded {[len(v) for v in self.recorded.values()]}"

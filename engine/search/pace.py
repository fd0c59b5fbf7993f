"""How fast trials train here, measured as the search runs, and what that means for time.

Every finished epoch is a sample (predicted peak memory of the trial, seconds the epoch
took). Epoch time grows with a model's activations, which its predicted memory tracks, plus a
fixed part (validation, data movement), so the pace is the least-squares line
``seconds = a + b * memory_mb`` with a, b >= 0 (a single model, or one sample, gives the
proportional rule). Concurrency is inside the samples: epochs measured while other trials
shared the machine already take as long as they will.
"""

from __future__ import annotations

import math
import statistics

__all__ = ["Pace"]


class Pace:
    """Epoch times measured so far, and the time a trial of a given size will take."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (predicted memory MB, epoch seconds)
        self.guesses: list[tuple[float, float]] = []  # the same, from pace probes

    def guess(self, memory_mb: float, epoch_s: float) -> None:
        """Record an epoch time estimated from a few steps (used until an epoch is measured)."""
        if math.isfinite(epoch_s) and epoch_s > 0:
            self.guesses.append((max(0.0, memory_mb), epoch_s))

    def add(self, memory_mb: float, epoch_s: float) -> None:
        """Record one finished epoch."""
        if math.isfinite(epoch_s) and epoch_s > 0:
            self.samples.append((max(0.0, memory_mb), epoch_s))

    @property
    def measured(self) -> bool:
        """True once at least one epoch was measured."""
        return bool(self.samples)

    def epoch_seconds(self, memory_mb: float | None = None) -> float | None:
        """Expected seconds of one epoch of a trial with this predicted memory (None: the mean
        trial; probes stand in until an epoch was measured; None: neither)."""
        points = self.samples or self.guesses
        if not points:
            return None
        if memory_mb is None:
            return statistics.fmean(s for _, s in points)
        xs = [m for m, _ in points]
        ys = [s for _, s in points]
        if len(set(xs)) < 2:
            ratio = sum(ys) / max(sum(xs), 1e-9)
            return ratio * memory_mb if sum(xs) > 0 else statistics.fmean(ys)
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        b = max(0.0, sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
                / sum((x - mx) ** 2 for x in xs))
        a = max(0.0, my - b * mx)
        return a + b * memory_mb

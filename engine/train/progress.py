"""Progress inside an epoch, as the training loop reports it (no torch: the search's protocol
carries it from the workers to the driver)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PROBE_STEPS", "StepProgress"]


@dataclass(frozen=True)
class StepProgress:
    """Where the loop is inside an epoch (reported early, as a pace probe, then at most every
    ``step_every_s`` seconds): a long epoch is not silent until it ends.

    Attributes:
        epoch: The epoch in progress (1-based).
        step: Optimiser steps done in it.
        steps: Steps in the epoch.
        seconds: Since the epoch began (training only; validation comes after).
        images_per_s: Training images per second so far in this epoch.
    """

    epoch: int
    step: int
    steps: int
    seconds: float
    images_per_s: float

    @property
    def epoch_train_s(self) -> float:
        """The epoch's training time at this pace."""
        return self.seconds * self.steps / max(1, self.step)


# The first step report comes after this many steps of the first epoch: a pace measured before
# any epoch ends (the first step, a warm-up, is slower, so it errs on the long side).
PROBE_STEPS = 5

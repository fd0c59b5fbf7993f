"""Which optimiser trains each epoch: the one statement of DualOpT's rule.

DualOpT (docs/SOURCES.md, CXV) trains with AdamW, then SGD with fresh state: after a fixed
number of AdamW epochs (``switch_epoch``, 0 = SGD from the start, ``>= epochs`` = AdamW
throughout), or once validation accuracy has not improved for ``switch_patience`` epochs (the
paper's rule). ``adamw`` and ``sgd`` alone are one phase each.

The trainer follows it epoch by epoch, the memory predictor takes the larger of its phases,
and a retrain without a validation split replays the switch the search made, rescaled to its
own length (:meth:`OptimizerSchedule.rescaled`). No module outside this one states the rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.errors import ConfigError

__all__ = ["ADAMW", "DUALOPT", "OPTIMIZERS", "PHASES", "SGD", "OptimizerSchedule"]

ADAMW, SGD, DUALOPT = "adamw", "sgd", "dualopt"
PHASES = (ADAMW, SGD)  # the optimisers an epoch can be trained with
OPTIMIZERS = (ADAMW, SGD, DUALOPT)  # what train.optimizer may name


@dataclass(frozen=True)
class OptimizerSchedule:
    """The optimiser of every epoch of one run.

    Attributes:
        optimizer: ``adamw``, ``sgd`` or ``dualopt``.
        epochs: Epochs of the run.
        switch_epoch: DualOpT: AdamW epochs before SGD takes over (fixed rule).
        switch_patience: DualOpT: switch once validation accuracy has not improved for this
            many epochs instead (None: the fixed rule).
    """

    optimizer: str
    epochs: int
    switch_epoch: int = 0
    switch_patience: int | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)} "
                              f"(got {self.optimizer!r})")

    @classmethod
    def of(cls, train: object) -> OptimizerSchedule:
        """The schedule of a ``TrainConfig``."""
        return cls(train.optimizer, train.epochs, train.switch_epoch, train.switch_patience)

    @property
    def dualopt(self) -> bool:
        """AdamW, then SGD."""
        return self.optimizer == DUALOPT

    @property
    def phases(self) -> tuple[str, ...]:
        """The optimisers the run may use (the memory predictor takes the larger)."""
        return PHASES if self.dualopt else (self.optimizer,)

    @property
    def phases_trained(self) -> tuple[str, ...]:
        """The optimisers that train at least one epoch under the fixed rule (a plateau switch
        may or may not come: both)."""
        if not self.dualopt:
            return (self.optimizer,)
        if self.plateau:
            return PHASES
        if self.switch_epoch <= 0:
            return (SGD,)
        return (ADAMW,) if self.switch_epoch >= self.epochs else PHASES

    @property
    def plateau(self) -> bool:
        """DualOpT switching on a validation plateau (needs a validation split)."""
        return self.dualopt and self.switch_patience is not None

    @property
    def first_phase(self) -> str:
        """The optimiser of epoch 1."""
        if self.optimizer == SGD or (self.dualopt and not self.plateau and self.switch_epoch <= 0):
            return SGD
        return ADAMW

    def phase_end(self, phase: str) -> int:
        """The last epoch of ``phase`` as planned (a plateau switch may come earlier)."""
        if phase == ADAMW and self.dualopt and not self.plateau:
            return min(self.epochs, self.switch_epoch)
        return self.epochs

    def switches_after(self, epoch: int, phase: str, epochs_without_gain: int) -> bool:
        """Whether SGD takes over after ``epoch``, trained with ``phase``."""
        if not self.dualopt or phase != ADAMW or epoch >= self.epochs:
            return False
        if self.plateau:
            return epochs_without_gain >= self.switch_patience
        return epoch >= self.switch_epoch

    def adamw_epochs(self, switched_at: int | None = None) -> int:
        """AdamW epochs of a DualOpT run that switched at epoch ``switched_at`` (the first SGD
        epoch; None: it never switched, or the switch is unknown and follows the fixed rule)."""
        if switched_at is not None:
            return switched_at - 1
        return self.epochs if self.plateau else min(self.switch_epoch, self.epochs)

    def rescaled(self, epochs: int, switched_at: int | None = None) -> OptimizerSchedule:
        """This run's schedule stretched to ``epochs`` with a fixed switch: SGD takes over after
        the same share of the run as here (``k * epochs / self.epochs`` AdamW epochs, rounded
        half up; the same length keeps ``k`` exactly; never switching stays so; SGD from the
        start stays so). Other optimisers only change length."""
        if not self.dualopt:
            return OptimizerSchedule(self.optimizer, epochs)
        k = self.adamw_epochs(switched_at)
        return OptimizerSchedule(DUALOPT, epochs,
                                 min(epochs, math.floor(k * epochs / self.epochs + 0.5)), None)

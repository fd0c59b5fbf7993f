"""Training settings of one run: the ``train`` section of a spec, resolved.

To add a training option: add a field here (with its rule; ``searchable(...)`` if a spec may
search it) and use it in the trainer. The spec, its validation, the search space and the
stored trial config all follow from this class.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from engine.config import Config, is_distribution, searchable
from engine.data.augment_config import AugmentConfig
from engine.train.schedule import DUALOPT, OPTIMIZERS

__all__ = ["TrainConfig"]


class TrainConfig(Config):
    """Epochs, batch, optimiser schedule, learning rates, precision, augmentation.

    Attributes:
        epochs: Passes over the training split.
        batch_size: Images per step.
        optimizer: ``adamw``, ``sgd`` (with momentum) or ``dualopt`` (AdamW, then SGD with
            fresh state, as the CXV paper trains).
        switch_epoch: DualOpT: epochs trained with AdamW before SGD takes over (0 = SGD only).
        switch_patience: DualOpT: switch instead once validation accuracy has not improved
            for this many epochs (the paper's rule); None = use ``switch_epoch``.
        lr: AdamW learning rate.
        sgd_lr: SGD learning rate.
        momentum: SGD momentum.
        weight_decay: AdamW decoupled weight decay.
        label_smoothing: Cross-entropy label smoothing.
        lr_schedule: ``cosine``: within each optimiser phase the rate falls from its start
            value to 0; ``constant``: no schedule (the paper's recipe).
        augment: Batch-wise augmentation of the training images.
        amp: Mixed precision on CUDA: ``auto`` (bf16 where the device supports it, else fp16
            with loss scaling), ``bf16``, ``fp16`` or ``none``; CPU runs stay in float32.
        channels_last: NHWC memory layout, often faster for convolutions on GPUs.
        seed: Seeds the initial weights, the batch order and the augmentation draws.
    """

    section: ClassVar[str] = "train"

    epochs: int = Field(ge=1, le=10_000)
    batch_size: int = searchable(64, ge=1)
    optimizer: Literal[OPTIMIZERS] = DUALOPT
    switch_epoch: int = searchable(1, ge=0)
    switch_patience: int | None = Field(None, ge=1)
    lr: float = searchable(1e-3, gt=0)
    sgd_lr: float = searchable(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = searchable(0.01, ge=0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    augment: AugmentConfig = AugmentConfig()
    amp: Literal["auto", "none", "bf16", "fp16"] = "auto"
    channels_last: bool = False
    seed: int = 0

    @classmethod
    def check_spec(cls, values: dict[str, Any]) -> None:
        if values["optimizer"] != DUALOPT and is_distribution(values["switch_epoch"]):
            raise ValueError("switch_epoch is searched but optimizer is not 'dualopt'; set "
                             "optimizer: dualopt or make switch_epoch a fixed number")

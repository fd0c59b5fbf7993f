"""Training: the settings of a run, its optimiser schedule, and the loop itself.

``TrainConfig`` and the schedule need no torch (the spec is checked with them alone); the
loop's names import torch on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from engine.train.config import TrainConfig
from engine.train.progress import StepProgress

__all__ = ["DeviceData", "EpochReport", "StepProgress", "TrainConfig", "TrainResult", "evaluate",
           "train_model"]

_LOOP = {"DeviceData", "EpochReport", "TrainResult", "evaluate", "train_model"}


def __getattr__(name: str) -> Any:
    if name in _LOOP:
        return getattr(importlib.import_module("engine.train.trainer"), name)
    raise AttributeError(f"module 'engine.train' has no attribute {name!r}")

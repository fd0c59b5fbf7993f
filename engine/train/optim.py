"""The optimisers and mixed-precision settings a training run uses, built in one place.

The trainer calls these to train; the memory predictor calls the same functions to build the
optimizer whose state it measures, so a prediction models the trainer's optimizer by
construction.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from engine.errors import ConfigError
from engine.train.config import TrainConfig
from engine.train.schedule import ADAMW, SGD

__all__ = ["AMP_DTYPES", "amp_dtype", "build_optimizer", "needs_grad_scaler", "resolve_amp"]

AMP_DTYPES: dict[str, torch.dtype | None] = {"none": None, "bf16": torch.bfloat16,
                                             "fp16": torch.float16}


def build_optimizer(phase: str, params: Iterable[torch.nn.Parameter], cfg: TrainConfig, *,
                    foreach: bool | None = None) -> torch.optim.Optimizer:
    """The optimiser of one phase (``adamw`` or ``sgd``), with ``cfg``'s hyperparameters.

    Args:
        phase: ``adamw`` or ``sgd``.
        params: The parameters to optimise.
        cfg: Learning rates, weight decay, momentum.
        foreach: Multi-tensor implementation (None: torch's default for the device; CUDA
            uses it, and it holds a parameter-sized temporary during ``step()``).
    """
    if phase == ADAMW:
        return torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
                                 weight_decay=cfg.weight_decay, foreach=foreach)
    if phase == SGD:
        return torch.optim.SGD(params, lr=cfg.sgd_lr, momentum=cfg.momentum, foreach=foreach)
    raise ConfigError(f"optimizer phase must be 'adamw' or 'sgd' (got {phase!r})")


def resolve_amp(amp: str | None, device_type: str, *, bf16_supported: bool | None = None) -> str:
    """The precision a run uses on ``device_type``: mixed precision is a CUDA feature here
    (CPU autocast is slower than float32 for these models), and ``auto`` picks bf16 where the
    GPU supports it (float32's range, no loss scaling), else fp16.

    Args:
        amp: The configured setting (``auto``, ``none``, ``bf16``, ``fp16``; None = ``none``).
        device_type: ``cuda`` or ``cpu``.
        bf16_supported: Whether the GPU supports bf16 (None: ask torch).
    """
    amp = "none" if amp is None else amp
    if device_type != "cuda" or amp == "none":
        return "none"
    if amp != "auto":
        return amp
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return "bf16" if bf16_supported else "fp16"


def amp_dtype(amp: str | None) -> torch.dtype | None:
    """The autocast dtype of an ``amp`` setting (None: no autocast)."""
    key = "none" if amp is None else amp
    if key not in AMP_DTYPES:
        raise ConfigError(f"amp must be None, 'none', 'bf16' or 'fp16' (got {amp!r}); resolve "
                          "'auto' for a device with resolve_amp first")
    return AMP_DTYPES[key]


def needs_grad_scaler(amp: str | None) -> bool:
    """fp16 gradients underflow without loss scaling; bf16 has float32's range."""
    return amp == "fp16"

"""The training loop: one plain function, no Ray, no Optuna, no SQL.

Data in (a :class:`~engine.data.DataBundle` of uint8 arrays), metrics out through a callback
after every epoch. DualOpT (seed 003): AdamW first, then SGD with fresh state, switched either
at a fixed epoch (the searchable dimension) or when validation accuracy plateaus.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.data import DataBundle
from engine.errors import TrialFailure
from engine.space import TrainConfig

__all__ = ["EpochReport", "TrainResult", "evaluate", "train_model"]


@dataclass(frozen=True)
class EpochReport:
    """What the loop reports after each epoch (1-based ``epoch``)."""

    epoch: int
    train_loss: float
    val_accuracy: float
    optimizer: str
    seconds: float


@dataclass
class TrainResult:
    """The outcome of a finished training run."""

    val_accuracy: float
    epochs_run: int
    curve: list[float] = field(default_factory=list)
    switched_at: int | None = None  # first epoch (1-based) trained with SGD
    seconds: float = 0.0


class _DeviceData:
    """uint8 images kept on the device; normalised per batch (4x less memory than float)."""

    def __init__(self, x, y, mean, std, device: torch.device):
        self.x = torch.as_tensor(x).to(device)  # (N, C, H, W) uint8
        self.y = torch.as_tensor(y).to(device)  # (N,) int64
        c = self.x.shape[1]
        self.mean = torch.tensor(mean or [0.5] * c, device=device).view(1, c, 1, 1) * 255.0
        self.std = torch.tensor(std or [0.25] * c, device=device).view(1, c, 1, 1) * 255.0

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.x[idx].float() - self.mean) / self.std, self.y[idx]


def _make_optimizer(name: str, model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
                                 weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.sgd_lr, momentum=cfg.momentum)


def _autocast(cfg: TrainConfig, device: torch.device):
    if cfg.amp == "none":
        return nullcontext()
    dtype = torch.bfloat16 if cfg.amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def evaluate(model: nn.Module, data: _DeviceData, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on ``data`` (eval mode)."""
    model.eval()
    correct = 0
    n = data.y.shape[0]
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(start + batch_size, n), device=data.y.device)
        xb, yb = data.batch(idx)
        correct += (model(xb).argmax(1) == yb).sum().item()
    return correct / max(1, n)


def train_model(model: nn.Module, data: DataBundle, cfg: TrainConfig, *,
                device: str | torch.device = "cpu",
                on_epoch: Callable[[EpochReport], None] | None = None,
                augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                ) -> TrainResult:
    """Train ``model`` in place for ``cfg.epochs`` epochs and report validation accuracy.

    Args:
        model: Any classifier mapping (B, C, H, W) to (B, classes) logits.
        data: Train and validation splits (the test split is not touched).
        cfg: Epochs, batch size, optimiser schedule, learning rates.
        device: Where the data and model live while training.
        on_epoch: Called after every epoch; may raise to stop training (e.g. a scheduler).
        augment: Batch-wise augmentation ``f(x, generator) -> x`` applied to training batches.

    Raises:
        TrialFailure: the loss became NaN or infinite ("non-finite loss at epoch k").
    """
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    model.to(device)
    train = _DeviceData(data.train_x, data.train_y, data.mean, data.std, device)
    val = _DeviceData(data.val_x, data.val_y, data.mean, data.std, device)
    phase = "sgd" if cfg.optimizer == "sgd" else "adamw"
    if cfg.optimizer == "dualopt" and cfg.switch_patience is None and cfg.switch_epoch <= 0:
        phase = "sgd"
    opt = _make_optimizer(phase, model, cfg)
    result = TrainResult(val_accuracy=0.0, epochs_run=0)
    best, since_best = -1.0, 0
    t_start = time.perf_counter()
    n = train.y.shape[0]
    for epoch in range(1, cfg.epochs + 1):
        if phase == "sgd" and result.switched_at is None and cfg.optimizer == "dualopt":
            result.switched_at = epoch
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=gen).to(device)
        total, count = 0.0, 0
        for start in range(0, n, cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            if idx.numel() < 2 and n >= 2:  # BatchNorm cannot train on a single sample
                continue
            xb, yb = train.batch(idx)
            if augment is not None:
                xb = augment(xb, aug_gen)
            with _autocast(cfg, device):
                loss = F.cross_entropy(model(xb), yb, label_smoothing=cfg.label_smoothing)
            if not math.isfinite(loss.item()):
                raise TrialFailure(f"non-finite loss at epoch {epoch}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * idx.numel()
            count += idx.numel()
        acc = evaluate(model, val)
        result.curve.append(acc)
        result.epochs_run = epoch
        result.val_accuracy = acc
        if on_epoch is not None:
            on_epoch(EpochReport(epoch, total / max(1, count), acc, phase, time.perf_counter() - t0))
        # DualOpT switch for the next epoch: fixed epoch count, or a plateau in val accuracy.
        if acc > best:
            best, since_best = acc, 0
        else:
            since_best += 1
        if cfg.optimizer == "dualopt" and phase == "adamw":
            due = (since_best >= cfg.switch_patience) if cfg.switch_patience else epoch >= cfg.switch_epoch
            if due:
                phase = "sgd"
                opt = _make_optimizer("sgd", model, cfg)  # fresh state, as in the paper
    result.seconds = time.perf_counter() - t_start
    model.eval()
    return result

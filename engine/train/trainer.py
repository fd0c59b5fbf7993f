"""The training loop: one plain function, no Ray, no Optuna, no SQL.

Data in (a :class:`~engine.data.DataBundle` of uint8 arrays), metrics out through a callback
after every epoch. DualOpT (docs/SOURCES.md, CXV): AdamW first, then SGD with fresh state, switched either
at a fixed epoch (the searchable dimension) or when validation accuracy has not improved for
``switch_patience`` epochs (the paper's rule). Also plain AdamW and plain SGD.

Hyperparameters: see :class:`~engine.train.config.TrainConfig`; optimisers and mixed precision
come from :mod:`engine.train.optim`, which the memory predictor shares.
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
from engine.data.augment import BatchAugment
from engine.errors import ConfigError, TrialFailure
from engine.train.config import TrainConfig
from engine.train.optim import amp_dtype, build_optimizer, needs_grad_scaler, resolve_amp
from engine.train.progress import PROBE_STEPS, StepProgress
from engine.train.schedule import ADAMW, SGD, OptimizerSchedule

__all__ = ["DeviceData", "EpochReport", "TrainResult", "evaluate", "train_model"]

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class EpochReport:
    """What the loop reports after each epoch (1-based ``epoch``)."""

    epoch: int
    train_loss: float
    val_accuracy: float
    optimizer: str
    seconds: float
    images_per_s: float = 0.0


@dataclass
class TrainResult:
    """The outcome of a finished training run."""

    val_accuracy: float
    epochs_run: int
    curve: list[float] = field(default_factory=list)
    switched_at: int | None = None  # first epoch (1-based) trained with SGD under DualOpT
    seconds: float = 0.0


class DeviceData:
    """uint8 images kept on the device, normalised per batch (4x less memory than float32)."""

    def __init__(self, x, y, mean, std, device: torch.device,
                 memory_format: torch.memory_format = torch.contiguous_format):
        self.x = torch.as_tensor(x).to(device)  # (N, C, H, W) uint8
        self.y = torch.as_tensor(y).to(device)  # (N,) int64
        c = self.x.shape[1]
        # Statistics are in [0, 1] units; scale to the uint8 range once.
        self.mean = torch.tensor(mean or [0.5] * c, device=device).view(1, c, 1, 1) * 255.0
        self.std = torch.tensor(std or [0.25] * c, device=device).view(1, c, 1, 1) * 255.0
        self.memory_format = memory_format

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (self.x[idx].float() - self.mean) / self.std  # (B, C, H, W) float32
        return x.contiguous(memory_format=self.memory_format), self.y[idx]


def _amp(cfg: TrainConfig, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """Autocast dtype and whether a GradScaler is needed (see ``resolve_amp``)."""
    amp = resolve_amp(cfg.amp, device.type)
    return amp_dtype(amp), needs_grad_scaler(amp)


@torch.no_grad()
def evaluate(model: nn.Module, data: DeviceData, batch_size: int = 512,
             amp_dtype: torch.dtype | None = None) -> float:
    """Top-1 accuracy of ``model`` on ``data`` (eval mode)."""
    model.eval()
    correct = 0
    n = len(data)
    device = data.y.device
    ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
    for start in range(0, n, batch_size):
        xb, yb = data.batch(torch.arange(start, min(start + batch_size, n), device=device))
        with ctx:
            correct += (model(xb).argmax(1) == yb).sum().item()
    return correct / max(1, n)


class _Phases:
    """Where a run is in its optimiser schedule: the current phase, when it began, when
    DualOpT switched (the rule itself is :class:`~engine.train.schedule.OptimizerSchedule`)."""

    def __init__(self, cfg: TrainConfig):
        self.schedule = OptimizerSchedule.of(cfg)
        self.name, self.start = self.schedule.first_phase, 1
        self.switched_at: int | None = 1 if (self.name == SGD and self.schedule.dualopt) else None

    def end(self) -> int:
        """Last epoch of the current phase as planned (plateau switches may come earlier)."""
        return self.schedule.phase_end(self.name)

    def after_epoch(self, epoch: int, epochs_without_gain: int) -> bool:
        """Advance; True when the optimiser changes for the next epoch."""
        due = self.schedule.switches_after(epoch, self.name, epochs_without_gain)
        if due:
            self.name, self.start, self.switched_at = SGD, epoch + 1, epoch + 1
        return due


def _cosine(base: float, step: int, total: int) -> float:
    return base * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(1, total)))


def train_model(model: nn.Module, data: DataBundle, cfg: TrainConfig, *,
                device: str | torch.device = "cpu",
                on_epoch: Callable[[EpochReport], None] | None = None,
                on_step: Callable[[StepProgress], None] | None = None,
                step_every_s: float = 30.0,
                augment: Augment | None = None) -> TrainResult:
    """Train ``model`` in place for ``cfg.epochs`` epochs and report validation accuracy.

    Args:
        model: Any classifier mapping (B, C, H, W) to (B, classes) logits.
        data: Train and validation splits (the test split is not touched). An empty
            validation split trains without one (a final model on train+val): every epoch
            then reports ``val_accuracy`` NaN.
        cfg: Epochs, batch size, optimiser schedule, learning rates, precision.
        device: Where the data and model live while training.
        on_epoch: Called after every epoch; may raise to stop training (e.g. a scheduler).
        on_step: Called inside epochs: after ``PROBE_STEPS`` steps of the first epoch, then
            at most every ``step_every_s`` seconds (never for an epoch's last step, which
            ``on_epoch`` reports).
        augment: Batch-wise augmentation ``f(x, generator) -> x`` applied to training batches;
            None builds it from ``cfg.augment``.

    Raises:
        TrialFailure: the loss became NaN or infinite ("non-finite loss at epoch k").
        ConfigError: DualOpT's plateau rule (``switch_patience``) without a validation split.
    """
    if len(data.val_y) == 0 and OptimizerSchedule.of(cfg).plateau:
        raise ConfigError(f"train.switch_patience = {cfg.switch_patience} needs a validation "
                          "split to watch; set switch_patience: null and a fixed switch_epoch")
    device = torch.device(device)
    if augment is None and not cfg.augment.is_identity:
        augment = BatchAugment(cfg.augment)
    torch.manual_seed(cfg.seed)
    order_gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    amp_dtype, needs_scaler = _amp(cfg, device)
    scaler = torch.amp.GradScaler("cuda") if needs_scaler else None
    model.to(device=device, memory_format=fmt)
    train = DeviceData(data.train_x, data.train_y, data.mean, data.std, device, fmt)
    val = DeviceData(data.val_x, data.val_y, data.mean, data.std, device, fmt)
    phases = _Phases(cfg)
    opt = build_optimizer(phases.name, model.parameters(), cfg)
    base_lr = cfg.lr if phases.name == ADAMW else cfg.sgd_lr
    n = len(train)
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    result = TrainResult(val_accuracy=0.0, epochs_run=0, switched_at=phases.switched_at)
    best, without_gain = -1.0, 0
    t_start = last_step_report = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=order_gen).to(device)
        total, count = 0.0, 0
        phase_steps = (phases.end() - phases.start + 1) * steps_per_epoch
        for i, start in enumerate(range(0, n, cfg.batch_size)):
            idx = order[start:start + cfg.batch_size]
            if idx.numel() < 2 <= n:  # BatchNorm cannot train on a single sample
                continue
            if cfg.lr_schedule == "cosine":
                step = (epoch - phases.start) * steps_per_epoch + i
                for g in opt.param_groups:
                    g["lr"] = _cosine(base_lr, step, phase_steps)
            xb, yb = train.batch(idx)
            if augment is not None:
                xb = augment(xb, aug_gen)
            with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext():
                loss = F.cross_entropy(model(xb), yb, label_smoothing=cfg.label_smoothing)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise TrialFailure(f"non-finite loss at epoch {epoch}")
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            total += loss_value * idx.numel()
            count += idx.numel()
            if on_step is not None and i + 1 < steps_per_epoch:
                now = time.perf_counter()
                if (epoch == 1 and i + 1 == PROBE_STEPS) or now - last_step_report >= step_every_s:
                    last_step_report = now
                    on_step(StepProgress(epoch, i + 1, steps_per_epoch, now - t0,
                                         count / max(now - t0, 1e-9)))
        train_s = time.perf_counter() - t0
        acc = evaluate(model, val, amp_dtype=amp_dtype) if len(val) else math.nan
        result.curve.append(acc)
        result.epochs_run = epoch
        result.val_accuracy = acc
        if on_epoch is not None:
            on_epoch(EpochReport(epoch, total / max(1, count), acc, phases.name,
                                 time.perf_counter() - t0, count / max(train_s, 1e-9)))
        if acc > best:
            best, without_gain = acc, 0
        else:
            without_gain += 1
        if phases.after_epoch(epoch, without_gain):
            opt = build_optimizer(SGD, model.parameters(), cfg)  # fresh state, as in the paper
            base_lr = cfg.sgd_lr
            result.switched_at = phases.switched_at
    result.seconds = time.perf_counter() - t_start
    model.eval()
    return result

"""Peak memory of one training step: predicted without allocating, or measured.

Prediction builds model, batch and optimizer under ``FakeTensorMode`` on device ``"cpu"``
(shapes and dtypes, no storage) and runs one training step inside ``torch.distributed._tools.
mem_tracker.MemTracker``, which sums the tensor storages alive at each operator and keeps the
peak by category. Real CPU tensors under the same tracker give the same figure to the byte;
a configuration needing hundreds of GiB is estimated in seconds with ~330 MB of host memory.

Predictions run in a subprocess (:mod:`engine.memory.estimator`, driven by
:class:`engine.memory.MemoryPredictor`) because fake tensors can abort the interpreter (fake
``cuda`` tensors on a CPU-only build die in backward), and a model that allocates real memory
behind the fake mode's back must not take the caller down. This module holds what both sides
share: the request, the tracked step and the estimate.

The tracked step is training's steady state: optimizer state exists (AdamW and SGD-momentum
create it lazily at their first step, so a zero-gradient step precedes tracking), gradients
are ``None`` when the forward begins, and the peak covers forward, cross-entropy, backward and
``optimizer.step()``. CUDA adds its context, cuDNN workspaces and allocator rounding: see
:class:`CudaCalibration`.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.errors import ConfigError, MemoryEstimateError
from engine.models import DATA_FIELDS, create_model, make_config
from engine.train.config import TrainConfig
from engine.train.optim import amp_dtype, build_optimizer
from engine.train.schedule import ADAMW, OptimizerSchedule

__all__ = [
    "CudaCalibration",
    "MemoryEstimate",
    "StepRequest",
    "answer",
    "measure_training_peak_cpu",
    "measure_training_peak_cuda",
]

_MIB = 2**20
_STEP_TRAIN = TrainConfig(epochs=1)  # default hyperparameters for the measured step
# MemTracker category (its _MemRefType values) -> our breakdown key.
_CATEGORIES = {
    "Parameter": "parameters",
    "Buffer": "buffers",
    "Gradient": "gradients",
    "Optstate": "optimizer_state",
    "Activation": "activations",
    "Temp": "backward_temporaries",  # gradients of activations and other backward scratch
    "Other": "batch",  # tensors passed to track_external: the input images and labels
}


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of one training step.

    Attributes:
        peak_bytes: The peak, in bytes.
        method: ``"predicted"`` (fake tensors) or ``"measured"`` (real tensors).
        seconds: Wall time taken to produce the figure (for predictions: the whole subprocess).
        breakdown: Bytes per category at the moment of the peak. For tracked peaks the values
            add up to ``peak_bytes`` (keys from ``parameters`` to ``batch``, plus
            ``cuda_overhead`` when a calibration was applied); for CUDA measurements it holds
            the allocator's ``allocated`` and ``reserved`` peaks instead.
    """

    peak_bytes: int
    method: str
    seconds: float
    breakdown: dict[str, int] = field(default_factory=dict)

    @property
    def peak_mb(self) -> float:
        """The peak in MiB (2**20 bytes)."""
        return self.peak_bytes / _MIB


@dataclass(frozen=True)
class CudaCalibration:
    """Maps a tracked peak to the memory a CUDA device needs: ``context_mb + scale * peak``.

    The tracker only sees tensors. A CUDA process also holds its context (300-600 MiB on
    recent drivers), cuDNN/cuBLAS workspaces and the caching allocator's rounding and
    fragmentation. The identity (the default) is what this CPU-only project ships; to
    calibrate on a GPU machine:

    1. For a handful of configurations spanning the search space, predict with
       ``predict_training_peak(..., calibration=CudaCalibration())`` (the identity, but with
       the CUDA-default multi-tensor optimizer).
    2. Build the same model, batch and optimizer on ``cuda``, take one warm-up step (so the
       optimizer state exists, as in the prediction), then call
       :func:`measure_training_peak_cuda`. The device total is ``breakdown["reserved"]`` plus
       the context: ``total - free`` from ``torch.cuda.mem_get_info()`` minus
       ``torch.cuda.memory_reserved()``, read in the same process.
    3. ``CudaCalibration.fit(predicted, measured_totals)`` and store the two numbers.

    Attributes:
        context_mb: Fixed overhead in MiB added to every prediction.
        scale: Multiplier on the tracked peak (allocator rounding, workspaces).
    """

    context_mb: float = 0.0
    scale: float = 1.0

    def apply(self, tracked_bytes: int) -> int:
        """The calibrated device memory in bytes for a tracked peak of ``tracked_bytes``."""
        return round(self.context_mb * _MIB + self.scale * tracked_bytes)

    @classmethod
    def fit(cls, predicted_bytes: Sequence[int], measured_bytes: Sequence[int]) -> CudaCalibration:
        """Least-squares fit of ``measured = context + scale * predicted``.

        Args:
            predicted_bytes: Identity-calibrated predictions, one per configuration.
            measured_bytes: Device totals measured for the same configurations.

        Raises:
            ConfigError: Fewer than two pairs, lengths differ, or all predictions are equal.
        """
        n = len(predicted_bytes)
        if n != len(measured_bytes) or n < 2:
            raise ConfigError(
                f"CudaCalibration.fit needs two equally long lists of at least 2 values; got "
                f"{n} predictions and {len(measured_bytes)} measurements"
            )
        mean_p = sum(predicted_bytes) / n
        mean_m = sum(measured_bytes) / n
        var = sum((p - mean_p) ** 2 for p in predicted_bytes)
        if var == 0:
            raise ConfigError("CudaCalibration.fit needs configurations of different sizes")
        pairs = zip(predicted_bytes, measured_bytes, strict=True)
        cov = sum((p - mean_p) * (m - mean_m) for p, m in pairs)
        scale = cov / var
        return cls(context_mb=(mean_m - scale * mean_p) / _MIB, scale=scale)


def measure_training_peak_cpu(family: str, model_config: dict[str, Any], *, batch_size: int,
                              in_channels: int, image_size: int, num_classes: int,
                              optimizer: str = ADAMW, amp: str | None = None) -> MemoryEstimate:
    """Measure what :func:`~engine.memory.predict_training_peak` predicts, in-process with real
    CPU tensors.

    This allocates the memory it measures: use it on small configurations, to validate the
    predictor. Arguments as for :func:`predict_training_peak`; returns a ``"measured"`` estimate.
    """
    request = StepRequest.make(family, model_config, batch_size=batch_size,
                               in_channels=in_channels, image_size=image_size,
                               num_classes=num_classes, optimizer=optimizer, amp=amp)
    start = time.perf_counter()
    peak, breakdown = tracked_peak(request, fake=False)
    return MemoryEstimate(peak, "measured", time.perf_counter() - start, breakdown)


def measure_training_peak_cuda(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
                               optimizer: torch.optim.Optimizer, *,
                               amp: str | None = None) -> MemoryEstimate:
    """Measure the CUDA allocator's peak over one training step of ``model``.

    Take one warm-up step first if the optimizer has no state yet: the prediction assumes it
    exists. Peak statistics of the batch's device are reset before the step.

    Args:
        model: A model already on the CUDA device.
        batch: ``(images, labels)`` on the same device, shaped (B, C, H, W) and (B,).
        optimizer: The optimizer over ``model``'s parameters.
        amp: As for :func:`~engine.memory.predict_training_peak`.

    Returns:
        A ``"measured"`` estimate: ``peak_bytes`` is ``max_memory_allocated``; ``breakdown``
        holds ``allocated`` and ``reserved`` (``max_memory_reserved``, what the process holds).

    Raises:
        MemoryEstimateError: CUDA is unavailable or the batch is not on a CUDA device.
    """
    if not torch.cuda.is_available():
        raise MemoryEstimateError(
            "measure_training_peak_cuda needs a CUDA device, but torch.cuda.is_available() is "
            "False here; on a CPU-only machine use predict_training_peak instead"
        )
    images, labels = batch
    if images.device.type != "cuda":
        raise MemoryEstimateError(
            f"measure_training_peak_cuda got a batch on {images.device}; move the model and "
            "the batch to a cuda device first"
        )
    device = images.device
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    _train_step(model, images, labels, optimizer, amp_dtype(amp), device.type)
    torch.cuda.synchronize(device)
    allocated = torch.cuda.max_memory_allocated(device)
    reserved = torch.cuda.max_memory_reserved(device)
    return MemoryEstimate(allocated, "measured", time.perf_counter() - start,
                          {"allocated": allocated, "reserved": reserved})


@dataclass(frozen=True)
class StepRequest:
    """One training step to measure: the model, the batch and the optimizer.

    Build it with :meth:`make`, which checks every argument (pydantic only, no tensors), so a
    bad request fails in the caller, before any subprocess starts.
    """

    family: str
    model_config: dict[str, Any]  # the family's configuration, data fields included
    batch_size: int
    optimizer: str  # "adamw", "sgd" or "dualopt" (the larger of both phases)
    amp: str | None = None
    foreach: bool | None = None  # None: torch's CPU default; True: CUDA's multi-tensor default

    @classmethod
    def make(cls, family: str, model_config: dict[str, Any], *, batch_size: int,
             in_channels: int, image_size: int, num_classes: int, optimizer: str = ADAMW,
             amp: str | None = None, foreach: bool | None = None) -> StepRequest:
        """A checked request (see :func:`~engine.memory.predict_training_peak` for the args)."""
        for key, value in (("batch_size", batch_size), ("in_channels", in_channels),
                           ("image_size", image_size), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key} must be a positive integer (got {value!r})")
        OptimizerSchedule(optimizer, 1)  # checks the name
        amp_dtype(amp)
        if not isinstance(model_config, dict):
            raise ConfigError(f"model_config must be a dict (got {type(model_config).__name__})")
        data = {"in_channels": in_channels, "image_size": image_size, "num_classes": num_classes}
        for key in DATA_FIELDS:
            if key in model_config and model_config[key] != data[key]:
                raise ConfigError(
                    f"model_config.{key} = {model_config[key]!r} contradicts {key}={data[key]!r}; "
                    f"{key} comes from the data, leave it out of model_config")
        model_config = {k: v for k, v in model_config.items() if k not in data}
        make_config(family, **model_config, **data)
        return cls(family, {**model_config, **data}, batch_size, optimizer,
                   None if amp == "none" else amp, foreach)

    def to_json(self) -> dict[str, Any]:
        """The request as the estimator reads it."""
        return asdict(self)


def _train_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                optimizer: torch.optim.Optimizer, amp: torch.dtype | None,
                device_type: str) -> None:
    """Forward (under autocast when ``amp``), cross-entropy, backward, optimizer step."""
    with torch.autocast(device_type, dtype=amp or torch.bfloat16, enabled=amp is not None):
        loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()


def tracked_peak(request: StepRequest, *, fake: bool) -> tuple[int, dict[str, int]]:
    """MemTracker peak and its breakdown for ``request``; ``dualopt`` takes the larger phase."""
    best: tuple[int, dict[str, int]] = (-1, {})
    for phase in OptimizerSchedule(request.optimizer, 1).phases:
        peak = _tracked_peak_one(request, phase, fake=fake)
        if peak[0] > best[0]:
            best = peak
    return best


def _tracked_peak_one(request: StepRequest, phase: str, *,
                      fake: bool) -> tuple[int, dict[str, int]]:
    # Imported here: MemTracker pulls in torch.distributed, which plain model use never needs.
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    cfg = request.model_config
    b, c, s = request.batch_size, cfg["in_channels"], cfg["image_size"]
    # Everything is created inside the mode, so parameters and buffers (pytorch_wavelets
    # filters included) are fake too: mixing real module state with fake inputs would fail.
    # allow_non_fake_inputs: a real constant tensor used in forward becomes fake, not an error.
    with FakeTensorMode(allow_non_fake_inputs=True) if fake else contextlib.nullcontext():
        model = create_model(request.family, **cfg).train()
        images = torch.randn(b, c, s, s)  # (B, C, H, W)
        labels = torch.randint(0, cfg["num_classes"], (b,))  # (B,)
        # The trainer's own optimizer factory; hyperparameter values do not change memory.
        opt = build_optimizer(phase, model.parameters(), _STEP_TRAIN, foreach=request.foreach)
        # Steady state: a zero-gradient step creates the lazily allocated optimizer state.
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tracker = MemTracker()
        # Tensors made outside the tracker are only counted when registered.
        tracker.track_external(model, opt, images, labels)
        with tracker:
            _train_step(model, images, labels, opt, amp_dtype(request.amp), "cpu")
        snapshot = tracker.get_tracker_snapshot("peak")
    breakdown = dict.fromkeys(_CATEGORIES.values(), 0)
    for per_device in snapshot.values():
        for category, nbytes in per_device.items():
            key = _CATEGORIES.get(getattr(category, "value", category))
            if key is not None:  # skips the tracker's own "Total"
                breakdown[key] += int(nbytes)
    return sum(breakdown.values()), breakdown


def answer(payload: dict[str, Any]) -> dict[str, Any]:
    """The estimator's answer to one JSON request: the peak, or the error with its type."""
    try:
        peak, breakdown = tracked_peak(StepRequest(**payload), fake=True)
    except Exception as e:  # report every failure with its type; the traceback goes to stderr
        traceback.print_exc()
        error = {"type": type(e).__name__, "message": str(e)}
        if error["type"] == "DataDependentOutputException":  # the bare op name says little
            error["message"] += (" (the model reads a tensor's value in forward: .item(), bool() "
                                 "or a Python `if` on a tensor; fake tensors have no values, so "
                                 "keep that logic in tensor ops)")
        return {"error": error}
    return {"peak_bytes": peak, "breakdown": breakdown}

"""Screening a candidate before it is scheduled: size, predicted memory, and the caps.

The driver screens every candidate: its parameter count (the model built on the ``meta``
device, no memory) and its predicted peak training memory (fake tensors, through the
persistent :class:`~engine.memory_service.MemoryPredictor`). A candidate over a cap is recorded
as infeasible without occupying a worker; the rest carry their prediction to the scheduler,
which packs trials on a GPU by it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from engine.data import DataBundle
from engine.errors import ConfigError, MemoryEstimateError
from engine.space import TrialConfig

__all__ = ["CandidateScreen", "Screening", "cap_violations"]


def cap_violations(peak_mb: float, params: int, *, gpu_ram_mb: float | None,
                   max_params: int | None) -> dict[str, float]:
    """One value per configured cap, by name; <= 0 means satisfied (Optuna's convention).
    Used on the prediction before training and on the measured peak after it."""
    out = {}
    if gpu_ram_mb is not None:
        out["gpu_ram_mb"] = peak_mb - gpu_ram_mb
    if max_params is not None:
        out["max_params"] = float(params - max_params)
    return out


@dataclass(frozen=True)
class Screening:
    """The verdict on one candidate."""

    param_count: int = 0
    peak_memory_mb: float = 0.0
    memory_method: str = "predicted"
    violations: dict[str, float] = field(default_factory=dict)
    reason: str | None = None  # why it is infeasible (over a cap)
    error: str | None = None  # why it cannot be built or predicted at all

    @property
    def infeasible(self) -> bool:
        return any(v > 0 for v in self.violations.values())


class CandidateScreen:
    """Checks candidates against the caps of a search.

    Args:
        data: The data the trials will train on (channels, size, classes).
        gpu_ram_mb: Cap on peak training memory, MiB (None = no cap).
        max_params: Cap on the parameter count (None = no cap).
        predictor: A MemoryPredictor, or None to skip memory prediction.
        node_mem_mb: The most GPU memory one node of the cluster offers (its gpu_mem_mb Ray
            resource); a candidate needing more could never be placed and would wait forever.
    """

    def __init__(self, data: DataBundle, *, gpu_ram_mb: float | None, max_params: int | None,
                 predictor=None, node_mem_mb: float | None = None):
        self.dims = {"in_channels": data.in_channels, "image_size": data.image_size,
                     "num_classes": data.num_classes}
        self.gpu_ram_mb = gpu_ram_mb
        self.max_params = max_params
        self.predictor = predictor
        self.node_mem_mb = node_mem_mb

    def __call__(self, cfg: TrialConfig) -> Screening:
        from engine.models import create_model

        try:
            with torch.device("meta"):  # shapes only: a 10-billion-parameter model costs nothing
                params = sum(p.numel() for p in create_model(cfg.family, **cfg.model, **self.dims)
                             .parameters())
        except ConfigError as e:
            return Screening(error=str(e))
        peak = 0.0
        if self.predictor is not None:
            try:
                peak = self.predictor.predict(
                    cfg.family, cfg.model, batch_size=cfg.train.batch_size,
                    optimizer=cfg.train.optimizer, amp=None if cfg.train.amp == "none" else cfg.train.amp,
                    **self.dims).peak_mb
            except (ConfigError, MemoryEstimateError) as e:
                return Screening(param_count=params, error=f"memory prediction failed: {e}")
        violations = cap_violations(peak, params, gpu_ram_mb=self.gpu_ram_mb,
                                    max_params=self.max_params)
        reasons = []
        if violations.get("gpu_ram_mb", 0.0) > 0:
            reasons.append(f"predicted {peak:.0f} MB > cap {self.gpu_ram_mb:.0f} MB")
        if self.node_mem_mb is not None:
            violations["node_gpu_mem_mb"] = peak - self.node_mem_mb
            if peak > self.node_mem_mb:
                reasons.append(f"predicted {peak:.0f} MB > {self.node_mem_mb:.0f} MB, the most GPU "
                               "memory any node of the cluster offers")
        if violations.get("max_params", 0.0) > 0:
            reasons.append(f"{params:,} parameters > max_params {self.max_params:,}")
        return Screening(param_count=params, peak_memory_mb=peak, violations=violations,
                         reason="; ".join(reasons) or None)

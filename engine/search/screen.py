"""Screening a candidate before it is scheduled: size, predicted memory, and the caps.

The driver screens every candidate: its parameter count (the model built on the ``meta``
device, no memory) and its predicted peak training memory (fake tensors, through the
persistent :class:`~engine.memory.MemoryPredictor`). A candidate over a cap is recorded as
infeasible without occupying a worker; the rest carry their prediction to the scheduler, which
packs trials on a GPU by it.
"""

from __future__ import annotations

import torch

from engine.caps import CapsConfig, mb
from engine.data import DataBundle
from engine.errors import ConfigError, MemoryEstimateError
from engine.protocol import Failed, Infeasible, Prediction, Screening
from engine.train.optim import resolve_amp
from engine.trial import TrialConfig

__all__ = ["CandidateScreen"]


class CandidateScreen:
    """Checks candidates against the caps of a search.

    Args:
        data: The data the trials will train on (channels, size, classes).
        caps: The per-trial caps.
        predictor: A :class:`~engine.memory.MemoryPredictor`, or None to skip memory prediction.
        node_mem_mb: The most GPU memory one node of the cluster offers (its gpu_mem_mb Ray
            resource); a candidate needing more could never be placed and would wait forever.
        device: Where trials train (``cuda`` or ``cpu``): the prediction models that run's
            precision (mixed precision on CUDA, float32 on the CPU).
    """

    def __init__(self, data: DataBundle, caps: CapsConfig, *, predictor=None,
                 node_mem_mb: float | None = None, device: str = "cpu"):
        self.device = device
        self.dims = {"in_channels": data.in_channels, "image_size": data.image_size,
                     "num_classes": data.num_classes}
        self.caps = caps
        self.predictor = predictor
        self.node_mem_mb = node_mem_mb

    def param_count(self, cfg: TrialConfig) -> int:
        """Parameters of the candidate's model (built on the meta device: no memory)."""
        from engine.models import create_model

        with torch.device("meta"):  # shapes only: a 10-billion-parameter model costs nothing
            return sum(p.numel() for p in create_model(cfg.family, **cfg.model, **self.dims)
                       .parameters())

    def __call__(self, cfg: TrialConfig) -> Screening:
        try:
            params = self.param_count(cfg)
        except ConfigError as e:
            return Screening(rejection=Failed(str(e)))
        peak = 0.0
        if self.predictor is not None:
            try:
                # bf16 and fp16 take the same memory: the GPU's choice does not matter here.
                amp = resolve_amp(cfg.train.amp, self.device, bf16_supported=True)
                peak = self.predictor.predict(cfg.family, cfg.model, batch_size=cfg.train.batch_size,
                                              optimizer=cfg.train.optimizer, amp=amp,
                                              **self.dims).peak_mb
            except (ConfigError, MemoryEstimateError) as e:
                return Screening(rejection=Failed(f"memory prediction failed: {e}"))
        prediction = Prediction(param_count=params, peak_memory_mb=peak)
        violations = self.caps.violations(peak, params)
        reasons = self.caps.reasons(peak, params)
        if self.node_mem_mb is not None:
            violations["node_gpu_mem_mb"] = peak - self.node_mem_mb
            if peak > self.node_mem_mb:
                reasons.insert(1 if reasons and reasons[0].startswith("predicted") else 0,
                               f"predicted {mb(peak)} MB > {mb(self.node_mem_mb)} MB, the most "
                               "GPU memory any node of the cluster offers")
        if any(v > 0 for v in violations.values()):
            return Screening(prediction, Infeasible(
                reason="; ".join(reasons), violations=violations, param_count=params,
                peak_memory_mb=peak))
        return Screening(prediction)

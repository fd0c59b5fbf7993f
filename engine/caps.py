"""The per-trial caps of a search (the ``constraints`` section of a spec), and how a
candidate's size and memory are judged against them, before and after training."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from engine.config import Config
from storage.schema import CAP_OF

__all__ = ["CapsConfig", "mb"]


def mb(x: float) -> str:
    """A memory figure in MiB for messages: whole MiB from 10 up, two significant digits
    below (a 1.5 MB cap reads "1.5", not "2")."""
    return f"{x:.0f}" if x >= 10 else f"{x:.2g}"


class CapsConfig(Config):
    """Hard limits on one trial. A trial over either is infeasible: recorded with its
    violation so constrained samplers learn the feasible region, never on the Pareto front.

    Attributes:
        gpu_ram_mb: Peak training memory of one trial, MiB (None: no cap).
        max_params: Parameter count (None: no cap).
    """

    section: ClassVar[str] = "constraints"

    gpu_ram_mb: float | None = Field(None, gt=0, description="per-trial peak training memory cap")
    max_params: int | None = Field(None, ge=1)

    def cap_for(self, metric: str) -> float | None:
        """The cap on ``metric`` (``storage.schema.CAP_OF`` pairs them; None: uncapped)."""
        key = CAP_OF.get(metric)
        cap = None if key is None else getattr(self, key)
        return None if cap is None else float(cap)

    def violations(self, peak_mb: float, params: int) -> dict[str, float]:
        """One value per configured cap, by name; <= 0 means satisfied (Optuna's convention).

        Used on the prediction before training and on the measured peak after it.
        """
        out = {}
        if self.gpu_ram_mb is not None:
            out["gpu_ram_mb"] = peak_mb - self.gpu_ram_mb
        if self.max_params is not None:
            out["max_params"] = float(params - self.max_params)
        return out

    def reasons(self, peak_mb: float, params: int, *, measured: bool = False) -> list[str]:
        """Why a candidate of this size and memory breaks the caps (empty: it fits)."""
        v = self.violations(peak_mb, params)
        out = []
        if v.get("gpu_ram_mb", 0.0) > 0:
            word = "measured" if measured else "predicted"
            out.append(f"{word} {mb(peak_mb)} MB > cap {mb(self.gpu_ram_mb)} MB")
        if v.get("max_params", 0.0) > 0:
            out.append(f"{params:,} parameters > max_params {self.max_params:,}")
        return out

"""The probe: a fixed input whose logits prove that a rebuilt model is the one that trained.

The search's worker records a trained model's logits on the probe input; a checkpoint carries
them, and loading it must reproduce them (engine/export/checkpoint.py). Both sides compute
them here, so they cannot drift apart.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["PROBE_SEED", "probe_input", "probe_logits"]

PROBE_SEED = 20221  # fixed: the probe input is rebuilt from this seed, never stored


def probe_input(in_channels: int, image_size: int) -> torch.Tensor:
    """The fixed input (2, C, H, W) on which a checkpoint records its model's logits."""
    g = torch.Generator().manual_seed(PROBE_SEED)
    return torch.randn(2, in_channels, image_size, image_size, generator=g)


@torch.no_grad()
def probe_logits(model: nn.Module, in_channels: int, image_size: int) -> list[list[float]]:
    """Logits (2, num_classes) of ``model`` (put in eval mode) on the probe input, in float32
    on the model's device, as a loaded checkpoint will reproduce them. The model is left on
    its device."""
    device = next(iter(model.parameters())).device
    out = model.eval()(probe_input(in_channels, image_size).to(device))
    return out.float().cpu().tolist()

"""Load weights of the reference ``wavemix`` 0.2.4 classifier into :class:`WaveMix`.

The reference is a test-only dependency: nothing here imports it. Its parameter names map to
ours one to one (``conv`` -> ``stem``, ``layers.i`` -> ``blocks.i``, ``feedforwardK`` ->
``feedforwards.{K-1}``, ``pool.2`` -> ``head``); the only change to a value is the input-channel
order of each first feed-forward conv (see :mod:`engine.models.wavemix_blocks`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

__all__ = ["convert_reference_state_dict", "reference_band_order"]


def reference_band_order(final_dim: int) -> torch.Tensor:
    """For each of our c DWT channels, the index of the same channel in the reference's order.

    Ours: channel ``4i + b`` = band b of reduced channel i (b = 0 is LL). Reference: LL of all
    q = c/4 channels first, then ``q + 3i + (b - 1)`` for the detail bands.
    """
    q = final_dim // 4
    i = torch.arange(q).repeat_interleave(4)  # reduced channel of each of our channels
    b = torch.arange(4).repeat(q)  # band of each of our channels
    return torch.where(b == 0, i, q + 3 * i + b - 1)


_RENAMES = (
    (re.compile(r"^conv\."), "stem."),
    (re.compile(r"^pool\.2\."), "head."),
    (re.compile(r"^layers\.(\d+)\.feedforward\."), r"blocks.\1.feedforwards.0."),
    (re.compile(r"^layers\.(\d+)\.feedforward(\d)\."),
     lambda m: f"blocks.{m[1]}.feedforwards.{int(m[2]) - 1}."),
    (re.compile(r"^layers\.(\d+)\.reduction\."), r"blocks.\1.reduction."),
)
_FIRST_FF_CONV = re.compile(r"^blocks\.\d+\.feedforwards\.\d+\.0\.weight$")


def convert_reference_state_dict(state: Mapping[str, torch.Tensor], *, final_dim: int
                                 ) -> dict[str, torch.Tensor]:
    """Rename and permute a ``wavemix.classification.WaveMix`` state dict for our model.

    Args:
        state: The reference model's ``state_dict()``.
        final_dim: Its ``final_dim`` (c).

    Returns:
        A state dict for ``WaveMix(final_dim=c, block="cascade", upsample="convtranspose",
        ...)`` with the same other arguments, to pass to ``load_state_dict(strict=True)``.

    Raises:
        KeyError: A key that is not part of the reference classifier.
    """
    order = reference_band_order(final_dim)
    out = {}
    for key, value in state.items():
        new = key
        for pattern, repl in _RENAMES:
            new, n = pattern.subn(repl, new)
            if n:
                break
        else:
            raise KeyError(f"not a wavemix 0.2.4 classifier parameter: {key!r}")
        if _FIRST_FF_CONV.match(new):
            # Input channels: [c DWT channels (permute), then c/2 from the coarser level (keep)].
            value = torch.cat((value[:, order], value[:, final_dim:]), dim=1)
        out[new] = value
    return out

"""Multi-level 2-D discrete wavelet transforms as modules.

Both transforms return the same layout as ``pytorch_wavelets.DWTForward(J, wave, mode="zero")``:
``(lowpass, [highs_level1, ..., highs_levelJ])`` with ``highs_j`` shaped ``(B, C, 3, H_j, W_j)``.
The Haar path is pure tensor arithmetic (strided slices), exact to float rounding, and needs
no buffers; other wavelets go through pytorch_wavelets, whose filters are registered buffers.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["HaarDWT", "WaveletDWT", "make_dwt"]


def haar_level(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One Haar level. x: (B, C, H, W) -> ll (B, C, H', W'), highs (B, C, 3, H', W').

    Odd sizes are zero-padded at the end, as pytorch_wavelets does in mode "zero".
    """
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2))
    a = x[..., 0::2, 0::2]  # top-left of each 2x2 block
    b = x[..., 0::2, 1::2]  # top-right
    c = x[..., 1::2, 0::2]  # bottom-left
    d = x[..., 1::2, 1::2]  # bottom-right
    s_ab, d_ab = a + b, a - b
    s_cd, d_cd = c + d, c - d
    ll = (s_ab + s_cd) * 0.5
    # Band order and signs follow pytorch_wavelets: (row-difference, column-difference, diagonal).
    highs = torch.stack(((s_ab - s_cd), (d_ab + d_cd), (d_ab - d_cd)), dim=2) * 0.5
    return ll, highs


class HaarDWT(nn.Module):
    """J-level Haar transform computed level by level from the previous lowpass.

    Args:
        levels: Number of decomposition levels J >= 1.
    """

    def __init__(self, *, levels: int):
        super().__init__()
        self.levels = levels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        highs = []
        ll = x
        for _ in range(self.levels):
            ll, h = haar_level(ll)
            highs.append(h)
        return ll, highs


class WaveletDWT(nn.Module):
    """J-level transform for any pytorch_wavelets wavelet (mode "zero")."""

    def __init__(self, *, levels: int, wavelet: str):
        super().__init__()
        from pytorch_wavelets import DWTForward  # heavy import, only when needed

        self.levels = levels
        self.dwt = DWTForward(J=levels, wave=wavelet, mode="zero")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        ll, highs = self.dwt(x)
        return ll, list(highs)


def make_dwt(*, levels: int, wavelet: str) -> nn.Module:
    """The fastest exact transform for ``wavelet`` ("haar"/"db1" take the pure-tensor path)."""
    if wavelet in ("haar", "db1"):
        return HaarDWT(levels=levels)
    return WaveletDWT(levels=levels, wavelet=wavelet)

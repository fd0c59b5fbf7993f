"""WaveMix blocks: the cascaded block of the current reference and the 2022 parallel block.

Notation: c = final_dim, q = c/4 (channels after the reduction), m = mult, f = ff_channel,
L = level. Both blocks return the mixed map; the model adds the residual.

Channel layout: a DWT level of the reduced map is used in the packed layout of
:mod:`engine.models.wavelets`, ``(B, q, 4, H_j, W_j)`` viewed as ``(B, 4q = c, H_j, W_j)``:
channel ``4i + b`` is band b (LL, band0, band1, band2) of reduced channel i. The reference
orders the same c channels ``[LL of all q, then the 3 bands of each q]``; the two differ by a
fixed permutation of the first feed-forward conv's input channels, which
:func:`engine.models.wavemix_reference.convert_reference_state_dict` applies. Our order needs
no copy at all (the reference's needs two).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from engine.models.wavelets import DWT

__all__ = ["CascadeBlock", "ParallelBlock", "make_upsampler"]


def make_upsampler(c_in: int, c_out: int, scale: int, kind: str) -> list[nn.Module]:
    """Layers that take ``(B, c_in, h, w)`` to ``(B, c_out, scale*h, scale*w)``.

    ``"convtranspose"``: one ConvTranspose2d with kernel 2*scale, stride scale, padding
    scale/2 (kernel 4, stride 2, padding 1 for the usual x2, as the reference).
    ``"upsample"``: parameter-free bilinear up-sampling, preceded by a 1x1 conv only when the
    width changes (so WaveMix-Lite, where f = c, has no parameters here at all).
    """
    if kind == "convtranspose":
        return [nn.ConvTranspose2d(c_in, c_out, 2 * scale, stride=scale, padding=scale // 2)]
    layers: list[nn.Module] = [] if c_in == c_out else [nn.Conv2d(c_in, c_out, 1)]
    layers.append(nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False))
    return layers


def _feedforward(c_in: int, c: int, mult: int, f: int, dropout: float) -> list[nn.Module]:
    """1x1 c_in -> c*m, GELU, Dropout, 1x1 c*m -> f (the shared front of every feed-forward)."""
    return [
        nn.Conv2d(c_in, c * mult, 1),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Conv2d(c * mult, f, 1),
    ]


class CascadeBlock(nn.Module):
    """Coarse-to-fine block (wavemix 0.2.4): each level's feed-forward sees its own DWT
    output concatenated with the up-sampled result of the coarser level.

    The L levels are computed once per block, each from the previous lowpass (the reference
    recomputes every coarser level from full resolution: L(L+1)/2 transforms instead of L).

    Args:
        final_dim: c, channels in and out.
        mult: m, feed-forward expansion.
        ff_channel: f, width before the up-sampling.
        dropout: Dropout after the GELU.
        level: L >= 1.
        wavelet: Mother wavelet name (see :class:`engine.models.wavelets.DWT`).
        upsample: "convtranspose" or "upsample" (see :func:`make_upsampler`).
    """

    def __init__(self, *, final_dim: int, mult: int, ff_channel: int, dropout: float,
                 level: int, wavelet: str, upsample: str):
        super().__init__()
        c = final_dim
        self.level = level
        self.reduction = nn.Conv2d(c, c // 4, 1)
        self.dwt = DWT(wavelet=wavelet)
        # feedforwards[j] handles level j+1 (j = 0 is the finest, full-resolution output).
        ffs = []
        for j in range(level):
            c_in = c if j == level - 1 else c + c // 2  # coarsest level has no coarser input
            c_out = c if j == 0 else c // 2
            ffs.append(nn.Sequential(
                *_feedforward(c_in, c, mult, ff_channel, dropout),
                *make_upsampler(ff_channel, c_out, 2, upsample),
                nn.BatchNorm2d(c_out),
            ))
        self.feedforwards = nn.ModuleList(ffs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ll = self.reduction(x)  # (B, q, H, W)
        levels = []
        for _ in range(self.level):
            packed = self.dwt(ll)  # (B, q, 4, H_j, W_j), H_j = H / 2**j
            levels.append(packed.flatten(1, 2))  # (B, c, H_j, W_j), a view
            ll = packed[:, :, 0]  # (B, q, H_j, W_j) lowpass, input of the next level
        y = self.feedforwards[-1](levels[-1])  # (B, c/2 or c, 2 H_L, 2 W_L)
        for j in reversed(range(self.level - 1)):  # coarse to fine
            y = self.feedforwards[j](torch.cat((levels[j], y), dim=1))  # (B, 1.5c) in
        return y  # (B, c, H, W)


class ParallelBlock(nn.Module):
    """Parallel-levels block of the 2022 paper (docs/SOURCES.md, WaveMix): every level goes through one
    feed-forward shared across levels, then straight back to full resolution by its own
    up-sampler (x2**j), and the L results are concatenated to c channels.

    Level j gets ``c // L`` output channels, the finest level also the remainder. With L = 1
    it is the cascaded block's level-1 block, weight for weight.

    Args:
        final_dim: c, channels in and out.
        mult: m, feed-forward expansion.
        ff_channel: f, width before the up-sampling.
        dropout: Dropout after the GELU.
        level: L >= 1.
        wavelet: Mother wavelet name.
        upsample: "convtranspose" (kernel 2**(j+1), stride 2**j) or "upsample".
    """

    def __init__(self, *, final_dim: int, mult: int, ff_channel: int, dropout: float,
                 level: int, wavelet: str, upsample: str):
        super().__init__()
        c = final_dim
        self.level = level
        self.reduction = nn.Conv2d(c, c // 4, 1)
        self.dwt = DWT(wavelet=wavelet)
        self.feedforward = nn.Sequential(*_feedforward(c, c, mult, ff_channel, dropout))
        widths = [c // level] * level
        widths[0] += c - sum(widths)
        self.upsamplers = nn.ModuleList(
            nn.Sequential(*make_upsampler(ff_channel, w, 2 ** (j + 1), upsample))
            for j, w in enumerate(widths)
        )
        self.norm = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ll = self.reduction(x)  # (B, q, H, W)
        outs = []
        for up in self.upsamplers:
            packed = self.dwt(ll)  # (B, q, 4, H_j, W_j)
            ll = packed[:, :, 0]
            outs.append(up(self.feedforward(packed.flatten(1, 2))))  # (B, c_j, H, W)
        return self.norm(torch.cat(outs, dim=1))  # (B, c, H, W)

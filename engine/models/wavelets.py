"""One-level 2-D discrete wavelet transforms as modules, in a packed layout.

Every transform here returns the *packed* layout ``(B, C, 4, H', W')`` whose band axis is
``(LL, band0, band1, band2)`` in pytorch_wavelets' order (band0 = low along W / high along H,
band1 = high along W / low along H, band2 = high along both), so that
``y.view(B, 4 * C, H', W')`` is a ready-made feature map with no copy. :func:`multilevel`
gives the ``(lowpass, [highs_1, ..., highs_J])`` layout of ``pytorch_wavelets.DWTForward``.

Boundary handling:

* Haar (``"haar"``/``"db1"``): exactly pytorch_wavelets' mode ``"zero"``; an odd side is
  zero-padded at the end, so ``H' = ceil(H / 2)``.
* Every other wavelet: pytorch_wavelets' mode ``"periodization"`` (circular extension; an odd
  side first repeats its last sample). Mode ``"zero"`` would return ``floor((H + L - 1) / 2)``
  samples for a filter of length L, which breaks every multi-level block (the up-sampled
  coarse level no longer matches the finer one); periodization returns exactly
  ``ceil(H / 2)`` and keeps the transform orthogonal, hence lossless, for orthogonal wavelets.

Why a grouped convolution wrapped in an autograd Function for Haar: measured on 2 CPU
threads (batch 64, forward + backward), the stride-2 grouped conv is 1.4-2.3x faster than
pytorch_wavelets and faster than strided slicing on maps of 32x32 and larger, but autograd
would keep its input for backward. The transform is linear and fixed, so the backward needs
only the filters: the custom Function saves nothing, as pytorch_wavelets does. Slicing wins
on small maps, where the whole transform costs well under a millisecond (see bench/).
"""

from __future__ import annotations

from functools import cache

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "DWT",
    "HAAR_NAMES",
    "HaarIDWT",
    "haar_dwt",
    "haar_idwt",
    "multilevel",
    "wavelet_filters",
]

HAAR_NAMES = ("haar", "db1")
# Below this many pixels per map the slicing form is faster than the grouped conv (2 threads).
_SLICE_BELOW_PIXELS = 24 * 24


@cache
def _filter_bank(wavelet: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Analysis low/high-pass filters in correlation order (reversed ``dec_lo``/``dec_hi``)."""
    if wavelet in HAAR_NAMES:
        r = 2.0**-0.5
        return (r, r), (r, -r)
    import pywt  # only needed for non-Haar wavelets

    w = pywt.Wavelet(wavelet)
    return tuple(w.dec_lo[::-1]), tuple(w.dec_hi[::-1])


def wavelet_filters(wavelet: str) -> torch.Tensor:
    """The four separable 2-D analysis kernels of ``wavelet``, shaped ``(4, 1, L, L)``.

    Kernel ``k`` is ``col_k[:, None] * row_k[None, :]`` with (col, row) = (lo, lo), (hi, lo),
    (lo, hi), (hi, hi): LL then pytorch_wavelets' three detail bands, in its order.
    """
    lo, hi = (torch.tensor(f, dtype=torch.float64) for f in _filter_bank(wavelet))
    pairs = ((lo, lo), (hi, lo), (lo, hi), (hi, hi))
    k = torch.stack([col[:, None] * row[None, :] for col, row in pairs])
    return k.unsqueeze(1).float()  # (4, 1, L, L)


class _HaarAnalysis(torch.autograd.Function):
    """Grouped-conv Haar analysis; backward is the (exact) synthesis, nothing is saved."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        ctx.save_for_backward(weight)  # the 16-number filter bank, not the activation
        return F.conv2d(x, weight.to(x.dtype).repeat(c, 1, 1, 1), stride=2, groups=c)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (weight,) = ctx.saved_tensors
        return haar_synthesis(grad, weight), None


class _HaarSynthesis(torch.autograd.Function):
    """Grouped transposed-conv Haar synthesis (the inverse and the adjoint of the analysis)."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        c = y.shape[1] // 4
        ctx.save_for_backward(weight)
        return F.conv_transpose2d(y, weight.to(y.dtype).repeat(c, 1, 1, 1), stride=2, groups=c)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (weight,) = ctx.saved_tensors
        return haar_analysis(grad, weight), None


def haar_analysis(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) with H, W even -> (B, 4C, H/2, W/2), channels C-major, bands minor."""
    return _HaarAnalysis.apply(x, weight)


def haar_synthesis(y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(B, 4C, H/2, W/2) -> (B, C, H, W); the inverse of :func:`haar_analysis`."""
    return _HaarSynthesis.apply(y, weight)


def _haar_sliced(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W), H, W even -> (B, C, 4, H/2, W/2) by strided slices (no saved tensors)."""
    a = x[..., 0::2, 0::2]  # top-left of each 2x2 block
    b = x[..., 0::2, 1::2]  # top-right
    c = x[..., 1::2, 0::2]  # bottom-left
    d = x[..., 1::2, 1::2]  # bottom-right
    s_ab, d_ab, s_cd, d_cd = a + b, a - b, c + d, c - d
    return torch.stack((s_ab + s_cd, s_ab - s_cd, d_ab + d_cd, d_ab - d_cd), dim=2) * 0.5


def haar_dwt(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """One Haar level, mode "zero". x: (B, C, H, W) -> (B, C, 4, ceil(H/2), ceil(W/2)).

    Args:
        x: Input map.
        weight: ``wavelet_filters("haar")`` on x's device (any dtype; cast to x's).
    """
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2))  # zeros at the end, as pytorch_wavelets
    b, c, h, w = x.shape
    if h * w < _SLICE_BELOW_PIXELS:
        return _haar_sliced(x)
    return haar_analysis(x, weight).view(b, c, 4, h // 2, w // 2)


def haar_idwt(y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`haar_dwt` for even sizes. y: (B, C, 4, H', W') -> (B, C, 2H', 2W')."""
    b, c, _, h, w = y.shape
    return haar_synthesis(y.reshape(b, 4 * c, h, w), weight)


def _circular_pad(x: torch.Tensor, before: int, after: int, dim: int) -> torch.Tensor:
    """Wrap ``x`` around along ``dim`` by any amount (F.pad's circular mode caps it at the size)."""
    n = x.shape[dim]
    idx = torch.arange(-before, n + after, device=x.device) % n
    return x.index_select(dim, idx)


def periodized_dwt(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """One level of any wavelet, mode "periodization". (B, C, H, W) -> (B, C, 4, ceil(H/2), ...)."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2:  # pytorch_wavelets repeats the last row/column of an odd side
        x = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
    b, c, h, w = x.shape
    length = weight.shape[-1]
    # Output i reads samples 2i + k - (L - 1 - L//2), k = 0..L-1, indices taken modulo the size.
    before, after = length - 1 - length // 2, length // 2
    x = _circular_pad(_circular_pad(x, before, after, 2), before, after, 3)
    y = F.conv2d(x, weight.to(x.dtype).repeat(c, 1, 1, 1), stride=2, groups=c)
    return y.view(b, c, 4, h // 2, w // 2)


class DWT(nn.Module):
    """One level of a 2-D DWT in the packed layout ``(B, C, 4, ceil(H/2), ceil(W/2))``.

    The filters are a non-persistent buffer: they follow ``.to()``/``.double()`` but stay out
    of checkpoints (they are a function of ``wavelet``).

    Args:
        wavelet: "haar"/"db1" (fast path, mode "zero") or any pywt wavelet name
            (mode "periodization").
    """

    def __init__(self, *, wavelet: str = "haar"):
        super().__init__()
        self.wavelet = wavelet
        self.is_haar = wavelet in HAAR_NAMES
        self.register_buffer("weight", wavelet_filters(wavelet), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_haar:
            return haar_dwt(x, self.weight)
        return periodized_dwt(x, self.weight)

    def extra_repr(self) -> str:
        return f"wavelet={self.wavelet!r}"


class HaarIDWT(nn.Module):
    """Inverse one-level Haar DWT: ``(B, C, 4, H', W') -> (B, C, 2H', 2W')``."""

    def __init__(self):
        super().__init__()
        self.register_buffer("weight", wavelet_filters("haar"), persistent=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return haar_idwt(y, self.weight)


def multilevel(dwt: DWT, x: torch.Tensor, levels: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """J levels in pytorch_wavelets' layout: ``(ll_J, [highs_1, ..., highs_J])``.

    ``highs_j`` is ``(B, C, 3, H_j, W_j)``; each level transforms the previous lowpass once.
    """
    highs = []
    ll = x
    for _ in range(levels):
        packed = dwt(ll)  # (B, C, 4, H_j, W_j)
        ll, h = packed[:, :, 0], packed[:, :, 1:]
        highs.append(h)
    return ll, highs

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
  Unlike pytorch_wavelets' version, maps shorter than the filter wrap around fully and an
  odd side gets its true gradient (pytorch_wavelets drops the repeated sample's share).

Why strided slices in an autograd Function for Haar: measured forward + backward on 2 and 1
CPU threads (batch 64, 8x8 to 32x32 maps, bench/bench_models.py), the four-slice butterfly
written band by band into its output is as fast as or up to 5x faster than a stride-2 grouped
convolution with four fixed 2x2 kernels, and 1.5-3x faster than pytorch_wavelets. Plain autograd
through the slices would be slower in backward (strided scatters) and a grouped conv would
keep its input for backward; the transform is linear and orthonormal, so the custom backward
is simply the inverse transform and nothing is saved, as with pytorch_wavelets.

While a graph is recorded (``torch.jit.trace``, the TorchScript ONNX exporter) every
transform takes a functional path instead: the tracer does not record writes made through
``out=`` into views of a fresh tensor, so the fast path exports as a constant zero map (a
traced WaveMix then differs from eager by 1e-2 in its logits), and a grouped convolution whose
kernel is repeated per input channel has a kernel shape the exporter cannot know once the
channel count is a traced value. The functional path does the same arithmetic in the same
order, so it agrees with the fast path to float32 rounding (tests/test_export.py checks the
exported models against eager ones).
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
    "periodized_dwt",
    "wavelet_filters",
]

HAAR_NAMES = ("haar", "db1")


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


def _analysis(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W), H, W even -> (B, C, 4, H/2, W/2), written band by band (no stack copy)."""
    b, c, h, w = x.shape
    y = x.new_empty(b, c, 4, h // 2, w // 2)
    p, q = x[..., 0::2, 0::2], x[..., 0::2, 1::2]  # top-left, top-right of each 2x2 block
    r, s = x[..., 1::2, 0::2], x[..., 1::2, 1::2]  # bottom-left, bottom-right
    s_top, d_top, s_bot, d_bot = p + q, p - q, r + s, r - s
    torch.add(s_top, s_bot, out=y[:, :, 0])  # LL
    torch.sub(s_top, s_bot, out=y[:, :, 1])  # band0: low along W, high along H
    torch.add(d_top, d_bot, out=y[:, :, 2])  # band1: high along W, low along H
    torch.sub(d_top, d_bot, out=y[:, :, 3])  # band2: high along both
    return y.mul_(0.5)


def _synthesis(y: torch.Tensor) -> torch.Tensor:
    """Inverse (and adjoint: the transform is orthonormal) of :func:`_analysis`."""
    b, c, _, h, w = y.shape
    ll, b0, b1, b2 = y.unbind(2)
    s_top, s_bot, d_top, d_bot = ll + b0, ll - b0, b1 + b2, b1 - b2
    x = y.new_empty(b, c, h, 2, w, 2)  # (row in block, column in block) interleaved
    torch.add(s_top, d_top, out=x[:, :, :, 0, :, 0])
    torch.sub(s_top, d_top, out=x[:, :, :, 0, :, 1])
    torch.add(s_bot, d_bot, out=x[:, :, :, 1, :, 0])
    torch.sub(s_bot, d_bot, out=x[:, :, :, 1, :, 1])
    return x.view(b, c, 2 * h, 2 * w).mul_(0.5)


def _analysis_traceable(x: torch.Tensor) -> torch.Tensor:
    """:func:`_analysis` built from out-of-place ops only, so a tracer records every band."""
    p, q = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    r, s = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    s_top, d_top, s_bot, d_bot = p + q, p - q, r + s, r - s
    bands = (s_top + s_bot, s_top - s_bot, d_top + d_bot, d_top - d_bot)
    return torch.stack(bands, dim=2) * 0.5  # (B, C, 4, H/2, W/2)


def _synthesis_traceable(y: torch.Tensor) -> torch.Tensor:
    """:func:`_synthesis` built from out-of-place ops only, so a tracer records every sample."""
    ll, b0, b1, b2 = y.unbind(2)
    s_top, s_bot, d_top, d_bot = ll + b0, ll - b0, b1 + b2, b1 - b2
    top = torch.stack((s_top + d_top, s_top - d_top), dim=-1)  # (B, C, H, W, 2)
    bottom = torch.stack((s_bot + d_bot, s_bot - d_bot), dim=-1)
    x = torch.stack((top, bottom), dim=3)  # (B, C, H, 2, W, 2)
    # Flattening needs no batch size, so the exported graph keeps its batch axis dynamic.
    return x.flatten(4, 5).flatten(2, 3) * 0.5  # (B, C, 2H, 2W)


class _HaarAnalysis(torch.autograd.Function):
    """Haar analysis whose backward is the synthesis: nothing is saved for backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return _analysis(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _HaarSynthesis.apply(grad)


class _HaarSynthesis(torch.autograd.Function):
    """Haar synthesis whose backward is the analysis (double backward works too)."""

    @staticmethod
    def forward(ctx, y: torch.Tensor) -> torch.Tensor:
        return _synthesis(y)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _HaarAnalysis.apply(grad)


def haar_dwt(x: torch.Tensor) -> torch.Tensor:
    """One Haar level, mode "zero". x: (B, C, H, W) -> (B, C, 4, ceil(H/2), ceil(W/2))."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2))  # zeros at the end, as pytorch_wavelets
    if torch.jit.is_tracing():  # jit.trace, or the ONNX export built on it
        return _analysis_traceable(x)
    return _HaarAnalysis.apply(x)


def haar_idwt(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`haar_dwt` for even sizes. y: (B, C, 4, H', W') -> (B, C, 2H', 2W')."""
    if torch.jit.is_tracing():  # jit.trace, or the ONNX export built on it
        return _synthesis_traceable(y)
    return _HaarSynthesis.apply(y)


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
    if torch.jit.is_tracing():  # jit.trace, or the ONNX export built on it
        # Every channel as its own one-channel image: the kernel keeps its static (4, 1, L, L)
        # shape. (B*C, 1, H+L-2, W+L-2) -> (B*C, 4, H/2, W/2); same sums as the grouped conv.
        y = F.conv2d(x.flatten(0, 1).unsqueeze(1), weight.to(x.dtype), stride=2)
        return y.view(b, c, 4, h // 2, w // 2)
    y = F.conv2d(x, weight.to(x.dtype).repeat(c, 1, 1, 1), stride=2, groups=c)
    return y.view(b, c, 4, h // 2, w // 2)


class DWT(nn.Module):
    """One level of a 2-D DWT in the packed layout ``(B, C, 4, ceil(H/2), ceil(W/2))``.

    Haar needs no filters. Other wavelets keep theirs in a non-persistent buffer: it follows
    ``.to()``/``.double()`` but stays out of checkpoints (it is a function of ``wavelet``).

    Args:
        wavelet: "haar"/"db1" (fast path, mode "zero") or any pywt wavelet name
            (mode "periodization").
    """

    def __init__(self, *, wavelet: str = "haar"):
        super().__init__()
        self.wavelet = wavelet
        self.is_haar = wavelet in HAAR_NAMES
        filters = None if self.is_haar else wavelet_filters(wavelet)
        self.register_buffer("weight", filters, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_haar:
            return haar_dwt(x)
        return periodized_dwt(x, self.weight)

    def extra_repr(self) -> str:
        return f"wavelet={self.wavelet!r}"


class HaarIDWT(nn.Module):
    """Inverse one-level Haar DWT: ``(B, C, 4, H', W') -> (B, C, 2H', 2W')``."""

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return haar_idwt(y)


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

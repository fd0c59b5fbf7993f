"""Attention mechanisms for CXV, written on torch primitives (docs/SOURCES.md, CXV and Wave-ViT).

Every module maps a feature map ``(B, C, H, W)`` to ``(B, C, H, W)``: each pixel is a token,
there is no class token and no position embedding. Projections are 1x1 convolutions (a Linear
per token). Notation: h = heads, d = head_dim, n = H*W tokens, m = landmarks or features.

Mixed precision: the projections run in whatever precision autocast picks, but every kernel
core (feature maps, normalisers, softmax, pseudo-inverse) runs in float32 with autocast off.
The elu+1 and ReLU kernels overflow fp16 at a few times unit scale, FAVOR+ underflows its
normaliser, and Nystrom's iterative pseudo-inverse is not stable in fp16 (docs/SOURCES.md, CXV).

Batch independence: every statistic (FAVOR+ stabilisers, Nystrom's pseudo-inverse scale) is
taken per sample and head, never over the batch, so a sample's output does not depend on the
other samples in its batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.models.wavelets import DWT, HaarIDWT

__all__ = [
    "ATTENTIONS",
    "EfficientAttention",
    "LinearEluAttention",
    "NystromAttention",
    "PerformerAttention",
    "SoftmaxAttention",
    "WaveAttention",
    "make_attention",
    "segment_means",
]


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, h*d, H, W) -> (B, h, n, d)."""
    b, hd, hh, ww = t.shape
    return t.reshape(b, heads, hd // heads, hh * ww).transpose(-1, -2)


def _merge_heads(t: torch.Tensor, hh: int, ww: int) -> torch.Tensor:
    """(B, h, n, d) -> (B, h*d, H, W)."""
    b, h, _, d = t.shape
    return t.transpose(-1, -2).reshape(b, h * d, hh, ww)


def _core_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types, else unchanged (a float64 model stays float64)."""
    return torch.promote_types(dtype, torch.float32)


class _TokenAttention(nn.Module):
    """Shared frame: q/k/v projection, a float32 core on (B, h, n, d), output projection.

    Args:
        dim: Channels C in and out.
        heads: h.
        head_dim: d (the attention width is h*d).
        dropout: Dropout on the output.
        kernel_size: Kernel of the q/k/v and output convolutions (1 = per-token Linear).
        qkv_bias: Whether the q/k/v projection has a bias.
    """

    def __init__(self, *, dim: int, heads: int, head_dim: int, dropout: float = 0.0,
                 kernel_size: int = 1, qkv_bias: bool = True):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.head_dim = head_dim
        pad = kernel_size // 2
        self.to_qkv = nn.Conv2d(dim, 3 * inner, kernel_size, padding=pad, bias=qkv_bias)
        self.to_out = nn.Conv2d(inner, dim, kernel_size, padding=pad)
        self.drop = nn.Dropout(dropout)

    def core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(B, h, n, d) each, float32 or wider -> (B, h, n, d), same dtype."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hh, ww = x.shape[-2:]
        q, k, v = (_split_heads(t, self.heads) for t in self.to_qkv(x).chunk(3, dim=1))
        dtype, core_dtype = q.dtype, _core_dtype(q.dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            q, k, v = q.to(core_dtype), k.to(core_dtype), v.to(core_dtype)
            out = self.core(q, k, v).to(dtype)  # (B, h, n, d)
        return self.drop(self.to_out(_merge_heads(out, hh, ww)))  # (B, C, H, W)


class SoftmaxAttention(_TokenAttention):
    """Exact softmax attention (quadratic in n): the baseline the others approximate."""

    def core(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


class LinearEluAttention(_TokenAttention):
    """Katharopoulos et al. linear attention, feature map elu(x) + 1.

    ``qkv_kernel`` 3 makes the q/k/v and output projections 3x3 convolutions.
    """

    def __init__(self, *, qkv_kernel: int = 1, **kw):
        super().__init__(kernel_size=qkv_kernel, **kw)

    def core(self, q, k, v):
        q, k = F.elu(q) + 1.0, F.elu(k) + 1.0  # positive features
        n = k.shape[-2]
        # Dividing both sums by n changes nothing mathematically and keeps them O(1).
        kv = k.transpose(-1, -2) @ v / n  # (B, h, d, d)
        z = q @ k.mean(dim=-2, keepdim=True).transpose(-1, -2)  # (B, h, n, 1)
        return (q @ kv) / z.clamp_min(1e-6)


class EfficientAttention(_TokenAttention):
    """Shen et al. "efficient attention" (the CLTV of the released CXV code): softmax of each
    query over its features, of each key feature over positions, then q (k^T v).

    ``qkv_kernel`` 3 makes the q/k/v and output projections 3x3 convolutions, as released.
    """

    def __init__(self, *, qkv_kernel: int = 1, **kw):
        super().__init__(kernel_size=qkv_kernel, **kw)

    def core(self, q, k, v):
        temperature = self.head_dim**-0.25  # on both q and k, as the released image attention
        q = (q * temperature).softmax(dim=-1)  # over the d features of each token
        k = (k * temperature).softmax(dim=-2)  # over the n positions
        return q @ (k.transpose(-1, -2) @ v)  # (B, h, n, d)


def gaussian_orthogonal_matrix(rows: int, cols: int) -> torch.Tensor:
    """``rows`` x ``cols`` random features: stacked orthogonal blocks with Gaussian row norms."""
    blocks = []
    for _ in range(math.ceil(rows / cols)):
        q, _ = torch.linalg.qr(torch.randn(cols, cols))
        blocks.append(q.T)
    w = torch.cat(blocks)[:rows]
    norms = torch.randn(rows, cols).norm(dim=1, keepdim=True)  # as if each row were Gaussian
    return norms * w


class PerformerAttention(_TokenAttention):
    """Performer (Choromanski et al.): attention through random features.

    Args:
        kernel: "softmax" (FAVOR+ positive features, as the released CPV) or "relu".
        features: m random features per head; None = int(d * ln d) (110 for d = 32).
        **kw: See :class:`_TokenAttention`.

    The projection is a persistent buffer, drawn once at construction, so a checkpoint
    reproduces its model exactly.
    """

    def __init__(self, *, kernel: str = "softmax", features: int | None = None, **kw):
        super().__init__(**kw)
        m = features or int(self.head_dim * math.log(self.head_dim))
        self.kernel = kernel
        self.register_buffer("projection", gaussian_orthogonal_matrix(m, self.head_dim))

    def _features(self, x: torch.Tensor, is_query: bool) -> torch.Tensor:
        """(B, h, n, d) -> (B, h, n, m) positive features."""
        x = x * self.head_dim**-0.25  # split the 1/sqrt(d) of softmax between q and k
        proj = x @ self.projection.to(x.dtype).T  # (B, h, n, m)
        if self.kernel == "relu":
            return F.relu(proj) + 1e-3
        sq = (x * x).sum(dim=-1, keepdim=True) / 2
        # Stabilisers cancel exactly in the ratio below: per token for queries, per sample and
        # head (never across the batch) for keys.
        dims = (-1,) if is_query else (-1, -2)
        stab = proj.amax(dim=dims, keepdim=True).detach()
        return torch.exp(proj - sq - stab) + 1e-4

    def core(self, q, k, v):
        q, k = self._features(q, True), self._features(k, False)
        kv = k.transpose(-1, -2) @ v  # (B, h, m, d)
        z = q @ k.sum(dim=-2, keepdim=True).transpose(-1, -2)  # (B, h, n, 1)
        return (q @ kv) / z


def segment_means(n: int, m: int) -> torch.Tensor:
    """The (m, n) matrix whose row i averages the tokens adaptive pooling puts in segment i:
    ``floor(i n / m)`` up to ``ceil((i + 1) n / m)``, exclusive."""
    rows = []
    for i in range(m):
        lo, hi = (i * n) // m, -(-(i + 1) * n // m)
        rows.append([1.0 / (hi - lo) if lo <= j < hi else 0.0 for j in range(n)])
    return torch.tensor(rows)


class NystromAttention(_TokenAttention):
    """Nystromformer (Xiong et al.), as in the released CNV: q/k/v without bias, ``landmarks``
    segment means, an iterative Moore-Penrose pseudo-inverse and a depthwise convolution of
    v along the token sequence added to the output.

    Args:
        landmarks: m; fewer tokens than m use every token (exact attention).
        pinv_iterations: Iterations of the pseudo-inverse.
        conv_kernel: Kernel of the residual convolution on v (0 = none).
        **kw: See :class:`_TokenAttention`.

    Landmarks are adaptive average pools of the sequence, so n need not be a multiple of m
    (no zero padding that would enter the softmax).
    """

    def __init__(self, *, landmarks: int = 64, pinv_iterations: int = 6,
                 conv_kernel: int = 33, **kw):
        super().__init__(qkv_bias=False, **kw)
        self.landmarks = landmarks
        self.pinv_iterations = pinv_iterations
        self.res_conv = None
        if conv_kernel:
            self.res_conv = nn.Conv2d(self.heads, self.heads, (conv_kernel, 1),
                                      padding=(conv_kernel // 2, 0), groups=self.heads,
                                      bias=False)

    def _pinv(self, a: torch.Tensor) -> torch.Tensor:
        """Iterative pseudo-inverse of (B, h, m, m), scaled per sample and head."""
        absa = a.abs()
        scale = absa.sum(dim=-1).amax(dim=-1) * absa.sum(dim=-2).amax(dim=-1)  # (B, h)
        z = a.transpose(-1, -2) / scale[..., None, None]
        eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
        for _ in range(self.pinv_iterations):
            az = a @ z
            z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
        return z

    def core(self, q, k, v):
        b, h, n, d = q.shape
        m = min(self.landmarks, n)
        q = q * d**-0.5

        def pool(t: torch.Tensor) -> torch.Tensor:  # (B, h, n, d) -> (B, h, m, d)
            if torch.jit.is_tracing():
                # ONNX export: adaptive pooling needs an input length the exporter has lost
                # to the dynamic reshapes above; the same means as one fixed (m, n) matmul.
                return segment_means(n, m).to(t) @ t
            t = F.adaptive_avg_pool1d(t.transpose(-1, -2).reshape(b * h, d, n), m)
            return t.reshape(b, h, d, m).transpose(-1, -2)

        q_l, k_l = pool(q), pool(k)
        a1 = (q @ k_l.transpose(-1, -2)).softmax(dim=-1)  # (B, h, n, m)
        a2 = (q_l @ k_l.transpose(-1, -2)).softmax(dim=-1)  # (B, h, m, m)
        a3 = (q_l @ k.transpose(-1, -2)).softmax(dim=-1)  # (B, h, m, n)
        out = (a1 @ self._pinv(a2)) @ (a3 @ v)  # (B, h, n, d)
        if self.res_conv is not None:
            # Convolves each head along the n tokens; the weight follows the core's dtype.
            w = self.res_conv.weight.to(v.dtype)
            out = out + F.conv2d(v, w, padding=self.res_conv.padding, groups=self.heads)
        return out


class WaveAttention(nn.Module):
    """Wave-ViT attention (docs/SOURCES.md, Wave-ViT): full-resolution queries; keys and values
    from a 1x1 reduction to C/4, a Haar DWT (back to C channels at half size), a 3x3 conv and
    an optional strided embedding, with exact softmax over that reduced set; the inverse DWT
    of the filtered map is concatenated to the attention output before the projection.

    Args:
        dim: Channels C (divisible by 4).
        heads: h.
        head_dim: d.
        dropout: Dropout on the output.
        kv_stride: Extra stride of the key/value embedding (1 = none).

    No batch statistics (a LayerNorm, not Wave-ViT's BatchNorm) keeps samples independent.
    """

    def __init__(self, *, dim: int, heads: int, head_dim: int, dropout: float = 0.0,
                 kv_stride: int = 1):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Conv2d(dim, inner, 1)
        self.reduce = nn.Conv2d(dim, dim // 4, 1)
        self.dwt = DWT(wavelet="haar")
        self.idwt = HaarIDWT()
        self.filter = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.GELU())
        self.kv_embed = (nn.Conv2d(dim, dim, kv_stride, stride=kv_stride) if kv_stride > 1
                         else nn.Identity())
        self.kv_norm = nn.LayerNorm(dim)
        self.to_kv = nn.Linear(dim, 2 * inner)
        self.to_out = nn.Conv2d(inner + dim // 4, dim, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        q = _split_heads(self.to_q(x), self.heads)  # (B, h, n, d)
        packed = self.dwt(self.reduce(x))  # (B, C/4, 4, H/2, W/2)
        y = self.filter(packed.flatten(1, 2))  # (B, C, H/2, W/2)
        local = self.idwt(y.unflatten(1, (c // 4, 4)))[..., :hh, :ww]  # (B, C/4, H, W)
        kv = self.kv_norm(self.kv_embed(y).flatten(2).transpose(1, 2))  # (B, n', C)
        k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2)
                for t in self.to_kv(kv).chunk(2, dim=-1))  # (B, h, n', d)
        dtype, core_dtype = q.dtype, _core_dtype(q.dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            q, k, v = q.to(core_dtype), k.to(core_dtype), v.to(core_dtype)
            out = F.scaled_dot_product_attention(q, k, v).to(dtype)
        out = torch.cat((_merge_heads(out, hh, ww), local.to(dtype)), dim=1)
        return self.drop(self.to_out(out))  # (B, C, H, W)


ATTENTIONS = ("nystrom", "performer", "efficient", "linear_elu", "softmax", "wave")


def make_attention(kind: str, *, dim: int, heads: int, head_dim: int, dropout: float,
                   performer_kernel: str = "softmax", performer_features: int | None = None,
                   qkv_kernel: int = 1, landmarks: int = 64, pinv_iterations: int = 6,
                   nystrom_conv_kernel: int = 33, kv_stride: int = 1) -> nn.Module:
    """Build attention ``kind`` (one of :data:`ATTENTIONS`) with its own options."""
    common = dict(dim=dim, heads=heads, head_dim=head_dim, dropout=dropout)
    if kind == "nystrom":
        return NystromAttention(landmarks=landmarks, pinv_iterations=pinv_iterations,
                                conv_kernel=nystrom_conv_kernel, **common)
    if kind == "performer":
        return PerformerAttention(kernel=performer_kernel, features=performer_features,
                                  **common)
    if kind == "efficient":
        return EfficientAttention(qkv_kernel=qkv_kernel, **common)
    if kind == "linear_elu":
        return LinearEluAttention(qkv_kernel=qkv_kernel, **common)
    if kind == "softmax":
        return SoftmaxAttention(**common)
    if kind == "wave":
        return WaveAttention(kv_stride=kv_stride, **common)
    raise ValueError(f"unknown attention {kind!r}; known: {', '.join(ATTENTIONS)}")

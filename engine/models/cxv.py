"""CXV: Convolutional X-formers for Vision (docs/SOURCES.md, CXV).

Notation: d = dim, h = heads, r = mlp_ratio. One family, ``cxv``, whose ``attention`` field
picks the mechanism: CNV = nystrom, CPV = performer, CLTV = efficient (Shen et al., as the
released code) or linear_elu (Katharopoulos, as the paper states), plus exact softmax and
Wave-ViT's wavelet attention.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.models.attention import make_attention
from engine.models.base import register_family, register_preset
from engine.models.configs import CXVConfig

__all__ = ["CXV", "CXVConfig", "CXVLayer", "ChannelLayerNorm"]


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel: ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        # The weight's shape, not x's: a traced (ONNX-exported) graph needs it static.
        x = F.layer_norm(x, self.weight.shape, self.weight, self.bias)
        return x.permute(0, 3, 1, 2)


class CXVLayer(nn.Module):
    """conv3x3 -> channel LayerNorm -> ``x + attention(x)`` -> ``x + MLP(x)``.

    The conv has no residual and no activation, and the single LayerNorm replaces pre-norms
    (the paper's ablations: pre-norm and extra residuals hurt).

    Args:
        c_in: Input channels (d/2 for the first layer, else d).
        dim: d.
        mlp_ratio: r.
        dropout: Dropout in the MLP and on the attention output.
        attention: Built attention module mapping (B, d, H, W) to itself.
    """

    def __init__(self, *, c_in: int, dim: int, mlp_ratio: int, dropout: float,
                 attention: nn.Module):
        super().__init__()
        self.conv = nn.Conv2d(c_in, dim, 3, padding=1)
        self.norm = ChannelLayerNorm(dim)
        self.attn = attention
        self.mlp = nn.Sequential(
            nn.Conv2d(dim, dim * mlp_ratio, 1),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Conv2d(dim * mlp_ratio, dim, 1),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))  # (B, d, H, W)
        x = x + self.attn(x)
        return x + self.mlp(x)


class CXV(nn.Module):
    """CXV classifier: two-conv stem, ``depth`` CXV layers at constant resolution, pooled
    linear head. No class token, no position embedding.

    Args:
        in_channels: Input channels.
        num_classes: Output logits.
        image_size: Unused by the module (checked by the config).
        dim: d, embedding dimension.
        depth: Number of layers.
        heads: Attention heads.
        head_dim: Width of one head (attention width heads * head_dim).
        mlp_ratio: MLP expansion.
        dropout: Dropout (MLP and attention output).
        attention: Mechanism, see :data:`engine.models.attention.ATTENTIONS`.
        stride: Stride of both stem convs.
        performer_kernel, performer_features: Performer options.
        qkv_kernel: Projection kernel of "efficient" and "linear_elu".
        landmarks, pinv_iterations, nystrom_conv_kernel: Nystrom options.
        kv_stride: Wave attention's key/value stride.
    """

    def __init__(self, *, in_channels: int = 3, num_classes: int = 10,
                 image_size: int | None = None, dim: int = 128, depth: int = 5,
                 heads: int = 4, head_dim: int = 32, mlp_ratio: int = 2, dropout: float = 0.0,
                 attention: str = "nystrom", stride: int = 1, performer_kernel: str = "softmax",
                 performer_features: int | None = None, qkv_kernel: int = 1,
                 landmarks: int = 64, pinv_iterations: int = 6, nystrom_conv_kernel: int = 33,
                 kv_stride: int = 1):
        super().__init__()
        self.stem = nn.Sequential(  # no activation between (the paper: GELU here hurts)
            nn.Conv2d(in_channels, dim // 4, 3, stride, 1),
            nn.Conv2d(dim // 4, dim // 2, 3, stride, 1),
        )
        options = dict(performer_kernel=performer_kernel, performer_features=performer_features,
                       qkv_kernel=qkv_kernel, landmarks=landmarks,
                       pinv_iterations=pinv_iterations, nystrom_conv_kernel=nystrom_conv_kernel,
                       kv_stride=kv_stride)
        self.layers = nn.ModuleList(
            CXVLayer(c_in=dim // 2 if i == 0 else dim, dim=dim, mlp_ratio=mlp_ratio,
                     dropout=dropout,
                     attention=make_attention(attention, dim=dim, heads=heads,
                                              head_dim=head_dim, dropout=dropout, **options))
            for i in range(depth)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, d/2, H', W')
        for layer in self.layers:
            x = layer(x)  # (B, d, H', W')
        return self.head(self.pool(x).flatten(1))  # (B, num_classes)


@register_family("cxv", CXVConfig, summary="conv + linear attention hybrids (CXV paper)")
def build_cxv(cfg: CXVConfig) -> nn.Module:
    """Build a :class:`CXV` from its validated config."""
    return CXV(**cfg.model_dump())


# Model-layers/heads (CXV paper, Table 1): d 128, head 32, MLP 2d, 10 classes.
_CXV_5_4 = dict(dim=128, depth=5, heads=4, head_dim=32, mlp_ratio=2, num_classes=10)
register_preset("cnv-5-4", "cxv", "CNV-5/4: Nystrom, 89.56% CIFAR-10 (CXV paper)",
                attention="nystrom", **_CXV_5_4)
register_preset("cpv-5-4", "cxv", "CPV-5/4: Performer FAVOR+, 91.42% CIFAR-10 (CXV paper)",
                attention="performer", **_CXV_5_4)
register_preset("cltv-5-4", "cxv", "CLTV-5/4: efficient attention, 1x1 q/k/v (CXV paper)",
                attention="efficient", qkv_kernel=1, **_CXV_5_4)

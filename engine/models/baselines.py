"""The baselines CXV's Table 1 compares against (docs/SOURCES.md, Baselines): ResNet-18 with a
CIFAR stem, ConvMixer and a patch ViT, as small modules (timm and vit-pytorch pull in
torchvision, which has no CPU build here).

Preset sizes against Table 1 (10 classes, 32x32 inputs): ResNet-18 11,173,962 (11.2 M);
ConvMixer-256/16 kernel 8, patch 1: 1,339,402 (1.3 M); ViT-10/4 (d 128, head 32, MLP 256,
patch 4): 1,337,226 (1.3 M). The paper's 14.7 GB for ViT suggests patch 1 (1,024 tokens),
which gives 1,454,346 parameters: set ``patch_size=1`` for that variant.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.models.base import register_family, register_preset
from engine.models.configs import ConvMixerConfig, ResNet18Config, ViTConfig

__all__ = ["ConvMixer", "ConvMixerConfig", "ResNet18", "ResNet18Config", "ViT", "ViTConfig"]


# ----------------------------------------------------------------------------- ResNet-18
class _BasicBlock(nn.Module):
    """Two 3x3 conv-BN pairs with an identity or 1x1-conv shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 with the CIFAR stem (one 3x3 conv, no max-pool): stages of 2 basic blocks at
    widths w, 2w, 4w, 8w, the last three halving the map.

    Args:
        in_channels: Input channels.
        num_classes: Output logits.
        image_size: Unused (any size of at least 8 pixels works).
        width: w.
    """

    def __init__(self, *, in_channels: int = 3, num_classes: int = 10,
                 image_size: int | None = None, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        blocks, c = [], width
        for i, w in enumerate((width, 2 * width, 4 * width, 8 * width)):
            blocks += [_BasicBlock(c, w, 1 if i == 0 else 2), _BasicBlock(w, w, 1)]
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))  # (B, 8w, H/8, W/8)
        return self.head(x.mean(dim=(2, 3)))  # (B, num_classes)


# ----------------------------------------------------------------------------- ConvMixer
class _ConvMixerLayer(nn.Module):
    """Residual depthwise k x k conv, then pointwise conv, each followed by GELU and BN."""

    def __init__(self, dim: int, kernel_size: int):
        super().__init__()
        # "same" padding written out: torch's padding="same" warns for even kernels.
        lo = (kernel_size - 1) // 2
        hi = kernel_size - 1 - lo
        self.spatial = nn.Sequential(nn.ZeroPad2d((lo, hi, lo, hi)),
                                     nn.Conv2d(dim, dim, kernel_size, groups=dim),
                                     nn.GELU(), nn.BatchNorm2d(dim))
        self.channel = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.GELU(), nn.BatchNorm2d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel(x + self.spatial(x))


class ConvMixer(nn.Module):
    """ConvMixer ("Patches are all you need?"): patch embedding, ``depth`` mixer layers at
    constant resolution, pooled linear head.

    Args:
        in_channels: Input channels.
        num_classes: Output logits.
        image_size: Unused.
        dim: Channels.
        depth: Mixer layers.
        kernel_size: Depthwise kernel.
        patch_size: Patch side of the stem.
    """

    def __init__(self, *, in_channels: int = 3, num_classes: int = 10,
                 image_size: int | None = None, dim: int = 256, depth: int = 16,
                 kernel_size: int = 8, patch_size: int = 1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, dim, patch_size, patch_size),
                                  nn.GELU(), nn.BatchNorm2d(dim))
        self.layers = nn.Sequential(*(_ConvMixerLayer(dim, kernel_size) for _ in range(depth)))
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))  # (B, dim, H/p, W/p)
        return self.head(x.mean(dim=(2, 3)))


# ----------------------------------------------------------------------------- ViT
class _TransformerLayer(nn.Module):
    """Pre-norm multi-head self-attention and MLP, each with a residual."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_ratio: int, dropout: float):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.out = nn.Linear(inner, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(dim * mlp_ratio, dim), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, h, n, d)
                   for t in self.qkv(self.norm1(x)).chunk(3, dim=-1))
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, -1)
        x = x + self.drop(self.out(a))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Vision Transformer: patch embedding, class token, learned position embedding,
    ``depth`` pre-norm layers, final LayerNorm, linear head on the class token.

    Args:
        in_channels: Input channels.
        num_classes: Output logits.
        image_size: Size the position embedding is made for (None = 32); other sizes
            interpolate it bilinearly.
        dim, depth, heads, head_dim, mlp_ratio, dropout: Transformer shape.
        patch_size: Patch side.
    """

    def __init__(self, *, in_channels: int = 3, num_classes: int = 10,
                 image_size: int | None = None, dim: int = 128, depth: int = 10,
                 heads: int = 4, head_dim: int = 32, mlp_ratio: int = 2, patch_size: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        grid = max(1, (image_size or 32) // patch_size)
        self.patch = nn.Conv2d(in_channels, dim, patch_size, patch_size)  # Linear per patch
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, grid * grid + 1, dim) * 0.02)
        self.layers = nn.Sequential(*(_TransformerLayer(dim, heads, head_dim, mlp_ratio, dropout)
                                      for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.grid = grid

    def _pos(self, gh: int, gw: int) -> torch.Tensor:
        """Position embedding for a gh x gw grid: (1, 1 + gh*gw, dim)."""
        if (gh, gw) == (self.grid, self.grid):
            return self.pos
        cls, grid = self.pos[:, :1], self.pos[:, 1:]
        grid = grid.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode="bilinear", align_corners=False)
        return torch.cat((cls, grid.flatten(2).transpose(1, 2)), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x)  # (B, dim, H/p, W/p)
        gh, gw = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # (B, n, dim)
        x = torch.cat((self.cls.expand(x.shape[0], -1, -1), x), dim=1) + self._pos(gh, gw)
        x = self.norm(self.layers(x))
        return self.head(x[:, 0])  # (B, num_classes)


# ----------------------------------------------------------------------------- registry
@register_family("resnet18", ResNet18Config, summary="ResNet-18, CIFAR stem (baseline)")
def build_resnet18(cfg: ResNet18Config) -> nn.Module:
    """Build a :class:`ResNet18` from its validated config."""
    return ResNet18(**cfg.model_dump())


@register_family("convmixer", ConvMixerConfig, summary="ConvMixer (baseline)")
def build_convmixer(cfg: ConvMixerConfig) -> nn.Module:
    """Build a :class:`ConvMixer` from its validated config."""
    return ConvMixer(**cfg.model_dump())


@register_family("vit", ViTConfig, summary="patch Vision Transformer (baseline)")
def build_vit(cfg: ViTConfig) -> nn.Module:
    """Build a :class:`ViT` from its validated config."""
    return ViT(**cfg.model_dump())


register_preset("resnet18-w64", "resnet18", "ResNet-18, 86.29% CIFAR-10 (CXV paper, Table 1)",
                width=64, num_classes=10)
register_preset("convmixer-256-16-k8-p1", "convmixer",
                "ConvMixer-16, 88.46% CIFAR-10 (CXV paper, Table 1)",
                dim=256, depth=16, kernel_size=8, patch_size=1, num_classes=10)
register_preset("vit-10-4-p4", "vit", "ViT-10/4, 57.53% CIFAR-10 (CXV paper, Table 1)",
                dim=128, depth=10, heads=4, head_dim=32, mlp_ratio=2, patch_size=4,
                image_size=32, num_classes=10)

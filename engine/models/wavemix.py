"""WaveMix: token mixing by a multi-level 2-D DWT (docs/SOURCES.md, WaveMix).

Notation: c = final_dim, m = mult, f = ff_channel, p = dropout, L = level, s = stride.
The blocks live in :mod:`engine.models.wavemix_blocks`; loading weights of the reference
package is :mod:`engine.models.wavemix_reference`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
from pydantic import Field, model_validator

from engine.errors import ConfigError
from engine.models.base import ModelConfig, register_family, register_preset
from engine.models.wavemix_blocks import CascadeBlock, ParallelBlock

__all__ = ["WaveMix", "WaveMixConfig", "stem_output_size"]

Wavelet = Literal["haar", "db1", "db2", "db3", "db4", "sym2", "sym3", "coif1", "bior1.3"]
MAX_LEVEL = 8


def stem_output_size(size: int, *, stem: str, stride: int, patch_size: int) -> int:
    """Side of the map the stem makes from a ``size`` x ``size`` input."""
    if stem == "strided":
        for _ in range(2):  # two 3x3 convs, padding 1, stride s each
            size = (size - 1) // stride + 1
        return size
    return size // patch_size


class WaveMixConfig(ModelConfig):
    """Constructor arguments of :class:`WaveMix`.

    ``wavelet``: Haar/db1 reproduce the reference exactly (pytorch_wavelets mode "zero");
    any other wavelet uses mode "periodization", which keeps every level at exactly half the
    size (mode "zero" grows it by the filter length and broke every level >= 2).
    ``upsample="upsample"`` swaps each transposed conv for parameter-free bilinear x2
    up-sampling (plus a 1x1 conv where f differs from the width it must produce).
    """

    fix_hints = {
        "final_dim": "use a multiple of 4 (the block reduces c to c/4 channels, whose four "
                     "wavelet bands make c again), e.g. 64",
        "level": f"use 1 to {MAX_LEVEL}, and at most log2 of the map side after the stem",
        "stem": "use 'strided' (two stride-s 3x3 convs) or 'patchify' (patch_size)",
    }

    final_dim: int = Field(64, ge=4, le=4096, multiple_of=4, description="channels c in the blocks")
    depth: int = Field(4, ge=1, le=64, description="number of WaveMix blocks")
    mult: int = Field(2, ge=1, le=8, description="feed-forward expansion m")
    ff_channel: int | None = Field(None, ge=1, le=4096, description="feed-forward output f; None = c")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    level: int = Field(1, ge=1, le=MAX_LEVEL, description="DWT levels per block")
    wavelet: Wavelet = "haar"
    block: Literal["cascade", "parallel"] = "cascade"
    upsample: Literal["convtranspose", "upsample"] = "convtranspose"
    stem: Literal["strided", "patchify"] = "strided"
    stride: int = Field(1, ge=1, le=4, description="stride of each strided-stem conv")
    patch_size: int = Field(4, ge=1, le=32, description="patch size of the patchify stem")

    @model_validator(mode="after")
    def _check_spatial(self) -> WaveMixConfig:
        if self.image_size is None:
            return self
        if self.stem == "patchify" and self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} is not divisible by patch_size "
                f"{self.patch_size}; choose a patch size that divides the input"
            )
        after = stem_output_size(self.image_size, stem=self.stem, stride=self.stride,
                                 patch_size=self.patch_size)
        if after % (2**self.level):
            raise ValueError(_level_message(after, after, self.level))
        return self


def _level_message(h: int, w: int, level: int) -> str:
    """Why an h x w map cannot take ``level`` DWT levels, and what would work."""
    best = min((h & -h).bit_length(), (w & -w).bit_length()) - 1  # log2 of the largest 2**k | side
    fix = f"use level <= {best}" if best >= 1 else "the side is odd: no level fits"
    return (
        f"the {h}x{w} map after the stem is not divisible by 2**level = {2**level}; {fix}, "
        f"or choose a stem/stride/patch_size/image_size that leaves sides divisible by "
        f"{2**level}"
    )


class WaveMix(nn.Module):
    """WaveMix classifier: stem, ``depth`` residual WaveMix blocks, pooled linear head.

    Args:
        in_channels: Input channels (any number).
        num_classes: Output logits.
        image_size: Unused by the module (the config checks it); kept so that the config's
            fields are exactly the constructor's arguments.
        final_dim: c, channels in the blocks (divisible by 4).
        depth: Number of blocks.
        mult: m, feed-forward expansion.
        ff_channel: f, feed-forward output width; None = c.
        dropout: p, dropout inside each feed-forward.
        level: L, DWT levels per block.
        wavelet: Mother wavelet; Haar takes the fast path.
        block: "cascade" (reference 0.2.4) or "parallel" (2022 paper).
        upsample: "convtranspose" (reference) or "upsample" (parameter-free, WaveMix-Lite).
        stem: "strided" or "patchify".
        stride: s, stride of both strided-stem convs (the map shrinks by s**2).
        patch_size: Patch side of the patchify stem.
    """

    def __init__(self, *, in_channels: int = 3, num_classes: int = 10,
                 image_size: int | None = None, final_dim: int = 64, depth: int = 4,
                 mult: int = 2, ff_channel: int | None = None, dropout: float = 0.0,
                 level: int = 1, wavelet: str = "haar", block: str = "cascade",
                 upsample: str = "convtranspose", stem: str = "strided", stride: int = 1,
                 patch_size: int = 4):
        super().__init__()
        c = final_dim
        self.level = level
        if stem == "strided":
            self.stem = nn.Sequential(  # no activation between, as the reference
                nn.Conv2d(in_channels, c // 2, 3, stride, 1),
                nn.Conv2d(c // 2, c, 3, stride, 1),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, c // 4, 3, 1, 1),
                nn.Conv2d(c // 4, c // 2, 3, 1, 1),
                nn.Conv2d(c // 2, c, patch_size, patch_size),
                nn.GELU(),
                nn.BatchNorm2d(c),
            )
        block_cls = CascadeBlock if block == "cascade" else ParallelBlock
        self.blocks = nn.ModuleList(
            block_cls(final_dim=c, mult=mult, ff_channel=ff_channel or c, dropout=dropout,
                      level=level, wavelet=wavelet, upsample=upsample)
            for _ in range(depth)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, c, H', W')
        h, w = x.shape[-2:]
        if h % 2**self.level or w % 2**self.level:
            # Without this the first torch.cat fails with a bare size-mismatch message.
            raise ConfigError(_level_message(h, w, self.level))
        for block in self.blocks:
            x = block(x) + x
        return self.head(self.pool(x).flatten(1))  # (B, num_classes)


@register_family("wavemix", WaveMixConfig, summary="multi-level 2-D DWT token mixing (WaveMix-Lite)")
def build_wavemix(cfg: WaveMixConfig) -> nn.Module:
    """Build a :class:`WaveMix` from its validated config."""
    return WaveMix(**cfg.model_dump())


# WaveMix-Lite-X/Y (the WaveMix-Lite table): final_dim X, depth Y, mult 2, f = X, level 1, stride 1.
# The published counts fix the input channels and the up-sampling kind (docs/SOURCES.md, WaveMix).
_LITE = dict(mult=2, level=1, stem="strided", stride=1, num_classes=10)
register_preset("wavemix-lite-8-10", "wavemix", "99% MNIST, 3,566 params (WaveMix-Lite)",
                in_channels=1, final_dim=8, depth=10, ff_channel=8, upsample="upsample", **_LITE)
register_preset("wavemix-lite-8-5", "wavemix", "90% Fashion-MNIST, 7,156 params (WaveMix-Lite)",
                in_channels=1, final_dim=8, depth=5, ff_channel=8, **_LITE)
register_preset("wavemix-lite-32-7", "wavemix", "80% CIFAR-10, 37,058 params (WaveMix-Lite)",
                in_channels=3, final_dim=32, depth=7, ff_channel=32, upsample="upsample", **_LITE)
register_preset("wavemix-lite-64-6", "wavemix", "90% CIFAR-10, 520,106 params (WaveMix-Lite)",
                in_channels=3, final_dim=64, depth=6, ff_channel=64, **_LITE)
# Upstream configurations (docs/SOURCES.md, WaveMix): mult 2, f = c, dropout 0.5.
register_preset("wavemix-l1-144-7", "wavemix", "94.58% CIFAR-10, 3,042,550 params (upstream)",
                in_channels=3, num_classes=10, final_dim=144, depth=7, mult=2, ff_channel=144,
                dropout=0.5, level=1, stem="strided", stride=1)
register_preset("wavemix-l3-192-16-p4", "wavemix",
                "75.06% ImageNet, 27,857,608 params (upstream)",
                in_channels=3, num_classes=1000, final_dim=192, depth=16, mult=2,
                ff_channel=192, dropout=0.5, level=3, stem="patchify", patch_size=4)

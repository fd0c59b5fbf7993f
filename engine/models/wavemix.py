"""WaveMix: token mixing by a multi-level 2-D DWT (seed 001; REFERENCE.md section 1).

Notation: c = final_dim, m = mult, f = ff_channel, p = dropout, L = level.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
from pydantic import Field, model_validator

from engine.models.base import ModelConfig, register_family, register_preset
from engine.models.wavelets import make_dwt

__all__ = ["WaveMix", "WaveMixConfig", "WaveMixBlock"]

Wavelet = Literal["haar", "db1", "db2", "db3", "db4", "sym2", "sym3", "coif1", "bior1.3"]


class WaveMixConfig(ModelConfig):
    """Constructor arguments of :class:`WaveMix`."""

    final_dim: int = Field(64, ge=4, multiple_of=4, description="channels c inside the blocks")
    depth: int = Field(4, ge=1, le=64, description="number of WaveMix blocks")
    mult: int = Field(2, ge=1, le=8, description="feed-forward expansion m")
    ff_channel: int | None = Field(None, ge=1, description="feed-forward output f; None = c")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    level: int = Field(1, ge=1, le=4, description="DWT levels per block")
    wavelet: Wavelet = "haar"
    stem: Literal["strided", "patchify"] = "strided"
    stride: int = Field(1, ge=1, le=4, description="stride of each strided-stem conv")
    patch_size: int = Field(4, ge=1, le=32, description="patch size of the patchify stem")

    @model_validator(mode="after")
    def _check_spatial(self) -> WaveMixConfig:
        if self.image_size is None:
            return self
        after = self.image_size
        if self.stem == "strided":
            for _ in range(2):
                after = (after - 1) // self.stride + 1
        else:
            if self.image_size % self.patch_size:
                raise ValueError(
                    f"image_size {self.image_size} is not divisible by patch_size "
                    f"{self.patch_size}; choose a patch size that divides the input"
                )
            after = self.image_size // self.patch_size
        if after % (2**self.level):
            raise ValueError(
                f"the {after}x{after} map after the stem is not divisible by 2**level = "
                f"{2**self.level}; lower level to at most "
                f"{max(1, (after & -after).bit_length() - 1)} or change the stem"
            )
        return self


def _feedforward(c_in: int, c: int, mult: int, f: int, c_out: int, dropout: float) -> nn.Sequential:
    """1x1 c_in -> c*m, GELU, dropout, 1x1 -> f, ConvT x2 up -> c_out, BN."""
    return nn.Sequential(
        nn.Conv2d(c_in, c * mult, 1),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Conv2d(c * mult, f, 1),
        nn.ConvTranspose2d(f, c_out, kernel_size=4, stride=2, padding=1),
        nn.BatchNorm2d(c_out),
    )


class WaveMixBlock(nn.Module):
    """Cascaded multi-level block: coarse levels are mixed first and up-sampled into finer ones.

    The DWT is computed once for all levels. Returns the mixed map; the model adds the residual.
    """

    def __init__(self, *, final_dim: int, mult: int, ff_channel: int, dropout: float,
                 level: int, wavelet: str):
        super().__init__()
        c = final_dim
        self.level = level
        self.reduction = nn.Conv2d(c, c // 4, 1)
        # One single-level transform applied to each successive lowpass: every level is
        # computed once (the reference recomputes all coarser levels from full resolution).
        self.dwt = make_dwt(levels=1, wavelet=wavelet)
        # feedforwards[j] handles level j+1 (j = 0 is the finest).
        ffs = []
        for j in range(level):
            c_in = c if j == level - 1 else c + c // 2
            c_out = c if j == 0 else c // 2
            ffs.append(_feedforward(c_in, c, mult, ff_channel, c_out, dropout))
        self.feedforwards = nn.ModuleList(ffs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduction(x)  # (B, c/4, H, W)
        b, q = x.shape[:2]
        lows = []
        ll = x
        for _ in range(self.level):
            ll, (highs,) = self.dwt(ll)  # (B, q, H_j, W_j), (B, q, 3, H_j, W_j)
            lows.append(torch.cat((ll, highs.reshape(b, 3 * q, *highs.shape[-2:])), dim=1))
        y = None
        for j in reversed(range(self.level)):  # coarse to fine
            z = lows[j] if y is None else torch.cat((lows[j], y), dim=1)
            y = self.feedforwards[j](z)
        return y


class WaveMix(nn.Module):
    """WaveMix classifier: stem, ``depth`` residual WaveMix blocks, pooled linear head."""

    def __init__(self, *, in_channels: int = 3, num_classes: int = 10, image_size: int | None = None,
                 final_dim: int = 64, depth: int = 4, mult: int = 2, ff_channel: int | None = None,
                 dropout: float = 0.0, level: int = 1, wavelet: str = "haar",
                 stem: str = "strided", stride: int = 1, patch_size: int = 4):
        super().__init__()
        c = final_dim
        f = ff_channel or c
        if stem == "strided":
            self.stem = nn.Sequential(
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
        self.blocks = nn.ModuleList(
            WaveMixBlock(final_dim=c, mult=mult, ff_channel=f, dropout=dropout, level=level,
                         wavelet=wavelet)
            for _ in range(depth)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, c, H', W')
        for block in self.blocks:
            x = block(x) + x
        return self.head(self.pool(x).flatten(1))  # (B, num_classes)


@register_family("wavemix", WaveMixConfig, summary="multi-level 2-D DWT token mixing (seed 001)")
def build_wavemix(cfg: WaveMixConfig) -> nn.Module:
    """Build a :class:`WaveMix` from its validated config."""
    return WaveMix(**cfg.model_dump())


register_preset("wavemix-lite-64-6", "wavemix", "90% CIFAR-10 (seed 001)",
                final_dim=64, depth=6, mult=2, ff_channel=64, level=1, stride=1)

"""WaveMix: token mixing by a multi-level 2-D DWT (docs/SOURCES.md, WaveMix).

Notation: c = final_dim, m = mult, f = ff_channel, p = dropout, L = level, s = stride.
The blocks live in :mod:`engine.models.wavemix_blocks`; loading weights of the reference
package is :mod:`engine.models.wavemix_reference`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from engine.errors import ConfigError
from engine.models.base import register_family, register_preset
from engine.models.configs import WaveMixConfig, level_message, stem_output_size
from engine.models.wavemix_blocks import CascadeBlock, ParallelBlock

__all__ = ["WaveMix", "WaveMixConfig", "stem_output_size"]

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
            raise ConfigError(level_message(h, w, self.level))
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

"""Every model family's configuration, without torch: what a spec's ``model`` section is
checked against before anything is built (the app validates specs with this module alone).

Each class's fields are exactly the keyword-only arguments of its family's ``nn.Module``
(engine/models/wavemix.py, cxv.py, baselines.py); the family modules register their builders
under the same names (``register_family``), and a test checks that the two registries agree.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from engine.models.base import ModelConfig, register_config

__all__ = ["CXVConfig", "ConvMixerConfig", "MAX_LEVEL", "ResNet18Config", "ViTConfig",
           "WaveMixConfig", "level_message", "stem_output_size"]


# ----------------------------------------------------------------------------- WaveMix
Wavelet = Literal["haar", "db1", "db2", "db3", "db4", "sym2", "sym3", "coif1", "bior1.3"]
MAX_LEVEL = 8


def stem_output_size(size: int, *, stem: str, stride: int, patch_size: int) -> int:
    """Side of the map the stem makes from a ``size`` x ``size`` input."""
    if stem == "strided":
        for _ in range(2):  # two 3x3 convs, padding 1, stride s each
            size = (size - 1) // stride + 1
        return size
    return size // patch_size


@register_config("wavemix", builder="engine.models.wavemix")
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
            raise ValueError(level_message(after, after, self.level))
        return self


def level_message(h: int, w: int, level: int) -> str:
    """Why an h x w map cannot take ``level`` DWT levels, and what would work."""
    best = min((h & -h).bit_length(), (w & -w).bit_length()) - 1  # log2 of the largest 2**k | side
    fix = f"use level <= {best}" if best >= 1 else "the side is odd: no level fits"
    return (
        f"the {h}x{w} map after the stem is not divisible by 2**level = {2**level}; {fix}, "
        f"or choose a stem/stride/patch_size/image_size that leaves sides divisible by "
        f"{2**level}"
    )


# ----------------------------------------------------------------------------- CXV
@register_config("cxv", builder="engine.models.cxv")
class CXVConfig(ModelConfig):
    """Constructor arguments of :class:`CXV`."""

    fix_hints = {
        "dim": "use a multiple of 4 (the stem widens in steps of d/4 and d/2), e.g. 128",
        "nystrom_conv_kernel": "use an odd kernel (or 0 for none), e.g. 33",
    }

    dim: int = Field(128, ge=4, le=2048, multiple_of=4, description="embedding dimension d")
    depth: int = Field(5, ge=1, le=32, description="number of CXV layers")
    heads: int = Field(4, ge=1, le=32)
    head_dim: int = Field(32, ge=4, le=256, description="width of one attention head")
    mlp_ratio: int = Field(2, ge=1, le=8, description="MLP hidden width = mlp_ratio * d")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    attention: Literal["nystrom", "performer", "efficient", "linear_elu", "softmax", "wave"] = (
        "nystrom")
    stride: int = Field(1, ge=1, le=4, description="stride of each stem conv (tokens / s**4)")
    performer_kernel: Literal["softmax", "relu"] = "softmax"
    performer_features: int | None = Field(None, ge=1, le=4096,
                                           description="random features; None = d ln d")
    qkv_kernel: Literal[1, 3] = Field(1, description="q/k/v/out conv kernel (efficient, linear_elu)")
    landmarks: int = Field(64, ge=1, le=4096, description="Nystrom landmarks")
    pinv_iterations: int = Field(6, ge=1, le=32)
    nystrom_conv_kernel: int = Field(33, ge=0, le=129, description="residual conv on v; 0 = none")
    kv_stride: int = Field(1, ge=1, le=8, description="wave attention: stride of the k/v embedding")

    @model_validator(mode="after")
    def _check(self) -> CXVConfig:
        if self.nystrom_conv_kernel and self.nystrom_conv_kernel % 2 == 0:
            raise ValueError(f"nystrom_conv_kernel must be odd or 0 (got "
                             f"{self.nystrom_conv_kernel}); use e.g. 33")
        if self.image_size is not None and self.attention == "wave":
            side = self.image_size
            for _ in range(2):
                side = (side - 1) // self.stride + 1
            half = (side + 1) // 2
            if half < self.kv_stride:
                raise ValueError(f"wave attention: the {half}x{half} key map is smaller than "
                                 f"kv_stride {self.kv_stride}; lower kv_stride or stride")
        return self


# ----------------------------------------------------------------------------- baselines
@register_config("resnet18", builder="engine.models.baselines")
class ResNet18Config(ModelConfig):
    """Constructor arguments of :class:`ResNet18`."""

    width: int = Field(64, ge=4, le=512, description="channels of the first stage (x1, x2, x4, x8)")


@register_config("convmixer", builder="engine.models.baselines")
class ConvMixerConfig(ModelConfig):
    """Constructor arguments of :class:`ConvMixer`."""

    dim: int = Field(256, ge=4, le=4096)
    depth: int = Field(16, ge=1, le=64)
    kernel_size: int = Field(8, ge=1, le=15, description="depthwise kernel")
    patch_size: int = Field(1, ge=1, le=16)


@register_config("vit", builder="engine.models.baselines")
class ViTConfig(ModelConfig):
    """Constructor arguments of :class:`ViT`."""

    dim: int = Field(128, ge=8, le=4096)
    depth: int = Field(10, ge=1, le=64)
    heads: int = Field(4, ge=1, le=32)
    head_dim: int = Field(32, ge=4, le=256)
    mlp_ratio: int = Field(2, ge=1, le=8)
    patch_size: int = Field(4, ge=1, le=32)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

"""Which augmentations a run applies (the ``train.augment`` section); no torch, so the spec is
checked without it. The augmentation itself is engine/data/augment.py."""

from __future__ import annotations

from typing import ClassVar, Literal

from engine.config import Config, searchable

__all__ = ["AugmentConfig", "PaddingMode"]

PaddingMode = Literal["reflect", "zeros"]


class AugmentConfig(Config):
    """Which augmentations to apply; all off (the default) is the identity.

    Attributes:
        crop_padding: pixels added on every side before a random crop back to (H, W); the
            crop offset is uniform in [-crop_padding, crop_padding] per axis. 0 = no crop.
        flip: mirror each image left-right with probability 1/2.
        cutout: side in pixels of one square per image set to 0 (the mean colour once inputs
            are normalised); the square lies fully inside the image. 0 = off.
        padding_mode: ``reflect`` (mirror the border, no artificial edges) or ``zeros``.
    """

    section: ClassVar[str] = "augment"

    crop_padding: int = searchable(0, ge=0, le=16)
    flip: bool = searchable(False)
    cutout: int = searchable(0, ge=0, le=64)
    padding_mode: PaddingMode = "reflect"

    @property
    def is_identity(self) -> bool:
        """True when no augmentation is switched on."""
        return self.crop_padding == 0 and not self.flip and self.cutout == 0

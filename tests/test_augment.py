"""BatchAugment: exactness against a per-image reference, shapes, seeding, cutout, devices."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.data.augment import AugmentConfig, AugmentParams, BatchAugment
from engine.errors import ConfigError

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])]


def _images(b: int = 6, c: int = 3, h: int = 9, w: int = 7, device: str = "cpu") -> torch.Tensor:
    return torch.arange(b * c * h * w, dtype=torch.float32, device=device).view(b, c, h, w) + 1


def _reference(x: torch.Tensor, cfg: AugmentConfig, params: AugmentParams) -> torch.Tensor:
    """Per-image loop with F.pad and slicing: the obvious implementation."""
    p, out = cfg.crop_padding, []
    mode = "reflect" if cfg.padding_mode == "reflect" else "constant"
    for i in range(x.shape[0]):
        img = x[i]
        if params.shift is not None:
            dy, dx = (int(v) + p for v in params.shift[i])
            padded = F.pad(img[None], (p, p, p, p), mode=mode)[0]
            img = padded[:, dy:dy + x.shape[2], dx:dx + x.shape[3]]
        if params.flip is not None and params.flip[i]:
            img = img.flip(-1)
        if params.cutout is not None:
            y0, x0 = (int(v) for v in params.cutout[i])
            img = img.clone()
            img[:, y0:y0 + cfg.cutout, x0:x0 + cfg.cutout] = 0
        out.append(img)
    return torch.stack(out)


def test_all_off_is_the_identity():
    x = _images()
    assert AugmentConfig().is_identity and BatchAugment(AugmentConfig())(x) is x


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cfg", [
    AugmentConfig(crop_padding=2),
    AugmentConfig(crop_padding=3, padding_mode="zeros"),
    AugmentConfig(flip=True),
    AugmentConfig(cutout=3),
    AugmentConfig(crop_padding=4, flip=True, cutout=5, padding_mode="reflect"),
    AugmentConfig(crop_padding=6, flip=True, cutout=7, padding_mode="zeros"),
])
def test_batch_equals_per_image_reference_and_keeps_shape(cfg, device):
    x = _images(b=64, device=device)
    aug = BatchAugment(cfg)
    gen = torch.Generator(device=device).manual_seed(0)
    params = aug.draw(64, 9, 7, device=device, generator=gen)
    y = aug.apply(x, params)
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.equal(y, _reference(x, cfg, params))


def test_flip_is_an_exact_mirror_and_happens_about_half_the_time():
    x = _images(b=200)
    y = BatchAugment(AugmentConfig(flip=True))(x, torch.Generator().manual_seed(1))
    flipped = torch.tensor([torch.equal(y[i], x[i].flip(-1)) for i in range(200)])
    kept = torch.tensor([torch.equal(y[i], x[i]) for i in range(200)])
    assert bool((flipped ^ kept).all()) and 70 < int(flipped.sum()) < 130


@pytest.mark.parametrize("mode", ["reflect", "zeros"])
def test_crop_shifts_content_by_the_drawn_offset(mode):
    x = _images(b=2, c=1, h=8, w=8)
    aug = BatchAugment(AugmentConfig(crop_padding=2, padding_mode=mode))
    y = aug.apply(x, AugmentParams(shift=torch.tensor([[1, -2], [0, 0]])))
    assert torch.equal(y[0, :, :-1, 2:], x[0, :, 1:, :-2])  # content moved up 1, right 2
    assert torch.equal(y[1], x[1])  # zero offset: untouched
    if mode == "zeros":  # what slid in from outside is padding
        assert bool((y[0, :, :, :2] == 0).all()) and bool((y[0, :, -1] == 0).all())
    else:  # mirrored without repeating the border: column -2 reads 2, -1 reads 1, row 8 reads 6
        assert torch.equal(y[0, :, :-1, 0], x[0, :, 1:, 2])
        assert torch.equal(y[0, :, :-1, 1], x[0, :, 1:, 1])
        assert torch.equal(y[0, :, -1, 2:], x[0, :, 6, :-2])


def test_seeded_draws_reproduce_and_differ_across_seeds():
    aug = BatchAugment(AugmentConfig(crop_padding=4, flip=True, cutout=4))
    x = torch.rand(32, 3, 16, 16)
    a = aug(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, aug(x, torch.Generator().manual_seed(7)))
    assert not torch.equal(a, aug(x, torch.Generator().manual_seed(8)))


def test_cutout_zeroes_one_square_inside_each_image():
    x = torch.ones(50, 3, 12, 10)
    y = BatchAugment(AugmentConfig(cutout=5))(x, torch.Generator().manual_seed(0))
    for img in y:
        zero = (img == 0).all(dim=0)  # every channel of the square is zeroed
        assert int(zero.sum()) == 25 and int((img == 0).sum()) == 75
        rows, cols = zero.any(dim=1).nonzero().flatten(), zero.any(dim=0).nonzero().flatten()
        assert len(rows) == len(cols) == 5 and rows[-1] - rows[0] == cols[-1] - cols[0] == 4


@pytest.mark.parametrize("kwargs, pattern", [
    ({"crop_padding": -1}, r"augment\.crop_padding: .*greater than or equal to 0 \(got -1\)"),
    ({"cutout": 2.5}, r"augment\.cutout: .*valid integer \(got 2\.5\)"),
    ({"padding_mode": "edge"}, r"augment\.padding_mode: .*'reflect' or 'zeros' \(got 'edge'\)"),
])
def test_bad_configs_are_rejected(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        AugmentConfig(**kwargs)


def test_configs_that_do_not_fit_the_image_say_so():
    x = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ConfigError, match="smaller than the image"):
        BatchAugment(AugmentConfig(crop_padding=8))(x)
    with pytest.raises(ConfigError, match="larger than the image"):
        BatchAugment(AugmentConfig(cutout=9))(x)
    assert BatchAugment(AugmentConfig(crop_padding=8, padding_mode="zeros"))(x).shape == x.shape

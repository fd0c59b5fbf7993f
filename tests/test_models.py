"""Contracts of the model zoo, over the whole registry: shapes, gradients, sizes, errors,
wavelet transforms, dtype moves, mixed precision and batch independence. CPU, seconds."""

from __future__ import annotations

import warnings

import pytest
import torch

from engine.errors import ConfigError
from engine.models import FAMILIES, PRESETS, create_model, create_preset, make_config
from engine.models.attention import make_attention
from engine.models.wavelets import DWT, haar_dwt, haar_idwt, multilevel
from tests._model_helpers import ATTENTIONS, TINY, n_params

with warnings.catch_warnings():  # pytorch_wavelets imports pkg_resources
    warnings.simplefilter("ignore")
    from pytorch_wavelets import DWTForward

PRESET_PARAMS = {
    "wavemix-lite-8-10": 3_566,
    "wavemix-lite-8-5": 7_156,
    "wavemix-lite-32-7": 37_058,
    "wavemix-lite-64-6": 520_106,
    "wavemix-l1-144-7": 3_042_550,
    "wavemix-l3-192-16-p4": 27_857_608,
    "cnv-5-4": 1_344_734,
    "cpv-5-4": 1_345_994,
    "cltv-5-4": 1_345_994,
    "resnet18-w64": 11_173_962,
    "convmixer-256-16-k8-p1": 1_339_402,
    "vit-10-4-p4": 1_337_226,
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _check_train_step(model: torch.nn.Module, x: torch.Tensor, num_classes: int) -> None:
    """Output shape, finite values, and a finite gradient for every parameter."""
    model.train()
    y = model(x)
    assert y.shape == (x.shape[0], num_classes)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"


# ---------------------------------------------------------------- registry-wide contracts
def test_every_config_has_its_builder_and_every_builder_its_config():
    # The spec is checked against CONFIGS (no torch); models are built from FAMILIES.
    from engine.models import CONFIGS

    assert CONFIGS.names() == FAMILIES.names()
    for name in CONFIGS.names():
        assert FAMILIES.get(name).config_cls is CONFIGS.get(name)


def test_every_family_has_a_tiny_config():
    assert set(TINY) == set(FAMILIES.names())


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("family", sorted(TINY))
def test_family_forward_backward(family, channels, size):
    model = create_model(family, in_channels=channels, num_classes=7, image_size=size,
                         **TINY[family])
    _check_train_step(model, torch.randn(2, channels, size, size), 7)


def test_preset_parameter_counts_are_exact():
    assert set(PRESETS.names()) == set(PRESET_PARAMS)
    counts = {name: n_params(create_preset(name)) for name in PRESET_PARAMS}
    assert counts == PRESET_PARAMS


@pytest.mark.parametrize("name", sorted(PRESET_PARAMS))
def test_preset_forward(name):
    preset = PRESETS.get(name)
    model = create_preset(name).eval()
    channels = preset.config.get("in_channels", 3)
    with torch.no_grad():
        y = model(torch.randn(2, channels, 32, 32))
    assert y.shape == (2, preset.config["num_classes"]) and torch.isfinite(y).all()


@pytest.mark.parametrize("family", sorted(TINY))
def test_model_moves_to_float64(family):
    model = create_model(family, image_size=32, **TINY[family]).double().eval()
    y = model(torch.randn(2, 3, 32, 32, dtype=torch.float64))
    assert y.dtype == torch.float64 and torch.isfinite(y).all()


# ---------------------------------------------------------------- WaveMix options
@pytest.mark.parametrize("options", [
    dict(level=1),
    dict(level=3, wavelet="db2"),
    dict(level=2, wavelet="sym2", upsample="upsample"),
    dict(level=3, wavelet="db4", block="parallel"),
    dict(level=3, block="parallel"),
    dict(level=2, block="parallel", upsample="upsample", ff_channel=12),
    dict(level=4, upsample="upsample", ff_channel=12),
    dict(level=5),  # more than 4 levels where the input allows (64 -> 2x2)
    dict(level=2, stem="patchify", patch_size=2),
    dict(level=1, stride=2),
], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_wavemix_options(options):
    config = {**TINY["wavemix"], **options}
    model = create_model("wavemix", in_channels=3, image_size=64, **config)
    _check_train_step(model, torch.randn(2, 3, 64, 64), 10)


@pytest.mark.parametrize("wavelet", ["haar", "db2"])
def test_wavemix_under_bf16_autocast(wavelet):
    # The Haar transform's backward is hand-written: check it under autocast too.
    model = create_model("wavemix", **{**TINY["wavemix"], "wavelet": wavelet})
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    y.float().square().mean().backward()
    assert torch.isfinite(y.float()).all() and torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_parallel_block_at_level_1_is_the_cascade_block():
    kw = dict(final_dim=16, depth=2, ff_channel=8, level=1)
    cascade = create_model("wavemix", block="cascade", **kw).eval()
    parallel = create_model("wavemix", block="parallel", **kw).eval()
    assert n_params(cascade) == n_params(parallel)
    # Same parameters in the same order; the names differ only inside the block.
    with torch.no_grad():
        for p, q in zip(cascade.parameters(), parallel.parameters(), strict=True):
            q.copy_(p)
        x = torch.randn(2, 3, 16, 16)
        torch.testing.assert_close(parallel(x), cascade(x))


# ---------------------------------------------------------------- clear errors
@pytest.mark.parametrize("family, config, needles", [
    ("wavemix", dict(final_dim=66), ["final_dim", "66", "multiple of 4", "fix:"]),
    ("wavemix", dict(level=3, image_size=28), ["28x28", "2**level = 8", "level <= 2"]),
    ("wavemix", dict(level=2, stride=2, image_size=28), ["7x7", "odd"]),
    ("wavemix", dict(stem="pachify"), ["stem", "pachify", "strided"]),
    ("wavemix", dict(level=9), ["level", "9", "less than or equal to 8"]),
    ("wavemix", dict(stem="patchify", patch_size=5, image_size=32), ["patch_size 5", "32"]),
    ("wavemix", dict(levels=2), ["levels", "Extra inputs"]),
    ("wavemix", dict(wavelet="morlet"), ["wavelet", "morlet", "haar"]),
    ("wavemix", dict(upsample="nearest"), ["upsample", "convtranspose"]),
    ("cxv", dict(nystrom_conv_kernel=32), ["nystrom_conv_kernel", "odd", "32"]),
    ("cxv", dict(attention="performr"), ["attention", "performr", "nystrom"]),
    ("cxv", dict(dim=130), ["dim", "130", "multiple of 4"]),
    ("cxv", dict(qkv_kernel=5), ["qkv_kernel", "5"]),
    ("vit", dict(depth=0), ["depth", "0"]),
])
def test_invalid_config_is_a_clear_config_error(family, config, needles):
    with pytest.raises(ConfigError) as info:
        make_config(family, **config)
    for needle in needles:
        assert needle in str(info.value)


def test_unknown_family_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known: convmixer, cxv, resnet18, vit, wavemix"):
        create_model("wavemixx")


def test_wavemix_without_image_size_fails_clearly_at_forward():
    model = create_model("wavemix", final_dim=8, depth=1, level=3)  # image size unknown
    with pytest.raises(ConfigError, match=r"14x14 map .* 2\*\*level = 8; use level <= 1"):
        model(torch.randn(1, 3, 14, 14))


# ---------------------------------------------------------------- wavelet transforms
def _compare_with_pytorch_wavelets(shape, levels, wavelet, mode, compare_grads=True):
    x = torch.randn(shape, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    ll, highs = multilevel(DWT(wavelet=wavelet), x, levels)
    ll_ref, highs_ref = DWTForward(J=levels, wave=wavelet, mode=mode)(x_ref)
    outs, refs = [ll, *highs], [ll_ref, *highs_ref]
    for out, ref in zip(outs, refs, strict=True):
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    if not compare_grads:
        return
    # Random upstream gradients on every output.
    grads = [torch.randn_like(o) for o in outs]
    torch.autograd.backward(outs, grads)
    torch.autograd.backward(refs, grads)
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=0)


# Odd sizes are zero-padded at the end.
@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 3, 31, 33), (2, 5, 16, 16), (1, 2, 7, 9)])
@pytest.mark.parametrize("levels", [1, 2, 3])
def test_haar_matches_pytorch_wavelets(shape, levels):
    _compare_with_pytorch_wavelets(shape, levels, "haar", "zero")


# pytorch_wavelets wraps around only once, so maps stay at least as long as the filter here;
# smaller maps (any size works for ours) are covered by the next test.
@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 2, 29, 34)])
@pytest.mark.parametrize("wavelet", ["db2", "sym3", "db4", "bior1.3"])
def test_other_wavelets_match_pytorch_wavelets_periodization(shape, wavelet):
    # On an odd side pytorch_wavelets' hand-written backward drops the gradient of the sample
    # it repeats (its own gradcheck fails); ours is checked against finite differences.
    odd = shape[-1] % 2 or shape[-2] % 2
    _compare_with_pytorch_wavelets(shape, 2, wavelet, "periodization", compare_grads=not odd)
    if odd:
        dwt = DWT(wavelet=wavelet).double()
        x = torch.randn(1, 1, 13, 10, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t: multilevel(dwt, t, 2)[1][1], (x,))


@pytest.mark.parametrize("wavelet", ["db2", "db4"])
def test_other_wavelets_halve_the_size_at_every_level(wavelet):
    ll, highs = multilevel(DWT(wavelet=wavelet), torch.randn(1, 1, 16, 16), 4)
    assert [h.shape[-1] for h in highs] == [8, 4, 2, 1] and ll.shape[-1] == 1


def test_haar_inverse_and_custom_gradients():
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    torch.testing.assert_close(haar_idwt(haar_dwt(x)), x)
    small = torch.randn(1, 2, 6, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(haar_dwt, (small,))
    assert torch.autograd.gradgradcheck(haar_dwt, (small,))
    packed = torch.randn(1, 2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(haar_idwt, (packed,))
    assert torch.autograd.gradgradcheck(haar_idwt, (packed,))


# ---------------------------------------------------------------- attention
def _attention(kind: str) -> torch.nn.Module:
    extra = {}
    if kind == "performer_relu":
        kind, extra = "performer", dict(performer_kernel="relu")
    if kind == "efficient_3x3":
        kind, extra = "efficient", dict(qkv_kernel=3)
    return make_attention(kind, dim=32, heads=2, head_dim=16, dropout=0.0, landmarks=8,
                          nystrom_conv_kernel=5, **extra)


@pytest.mark.parametrize("scale", [1.0, 16.0])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("kind", [*ATTENTIONS, "performer_relu", "efficient_3x3"])
def test_attention_is_finite_under_autocast(kind, dtype, scale):
    attn = _attention(kind)
    x = (torch.randn(2, 32, 12, 12) * scale).requires_grad_(True)
    with torch.autocast("cpu", dtype=dtype):
        y = attn(x)
    assert y.dtype == dtype and torch.isfinite(y).all()
    y.float().square().mean().backward()
    assert torch.isfinite(x.grad).all()
    for name, p in attn.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_cxv_samples_are_independent_of_their_batch(kind):
    model = create_model("cxv", **{**TINY["cxv"], "attention": kind}).eval()
    x = torch.randn(4, 3, 16, 16) * torch.tensor([1.0, 10.0, 0.1, 3.0]).view(4, 1, 1, 1)
    with torch.no_grad():
        batched = model(x)
        alone = torch.cat([model(x[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_cltv_with_released_3x3_projections_has_the_released_size():
    model = create_preset("cltv-5-4", qkv_kernel=3)
    assert n_params(model) == 3_967_434  # docs/SOURCES.md, CXV: CLTV-5/4 as released


def test_performer_features_travel_with_the_checkpoint():
    a = create_model("cxv", **{**TINY["cxv"], "attention": "performer"}).eval()
    b = create_model("cxv", **{**TINY["cxv"], "attention": "performer"}).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))

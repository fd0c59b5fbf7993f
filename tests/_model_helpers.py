"""Shared pieces of the model tests: tiny configurations and the reference-package import."""

from __future__ import annotations

import sys
import types

import pytest
import torch.nn as nn

# One small configuration per registered family: valid for 1- and 3-channel inputs at 28, 32
# and 64 pixels, fast enough for a forward and backward pass in milliseconds on one thread.
TINY: dict[str, dict] = {
    "wavemix": dict(final_dim=16, depth=2, mult=2, ff_channel=8, level=2),
    "cxv": dict(dim=16, depth=2, heads=2, head_dim=8, landmarks=8, nystrom_conv_kernel=5),
    "resnet18": dict(width=4),
    "convmixer": dict(dim=16, depth=2, kernel_size=5, patch_size=2),
    "vit": dict(dim=16, depth=2, heads=2, head_dim=8, patch_size=4),
}

ATTENTIONS = ("nystrom", "performer", "efficient", "linear_elu", "softmax", "wave")

REFERENCE_INSTALL = "pip install --no-deps wavemix==0.2.4 einops"


def n_params(model: nn.Module) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def import_reference_wavemix():
    """Import ``wavemix.classification.WaveMix`` (0.2.4), failing loudly when it is missing.

    The package imports ``numpy.lib.function_base``, which numpy 2 removed, for a name it
    never uses: a stand-in module satisfies the import.
    """
    if "numpy.lib.function_base" not in sys.modules:
        stand_in = types.ModuleType("numpy.lib.function_base")
        stand_in.hamming = None
        sys.modules["numpy.lib.function_base"] = stand_in
    try:
        from wavemix.classification import WaveMix as ReferenceWaveMix
    except ImportError as e:  # a test-only dependency: missing means misconfigured CI
        pytest.fail(f"the reference wavemix 0.2.4 package is required for the oracle test "
                    f"({e}); install it with: {REFERENCE_INSTALL}", pytrace=False)
    from importlib.metadata import version

    if version("wavemix") != "0.2.4":
        pytest.fail(f"wavemix {version('wavemix')} found, the oracle needs 0.2.4: "
                    f"{REFERENCE_INSTALL}", pytrace=False)
    return ReferenceWaveMix

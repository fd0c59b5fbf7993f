"""Our WaveMix against the reference package (wavemix 0.2.4), a test-only dependency.

For the same constructor arguments: the same parameter count, and with the reference's
weights loaded into ours through ``convert_reference_state_dict``, the same logits (eval) and
the same logits and parameter gradients (train mode, dropout 0). The reference keeps
module-level DWT objects on its import-time device: it runs on CPU here.
"""

from __future__ import annotations

import pytest
import torch

from engine.models import create_model
from engine.models.wavemix_reference import convert_reference_state_dict
from tests._model_helpers import import_reference_wavemix, n_params

CASES = {
    # name: (reference kwargs, input side)
    "lite-level1": (dict(final_dim=32, depth=2, ff_channel=32, level=1,
                         initial_conv="strided", stride=1), 32),
    "level2": (dict(final_dim=32, depth=2, ff_channel=24, level=2,
                    initial_conv="strided", stride=1), 32),
    "level3": (dict(final_dim=48, depth=2, ff_channel=32, level=3,
                    initial_conv="strided", stride=1), 32),
    "level4-stride2": (dict(final_dim=16, depth=1, ff_channel=16, level=4,
                            initial_conv="strided", stride=2), 64),
    "level3-patchify": (dict(final_dim=32, depth=2, ff_channel=32, level=3,
                             initial_conv="pachify", patch_size=4), 64),
}


def _pair(ref_kwargs: dict, dropout: float):
    """A reference model with randomised BatchNorm state and ours loaded from it."""
    reference_cls = import_reference_wavemix()
    kw = dict(ref_kwargs)
    stem = "strided" if kw.pop("initial_conv") == "strided" else "patchify"
    common = dict(num_classes=10, mult=2, dropout=dropout, **kw)
    torch.manual_seed(0)
    ref = reference_cls(initial_conv=ref_kwargs["initial_conv"], **common)
    with torch.no_grad():  # make the BatchNorm affine and running statistics non-trivial
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.normal_(1.0, 0.3)
                m.bias.normal_(0.0, 0.3)
                m.running_mean.normal_(0.0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    ours = create_model("wavemix", stem=stem, **common)
    ours.load_state_dict(convert_reference_state_dict(ref.state_dict(), final_dim=kw["final_dim"]))
    return ref, ours


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_parameter_count_and_eval_logits(case):
    ref_kwargs, side = CASES[case]
    ref, ours = _pair(ref_kwargs, dropout=0.5)
    assert n_params(ours) == n_params(ref)
    x = torch.randn(3, 3, side, side)
    with torch.no_grad():
        expected, got = ref.eval()(x), ours.eval()(x)
    assert (got - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize("case", ["lite-level1", "level3"])
def test_same_train_logits_and_gradients(case):
    ref_kwargs, side = CASES[case]
    ref, ours = _pair(ref_kwargs, dropout=0.0)
    x = torch.randn(4, 3, side, side)
    expected, got = ref.train()(x), ours.train()(x)
    assert (got - expected).abs().max().item() <= 1e-5
    expected.square().mean().backward()
    got.square().mean().backward()
    # Gradients convert like the weights they belong to.
    ref_grads = convert_reference_state_dict(
        {name: p.grad for name, p in ref.named_parameters()}, final_dim=ref_kwargs["final_dim"])
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)

"""The training function on its own: DualOpT modes, failures, schedule, reproducibility."""

from __future__ import annotations

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from engine.data import DataConfig, load_data
from engine.errors import TrialFailure
from engine.models import create_model
from engine.train import EpochReport, TrainConfig, train_model


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig(dataset="digits", train_size=400, val_size=100, val_fraction=0.25))


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return create_model("wavemix", final_dim=8, depth=1, in_channels=1, num_classes=10, image_size=8)


def _run(data, **cfg):
    reports: list[EpochReport] = []
    result = train_model(_model(), data, TrainConfig(**{"epochs": 4, "batch_size": 32, **cfg}),
                         on_epoch=reports.append)
    return result, reports


def test_dualopt_fixed_switch_epoch(digits):
    result, reports = _run(digits, optimizer="dualopt", switch_epoch=2, lr=0.01, sgd_lr=0.01)
    assert [r.optimizer for r in reports] == ["adamw", "adamw", "sgd", "sgd"]
    assert result.switched_at == 3
    assert result.curve == [r.val_accuracy for r in reports]
    assert result.val_accuracy == result.curve[-1] and result.epochs_run == 4


@pytest.mark.parametrize("optimizer,phase", [("adamw", "adamw"), ("sgd", "sgd")])
def test_single_optimizer_modes(digits, optimizer, phase):
    result, reports = _run(digits, optimizer=optimizer, switch_epoch=1)
    assert {r.optimizer for r in reports} == {phase}
    assert result.switched_at is None


def test_dualopt_plateau_switch(digits):
    # lr 1e-12 under AdamW (rules require lr > 0): steps far below float32 resolution, so
    # accuracy cannot improve and the plateau rule switches after `patience`.
    result, reports = _run(digits, optimizer="dualopt", switch_patience=1, lr=1e-12, sgd_lr=0.01)
    assert [r.optimizer for r in reports][:3] == ["adamw", "adamw", "sgd"]
    assert result.switched_at == 3


def test_switch_epoch_zero_is_sgd_from_the_start(digits):
    result, reports = _run(digits, optimizer="dualopt", switch_epoch=0)
    assert reports[0].optimizer == "sgd" and result.switched_at == 1


def test_non_finite_loss_names_the_epoch(digits):
    with pytest.raises(TrialFailure, match="^non-finite loss at epoch 1$"):
        _run(digits, optimizer="sgd", sgd_lr=1e8)


def test_reproducible_on_cpu(digits):
    a, _ = _run(digits, lr=0.01, sgd_lr=0.01)
    b, _ = _run(digits, lr=0.01, sgd_lr=0.01)
    assert a.curve == b.curve


def test_cosine_schedule_decays_within_each_phase(digits):
    seen: list[tuple[str, float]] = []

    def record(opt, args, kwargs):  # torch's global pre-step hook: sees every optimiser step
        seen.append((type(opt).__name__, opt.param_groups[0]["lr"]))

    handle = register_optimizer_step_pre_hook(record)
    try:
        train_model(_model(), digits, TrainConfig(epochs=4, batch_size=100, optimizer="dualopt",
                                                  switch_epoch=2, lr=0.01, sgd_lr=0.1,
                                                  lr_schedule="cosine"))
    finally:
        handle.remove()
    adam = [lr for name, lr in seen if name == "AdamW"]
    sgd = [lr for name, lr in seen if name == "SGD"]
    assert adam[0] == pytest.approx(0.01) and sgd[0] == pytest.approx(0.1)  # each phase restarts
    assert adam == sorted(adam, reverse=True) and sgd == sorted(sgd, reverse=True)
    assert adam[-1] < 0.01 * 0.2 and sgd[-1] < 0.1 * 0.2


def test_learns_and_augmentation_hook_is_applied(digits):
    calls = []

    def aug(x, gen):
        calls.append(x.shape)
        return torch.flip(x, dims=[3])

    result = train_model(_model(), digits, TrainConfig(epochs=3, batch_size=32, lr=0.01, sgd_lr=0.01,
                                                       switch_epoch=2), augment=aug)
    assert calls and calls[0][1:] == (1, 8, 8)
    assert result.val_accuracy > 0.2  # above 10% chance even with mirrored training digits

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


def _phases(schedule) -> list[str]:
    """The optimiser of each epoch under the fixed rule (no plateau), epoch by epoch."""
    out, phase = [], schedule.first_phase
    for epoch in range(1, schedule.epochs + 1):
        out.append(phase)
        if schedule.switches_after(epoch, phase, epochs_without_gain=0):
            phase = "sgd"
    return out


@pytest.mark.parametrize("optimizer, switch, expected", [
    ("dualopt", 2, ["adamw", "adamw", "sgd", "sgd"]),
    ("dualopt", 0, ["sgd"] * 4),  # SGD from the start
    ("dualopt", 4, ["adamw"] * 4),  # the switch would come after the last epoch
    ("dualopt", 9, ["adamw"] * 4),
    ("adamw", 2, ["adamw"] * 4),
    ("sgd", 2, ["sgd"] * 4),
])
def test_the_optimizer_schedule_names_every_epochs_optimizer(optimizer, switch, expected):
    from engine.train.schedule import OptimizerSchedule

    assert _phases(OptimizerSchedule(optimizer, 4, switch)) == expected


def test_a_plateau_switch_waits_for_its_patience():
    from engine.train.schedule import OptimizerSchedule

    s = OptimizerSchedule("dualopt", 10, 0, switch_patience=3)
    assert s.plateau and s.first_phase == "adamw" and s.phase_end("adamw") == 10
    assert not s.switches_after(4, "adamw", epochs_without_gain=2)
    assert s.switches_after(4, "adamw", epochs_without_gain=3)
    assert not s.switches_after(10, "adamw", epochs_without_gain=5)  # nothing left to switch to


@pytest.mark.parametrize("switch, patience, switched_at, epochs, expected", [
    (3, None, None, 6, 3),  # same length: the same switch
    (3, None, None, 10, 5),  # the same share: 3/6 of 10
    (3, None, 4, 12, 6),  # the recorded switch wins: 3 AdamW epochs of 6
    (0, None, None, 9, 0),  # SGD from the start stays so
    (6, None, None, 9, 9),  # never switched: AdamW throughout
    (0, 2, None, 8, 8),  # a plateau that never came: AdamW throughout
    (0, 2, 3, 12, 4),  # a plateau switch after 2 of 6 AdamW epochs
])
def test_a_retrain_replays_the_searchs_switch_at_its_own_length(switch, patience, switched_at,
                                                                 epochs, expected):
    from engine.train.schedule import OptimizerSchedule

    r = OptimizerSchedule("dualopt", 6, switch, patience).rescaled(epochs, switched_at)
    assert (r.epochs, r.switch_epoch, r.switch_patience) == (epochs, expected, None)


def test_an_unknown_optimizer_is_a_config_error():
    from engine.errors import ConfigError
    from engine.train.schedule import OptimizerSchedule

    with pytest.raises(ConfigError, match="adamw, sgd, dualopt"):
        OptimizerSchedule("adam", 3)

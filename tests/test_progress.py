"""Progress inside an epoch: the loop's step reports, their trip through the protocol, and
what the driver prints from them (a pace and an estimate before any epoch has ended)."""

from __future__ import annotations

import math

import optuna
import pytest
import torch

from engine.data import DataConfig, load_data
from engine.models import create_model
from engine.protocol import Progress, Report
from engine.samplers.pareto_asha import ParetoASHAScheduler
from engine.search.bridge import OptunaBridge
from engine.search.budget import SearchBudget
from engine.space import SearchSpace
from engine.spec import SearchSpec
from engine.train import StepProgress, TrainConfig, train_model
from engine.train.progress import PROBE_STEPS
from tests.conftest import tiny_spec_dict


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig(dataset="digits", train_size=400, val_size=100, val_fraction=0.25))


def _train(digits, **kw) -> list[StepProgress]:
    steps: list[StepProgress] = []
    torch.manual_seed(0)
    model = create_model("wavemix", final_dim=8, depth=1, in_channels=1, num_classes=10,
                         image_size=8)
    train_model(model, digits, TrainConfig(epochs=2, batch_size=32, optimizer="adamw"),
                on_step=steps.append, **kw)
    return steps


def test_the_loop_reports_a_probe_then_at_most_every_interval(digits):
    steps = _train(digits)  # 13 steps an epoch, the default 30 s interval
    assert [(s.epoch, s.step) for s in steps] == [(1, PROBE_STEPS)]
    p = steps[0]
    assert p.steps == math.ceil(400 / 32) and p.seconds > 0 and p.images_per_s > 0
    assert p.epoch_train_s == pytest.approx(p.seconds * p.steps / PROBE_STEPS)


def test_every_step_but_an_epochs_last_with_no_interval(digits):
    steps = _train(digits, step_every_s=0.0)
    n = math.ceil(400 / 32)
    assert [(s.epoch, s.step) for s in steps] == [(e, k) for e in (1, 2) for k in range(1, n)]


def test_progress_travels_as_a_repeat_of_the_last_epochs_result():
    p = Progress(2, 5, 13, 1.5, 900.0, last_epoch=1, last_val_accuracy=0.4)
    result = p.to_tune()
    assert Progress.from_tune(result) == p
    assert Report.from_tune(result) is None  # never mistaken for an epoch's report
    assert Progress.from_tune({"epoch": 1}) is None
    scheduler = ParetoASHAScheduler(max_t=4, static_objectives=[("peak_memory_mb", "minimize")])
    trial = type("T", (), {"trial_id": "t0", "config": {}})()
    assert scheduler.on_trial_result(None, trial, result) == "CONTINUE"
    assert all(not rung for rung in scheduler.recorded.values())  # nothing recorded


def test_the_driver_estimates_the_search_from_the_first_steps():
    spec = SearchSpec.model_validate(tiny_spec_dict(search={"sampler": "random", "n_trials": 6}))
    study = optuna.create_study(directions=spec.directions)
    lines: list[str] = []
    bridge = OptunaBridge(study, SearchSpace(spec), spec.objective_names,
                          budget=SearchBudget(n_trials=6, budget_epochs=None, epochs_per_trial=3),
                          progress=lines.append, max_concurrent=2)
    assert isinstance(bridge.suggest("t0"), dict)
    bridge.on_trial_result("t0", Progress(1, 5, 19, 2.0, 80.0).to_tune())
    assert not any(line.startswith("trial 0 epoch") for line in lines)  # a 7.6 s epoch: quiet
    estimate = [line for line in lines if line.startswith("estimate: ")]
    # 19 steps at 0.4 s = 7.6 s an epoch; 6 trials x 3 epochs, 1 at a time so far
    assert len(estimate) == 1 and "from the first 5 steps" in estimate[0], lines
    assert "for 6 trials" in estimate[0] and "7.6 s an epoch" in estimate[0], estimate
    bridge.on_trial_result("t0", Progress(1, 10, 190, 4.0, 80.0).to_tune())  # a 76 s epoch
    assert lines[-1] == "trial 0 epoch 1/3: 10/190 steps (5%), 80 images/s, ~72 s left in this epoch"
    assert sum(line.startswith("estimate: ") for line in lines) == 1  # the probe's, once


def test_a_retrain_says_its_pace_before_the_first_epoch_ends():
    from engine.export.retrain import _step_message

    probe = _step_message(StepProgress(1, PROBE_STEPS, 50, 2.0, 800.0), 10)
    assert probe.startswith("pace: 800 images/s over the first 5 steps: ~20 s an epoch, "
                            "~3 min for 10 epochs"), probe
    later = _step_message(StepProgress(3, 20, 50, 8.0, 800.0), 10)
    assert later == "epoch 3/10: 20/50 steps (40%), ~12 s left in this epoch"

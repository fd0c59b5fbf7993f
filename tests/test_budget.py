"""The search budget counted in the study, the pace and time estimates, and the hardware plan:
plain functions and real Optuna storage, no Ray."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from engine.errors import ResourceError
from engine.search.budget import SearchBudget
from engine.search.cluster import plan_hardware
from engine.search.pace import Pace
from engine.train.optim import resolve_amp
from engine.units import format_duration
from storage import TrialRecord, open_storage, schema


def _study(tmp_path) -> optuna.Study:
    return optuna.create_study(study_name="b", storage=open_storage(f"sqlite:///{tmp_path / 'b.db'}"),
                               directions=["maximize", "minimize"])


def _trial(study, *, epochs: int, state=None, trained=True, reason=None) -> optuna.Trial:
    t = study.ask()
    for e in range(1, epochs + 1):
        study._storage.set_trial_intermediate_value(t._trial_id, e, 0.5)
    if not trained:
        t.set_user_attr(schema.TRIAL_TRAINED, False)
    if reason:
        t.set_user_attr(schema.TRIAL_FAIL_REASON, reason)
    if state == TrialState.COMPLETE:
        study.tell(t, values=[0.5, 1.0])
    elif state is not None:
        study.tell(t, state=state)
    return t


def test_the_budget_counts_trained_trials_running_ones_included(tmp_path):
    study = _study(tmp_path)
    _trial(study, epochs=4, state=TrialState.COMPLETE)
    _trial(study, epochs=2, state=TrialState.PRUNED)
    _trial(study, epochs=1, state=TrialState.FAIL)                     # failed while training
    _trial(study, epochs=0, state=TrialState.COMPLETE, trained=False)  # screened out
    _trial(study, epochs=0, state=TrialState.FAIL, trained=False)      # could not be built
    _trial(study, epochs=3, state=TrialState.FAIL, reason=schema.INTERRUPTED_REASON)
    _trial(study, epochs=1)                                            # running
    study.enqueue_trial({})                                            # waiting: not yet anything
    budget = SearchBudget(n_trials=5, budget_epochs=20, epochs_per_trial=4, max_rejected=3)
    state = budget.read(study)
    assert (state.finished, state.running, state.rejected) == (3, 1, 2)
    assert state.spent_epochs == 4 + 2 + 1 + 3 + 1 and state.promised_epochs == 3
    assert budget.trials_left(state) == 1 and budget.epoch_room(state) == 20 - 11 - 3
    assert budget.why_not(state) is None
    assert budget.describe(state) == "3 finished, 1 running, 1 to run, 11 of 20 epochs trained"
    assert [TrialRecord.read(t).counts_as_trained for t in study.trials] == [True, True, True, False, False, False,
                                                           True, False]


@pytest.mark.parametrize("limits,words", [
    ({"n_trials": 4}, "trial budget reached: 3 of 4 trials trained"),
    ({"budget_epochs": 14}, "epoch budget reached"),   # 11 spent + 3 promised: no room for 4
    ({"max_rejected": 2}, "2 candidates were screened out (search.max_rejected = 2)"),
])
def test_each_limit_stops_new_trials_and_says_which(tmp_path, limits, words):
    study = _study(tmp_path)
    for kwargs in ({"epochs": 4, "state": TrialState.COMPLETE}, {"epochs": 2, "state": TrialState.PRUNED},
                   {"epochs": 1, "state": TrialState.FAIL}, {"epochs": 3, "state": TrialState.FAIL,
                                                             "reason": schema.INTERRUPTED_REASON},
                   {"epochs": 0, "state": TrialState.COMPLETE, "trained": False},
                   {"epochs": 0, "state": TrialState.FAIL, "trained": False}, {"epochs": 1}):
        _trial(study, **kwargs)
    budget = SearchBudget(**{"n_trials": None, "budget_epochs": None, "epochs_per_trial": 4,
                             "max_rejected": 100, **limits})
    assert words in budget.why_not(budget.read(study))


def test_no_limits_means_no_limit(tmp_path):
    budget = SearchBudget(n_trials=None, budget_epochs=None, epochs_per_trial=3)
    state = budget.read(_study(tmp_path))
    assert math.isinf(budget.trials_left(state)) and math.isinf(budget.epoch_room(state))
    assert budget.why_not(state) is None


def test_pace_fits_a_line_through_memory_and_falls_back_to_proportion():
    pace = Pace()
    assert pace.epoch_seconds(10.0) is None and not pace.measured
    pace.add(10.0, 20.0)
    assert pace.epoch_seconds(5.0) == pytest.approx(10.0)  # one size: proportional
    pace.add(30.0, 40.0)                                   # 10 s fixed + 1 s per MB
    assert pace.epoch_seconds(20.0) == pytest.approx(30.0)
    assert pace.epoch_seconds(0.0) == pytest.approx(10.0)
    assert pace.epoch_seconds() == pytest.approx(30.0)     # the mean epoch
    pace.add(1.0, float("nan"))                            # ignored
    assert len(pace.samples) == 2


@pytest.mark.parametrize("seconds,text", [(0.42, "0.4 s"), (45, "45 s"), (600, "10 min"), (3 * 3600, "3.0 h"),
                                          (31 * 3600, "31.0 h"), (5 * 86400, "5.0 days")])
def test_durations_read_as_words(seconds, text):
    assert format_duration(seconds) == text


def test_auto_gpus_use_the_gpus_there_are_and_size_shares_by_memory():
    cpu = plan_hardware("auto", devices=0, memory_per_device_mb=None)
    assert cpu.device == "cpu" and "no GPU found" in cpu.note and cpu.gpu_share(100.0) == 0.0
    gpu = plan_hardware("auto", devices=2, memory_per_device_mb=80_000)
    assert gpu.device == "cuda" and gpu.gpus_per_trial is None
    assert gpu.gpu_share(20_000) == 0.25            # a quarter of a device
    assert gpu.gpu_share(20_001) == 0.26            # rounded up: never over-packs
    assert gpu.gpu_share(1.0) == 0.01               # Ray needs a positive share
    assert gpu.gpu_share(200_000) == 1.0            # at most one device
    assert "2 GPU(s) of 80000 MB" in gpu.note


def test_fixed_gpus_are_checked_against_the_cluster():
    assert plan_hardware(0, devices=4, memory_per_device_mb=1000).device == "cpu"
    two = plan_hardware(2, devices=4, memory_per_device_mb=1000)
    assert two.device == "cuda" and two.gpu_share(10.0) == 2
    with pytest.raises(ResourceError, match=r"resources.gpus = 1.0 per trial.*0 GPUs.*wait forever"):
        plan_hardware(1, devices=0, memory_per_device_mb=None)


@pytest.mark.parametrize("amp,device,bf16,expected", [
    ("auto", "cuda", True, "bf16"), ("auto", "cuda", False, "fp16"), ("auto", "cpu", True, "none"),
    ("fp16", "cuda", True, "fp16"), ("bf16", "cpu", True, "none"), ("none", "cuda", True, "none"),
])
def test_mixed_precision_is_resolved_per_device(amp, device, bf16, expected):
    assert resolve_amp(amp, device, bf16_supported=bf16) == expected

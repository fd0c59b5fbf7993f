"""The study record (storage/record/): typed reads and writes of what a study stores, on
every backend, and the one rule of which trials count as trained."""

from __future__ import annotations

import warnings
from dataclasses import fields

import optuna
import pytest
from optuna.trial import TrialState

from storage import (
    BudgetRecord,
    DriverInfo,
    StudyRecord,
    TrialRecord,
    open_storage,
    optuna_api,
    read_trials,
    schema,
    search_progress,
    write_study,
    write_trial,
)
from storage.record import name_objectives
from storage.record.trial import _OPTUNA_FIELDS, _TRIAL_KEYS


@pytest.fixture
def study(prepared_url):
    """A fresh two-objective study on each backend."""
    return optuna.create_study(study_name="r", storage=open_storage(prepared_url),
                               directions=["maximize", "minimize"])


def test_every_recorded_field_has_the_key_the_studies_on_disk_use():
    # Studies written by earlier versions keep reading: the keys are storage.schema's.
    keys = {v for k, v in vars(schema).items() if k.startswith("TRIAL_") and isinstance(v, str)}
    assert set(_TRIAL_KEYS.values()) == keys
    assert set(_TRIAL_KEYS) | _OPTUNA_FIELDS == {f.name for f in fields(TrialRecord)}


def test_a_trial_written_field_by_field_reads_back_typed(study):
    trial = study.ask()
    tid = optuna_api.trial_id(trial)
    trial.suggest_int("wavemix.depth", 1, 4)
    config = {"family": "wavemix", "model": {"depth": 2}, "train": {"epochs": 3}}
    write_trial(study, tid, config=config, param_count=1234, peak_memory_mb=5.5,
                memory_method="predicted", driver_id="d1", node=None)
    optuna_api.set_intermediate(study, tid, 1, 0.25)
    optuna_api.set_intermediate(study, tid, 2, 0.5)
    write_trial(study, tid, val_accuracy=0.5, epochs_run=2, switched_at=2, curve=(0.25, 0.5),
                trained=True, constraint_violations={"gpu_ram_mb": -1.0})
    study.tell(trial, values=[0.5, 5.5])
    (r,) = read_trials(study)
    assert (r.number, r.trial_id, r.state) == (0, tid, TrialState.COMPLETE)
    assert r.config == config and r.family == "wavemix" and r.driver_id == "d1"
    assert (r.param_count, r.peak_memory_mb, r.val_accuracy) == (1234, 5.5, 0.5)
    assert r.curve == (0.25, 0.5) and r.learning_curve == [0.25, 0.5]
    assert r.intermediate == {1: 0.25, 2: 0.5} and r.epochs_trained == 2
    assert r.node is None and r.values == (0.5, 5.5) and r.switched_at == 2
    assert r.counts_as_trained and r.finished and r.feasible
    # Stored under the keys an older reader (or optuna-dashboard) sees.
    raw = study.get_trials()[0].user_attrs
    assert raw[schema.TRIAL_CURVE] == [0.25, 0.5] and raw[schema.TRIAL_PARAM_COUNT] == 1234


def test_an_unknown_field_is_refused_and_nothing_is_written(study):
    trial = study.ask()
    with pytest.raises(TypeError, match="val_acuracy"):
        write_trial(study, optuna_api.trial_id(trial), val_acuracy=0.5)
    with pytest.raises(TypeError, match="objective"):
        write_study(study, objective=["val_accuracy"])
    assert study.get_trials()[0].user_attrs == {} and study.user_attrs == {}


@pytest.mark.parametrize("state, attrs, counts", [
    (TrialState.COMPLETE, {}, True),
    (TrialState.PRUNED, {}, True),
    (TrialState.FAIL, {"fail_reason": "worker error: boom"}, True),
    (TrialState.RUNNING, {}, True),
    (TrialState.COMPLETE, {"trained": False}, False),  # screened out before training
    (TrialState.FAIL, {"trained": False}, False),  # could not even be built
    (TrialState.FAIL, {"fail_reason": schema.INTERRUPTED_REASON}, False),
    (TrialState.WAITING, {}, False),
])
def test_counts_as_trained_is_one_rule(state, attrs, counts):
    r = TrialRecord(number=0, trial_id=0, state=state, **attrs)
    assert r.counts_as_trained is counts


def test_search_progress_counts_trials_as_the_budget_does(study):
    # 2 trained, 1 screened out, 1 interrupted: "2 of N", never "3 of N" (the app's sidebar).
    for kind in ("trained", "trained", "screened", "interrupted"):
        trial = study.ask()
        tid = optuna_api.trial_id(trial)
        if kind == "screened":
            write_trial(study, tid, trained=False)
            study.tell(trial, values=[0.0, 99.0])
        elif kind == "interrupted":
            write_trial(study, tid, fail_reason=schema.INTERRUPTED_REASON)
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, values=[0.9, 1.0])
    write_study(study, budget=BudgetRecord(n_trials=2, epochs_per_trial=3))
    progress = search_progress(study)
    assert (progress.finished, progress.n_trials) == (2, 2)


def test_a_study_record_reads_back_what_was_written(study):
    write_study(study, spec={"data": {"dataset": "digits"}, "search": {"n_trials": 4}},
                spec_hash="abc", objectives=["val_accuracy", "peak_memory_mb"],
                constraints={"gpu_ram_mb": 16, "max_params": None},
                data={"in_channels": 1, "num_classes": 10, "image_size": 8},
                budget=BudgetRecord(n_trials=4, budget_epochs=None, epochs_per_trial=6),
                drivers_opened=2, retrains=({"trial_number": 1},),
                driver=DriverInfo(id="d1", host="h", pid=7, started_at=1.0, heartbeat_at=2.0,
                                  state="running", eta_s=3.0))
    r = StudyRecord.read(study)
    assert r.objectives == ("val_accuracy", "peak_memory_mb")
    assert r.directions == ("maximize", "minimize")
    assert r.cap_mb == 16.0 and r.max_params is None
    assert r.cap_for("peak_memory_mb") == 16.0 and r.cap_for("val_accuracy") is None
    assert r.spec_data == {"dataset": "digits"} and r.spec_search == {"n_trials": 4}
    assert r.budget == BudgetRecord(n_trials=4, epochs_per_trial=6) and r.drivers_opened == 2
    assert r.retrains == ({"trial_number": 1},)
    (d,) = r.drivers
    assert (d.id, d.pid, d.eta_s, d.live(now=2.0)) == ("d1", 7, 3.0, True)
    assert not d.live(now=2.0 + schema.DRIVER_STALE_S + 1)


def test_a_foreign_study_reads_with_fallbacks(study):
    # A study another tool made: no record of ours, objectives named by Optuna or by position.
    r = StudyRecord.read(study)
    assert r.objectives == ("objective 0", "objective 1")
    assert (r.spec, r.budget, r.cap_mb, r.drivers) == (None, None, None, ())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["acc", "mem"])
    assert StudyRecord.read(study).objectives == ("acc", "mem")


def test_the_dashboard_gets_metric_names_for_older_studies(study):
    write_study(study, objectives=["val_accuracy", "peak_memory_mb"])
    storage = optuna_api.storage(study)
    assert name_objectives(storage) == 1
    assert optuna.load_study(study_name="r", storage=storage).metric_names == [
        "val_accuracy", "peak_memory_mb"]
    assert name_objectives(storage) == 0  # already named: left alone


def test_the_private_api_adapter_on_a_real_storage(study):
    trial = study.ask()
    tid = optuna_api.trial_id(trial)
    assert optuna_api.study_id(study) >= 0
    optuna_api.record_heartbeat(study, tid)
    optuna_api.set_intermediate(study, tid, 1, 0.3)
    assert optuna_api.intermediate_values(study, tid) == {1: 0.3}
    optuna_api.set_system_attr(study, tid, "x:info", {"a": 1})
    assert optuna_api.get_frozen(study, tid).system_attrs["x:info"] == {"a": 1}
    assert optuna_api.stale_trial_ids(study) == []  # it just beat
    assert optuna_api.fail_running(study, tid) is True
    assert study.get_trials()[0].state == TrialState.FAIL
    dist = optuna.distributions.CategoricalDistribution(["a", "b"])
    assert optuna_api.contains(dist, "a") and not optuna_api.contains(dist, "c")

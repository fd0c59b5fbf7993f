"""End to end on real Ray Tune and a real Optuna SQLite study.

One search of 4 trials is shared by the tests that read its study (contents, app, export);
a second search drives the scheduler and failure paths with enqueued candidates.
"""

from __future__ import annotations

import optuna
import pytest
import torch
from optuna.trial import TrialState

from engine.search import prepare_study, run_search
from engine.spec import SearchSpec
from storage import TrialRecord, load_study, pareto_numbers, schema
from tests.conftest import tiny_spec_dict

pytestmark = pytest.mark.slow


def test_every_trial_lands_complete_with_curves_and_attributes(finished_search):
    spec, url, out, lines = finished_search
    study = load_study(url, "e2e")
    trials = study.get_trials()
    assert len(trials) == 4
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    for t in trials:
        # Learning curve: one intermediate value per epoch, the last epoch included.
        assert sorted(t.intermediate_values) == [1, 2, 3]
        assert t.user_attrs[schema.TRIAL_CURVE] == [t.intermediate_values[e] for e in (1, 2, 3)]
        acc, mem = t.values
        assert 0.0 <= acc <= 1.0 and acc == t.intermediate_values[3]
        assert mem == pytest.approx(t.user_attrs[schema.TRIAL_PEAK_MEMORY_MB]) and mem > 0
        ua = t.user_attrs
        assert ua[schema.TRIAL_PARAM_COUNT] > 100
        assert ua[schema.TRIAL_MEMORY_METHOD] == "predicted"  # CPU: the prediction is the objective
        assert ua[schema.TRIAL_EPOCHS_RUN] == 3
        assert ua[schema.TRIAL_DEVICE] == "cpu"
        assert ua[schema.TRIAL_WALL_TIME_S] > 0
        assert ua[schema.TRIAL_CONFIG]["family"] == "wavemix"
        assert set(t.params) >= {"wavemix.final_dim", "wavemix.depth", "wavemix.dropout",
                                 "train.switch_epoch"}
        # DualOpT switch recorded: first SGD epoch = switch_epoch + 1.
        assert ua[schema.TRIAL_SWITCHED_AT] == t.params["train.switch_epoch"] + 1
        assert t.constraints["gpu_ram_mb"] < 0  # under the 512 MB cap: feasible
    # The best trial learned something (digits, 3 epochs): far above 10% chance.
    assert max(t.values[0] for t in trials) > 0.4
    assert any("COMPLETE" in ln for ln in lines) and any("epoch 3/3" in ln for ln in lines)
    assert out.pareto == sorted(t.number for t in study.best_trials)


def test_rerun_resumes_without_new_trials(finished_search):
    spec, url, _, _ = finished_search
    out = run_search(spec, storage_url=url, progress=lambda _: None)
    assert out.n_new == 0
    assert len(load_study(url, "e2e").trials) == 4


def test_changed_space_is_refused(finished_search):
    from engine.errors import StorageError

    _, url, _, _ = finished_search
    changed = SearchSpec.model_validate(tiny_spec_dict("e2e", train={"epochs": 5}))
    with pytest.raises(StorageError, match="different search space.*study.name"):
        run_search(changed, storage_url=url, progress=lambda _: None)


def test_export_then_load_gives_the_trained_models_logits(finished_search, tmp_path):
    """The worker recorded the trained model's logits on the probe input; the rebuilt model
    from the exported checkpoint gives the same logits (and load_model checks it itself)."""
    import engine
    from engine.export import export_checkpoint, probe_input

    _, url, _, _ = finished_search
    meta = export_checkpoint(url, "e2e", out=tmp_path / "best.pt")
    study = load_study(url, "e2e")
    best = max((t for t in study.best_trials), key=lambda t: t.values[0])
    assert meta["trial_number"] == best.number
    assert meta["spec_hash"] == study.user_attrs[schema.STUDY_SPEC_HASH]
    assert meta["metrics"]["val_accuracy"] == best.values[0]
    assert meta["model_config"]["in_channels"] == 1 and meta["model_config"]["image_size"] == 8
    # Test accuracy is measured once, at export, on the held-out split the search never saw.
    assert 0.2 < meta["metrics"]["test_accuracy"] <= 1.0
    assert {"torch", "optuna", "python"} <= set(meta["versions"])
    loaded = engine.load_model(tmp_path / "best.pt")
    trained = torch.tensor(best.user_attrs[schema.TRIAL_PROBE_LOGITS])
    assert trained.shape == (2, 10)
    with torch.no_grad():
        torch.testing.assert_close(loaded(probe_input(1, 8)), trained, rtol=0, atol=1e-6)


def test_a_tampered_checkpoint_is_refused(finished_search, tmp_path):
    from engine.errors import WaveSearchError
    from engine.export import (
        Checkpoint,
        checkpoint_bytes,
        export_checkpoint,
        load_model,
        read_checkpoint,
    )

    _, url, _, _ = finished_search
    export_checkpoint(url, "e2e", out=tmp_path / "m.pt", test_accuracy=False)
    ckpt = read_checkpoint(tmp_path / "m.pt")
    name = next(k for k in ckpt.state_dict if k.endswith("weight"))
    state = {**ckpt.state_dict, name: ckpt.state_dict[name] + 0.5}
    (tmp_path / "bad.pt").write_bytes(checkpoint_bytes(Checkpoint(ckpt.meta, state)))
    with pytest.raises(WaveSearchError, match="does not reproduce the trained model's logits"):
        load_model(tmp_path / "bad.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WaveSearchError, match="not a WaveSearch checkpoint"):
        load_model(tmp_path / "junk.pt")


def test_retraining_the_exported_config_reproduces_its_accuracy(finished_search):
    """Same config, same seed, one thread: the in-process run matches the trial's curve."""
    import engine
    from engine.data import load_data
    from engine.train import train_model
    from engine.trial import TrialConfig

    spec, url, _, _ = finished_search
    best = max(load_study(url, "e2e").best_trials, key=lambda t: t.values[0])
    cfg = TrialConfig.from_dict(best.user_attrs[schema.TRIAL_CONFIG])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(cfg.train.seed)
        model = engine.create_model(cfg.family, **cfg.model, in_channels=1, num_classes=10,
                                    image_size=8)
        result = train_model(model, load_data(spec.data), cfg.train)
    finally:
        torch.set_num_threads(threads)
    assert result.curve == pytest.approx(best.user_attrs[schema.TRIAL_CURVE], abs=0.02)


def test_export_of_a_missing_trial_is_a_clear_error(finished_search, tmp_path):
    from engine.errors import StorageError
    from engine.export import export_checkpoint

    _, url, _, _ = finished_search
    with pytest.raises(StorageError, match="no trial 99"):
        export_checkpoint(url, "e2e", trial_number=99, out=tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_app_pareto_chart_holds_the_pareto_points(finished_search, monkeypatch):
    """The app's Pareto page on this real search: the front it draws is Optuna's feasible
    front, at the trials' objective values, with the spec's memory cap."""
    from streamlit.testing.v1 import AppTest

    from tests._app_helpers import chart_spec
    from tests.conftest import ROOT

    _, url, _, _ = finished_search
    monkeypatch.setenv("WAVESEARCH_STORAGE", url)
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=60).run()
    at.switch_page("views/pareto.py").run()
    assert not at.exception, at.exception
    fig = chart_spec(at, "pareto_chart")  # st.plotly_chart or the live chart component
    points = {tr["legendgroup"]: tr for tr in fig["data"]
              if tr.get("customdata") and tr.get("mode") == "markers"}
    study = load_study(url, "e2e")
    front = {t.number: t for t in study.best_trials}
    shown = points["pareto"]
    assert sorted(c[0] for c in shown["customdata"]) == sorted(front)
    for num, x, y in zip((c[0] for c in shown["customdata"]), shown["x"], shown["y"], strict=True):
        # (the chart's coordinates carry six significant digits)
        assert (y, x) == pytest.approx(tuple(front[num].values), rel=1e-5)
    dominated = {c[0] for c in points["dominated"]["customdata"]} if "dominated" in points else set()
    assert dominated == {t.number for t in study.trials} - set(front)
    assert len(at.dataframe[0].value) == 4
    # The spec's 512 MB cap is far beyond these tiny models: named, not drawn.
    assert [a["text"] for a in fig["layout"]["annotations"]] == [
        "cap 512 MB (off the chart, right) →"]


def _enqueue(study: optuna.Study, **params) -> None:
    base = {"wavemix.final_dim": 16, "wavemix.depth": 2, "wavemix.dropout": 0.0,
            "train.switch_epoch": 2, "train.lr": 0.01, "train.sgd_lr": 0.01, "wavemix.level": 1}
    study.enqueue_trial({**base, **params})


def test_scheduler_prunes_and_failures_are_recorded(ray_local, sqlite_url):
    """ASHA stops a hopeless trial (PRUNED, not COMPLETE); raising trials are FAIL with reasons."""
    from engine.data import load_data

    raw = tiny_spec_dict(
        "faults",
        model={"wavemix": {"final_dim": {"type": "categorical", "choices": [8, 16]},
                           "depth": {"type": "int", "low": 1, "high": 2},
                           "dropout": {"type": "float", "low": 0.0, "high": 0.1},
                           "level": {"type": "int", "low": 1, "high": 4}}},
        train={"epochs": 4, "lr": {"type": "float", "low": 1e-9, "high": 1e-2, "log": True},
               "sgd_lr": {"type": "float", "low": 1e-9, "high": 1e9, "log": True},
               "switch_epoch": {"type": "int", "low": 0, "high": 3}},
        search={"sampler": "random", "n_trials": 4, "max_concurrent": 1, "seed": 0,
                "scheduler": "asha", "asha": {"grace_period": 1, "reduction_factor": 2}},
    )
    spec = SearchSpec.model_validate(raw)
    data = load_data(spec.data)
    study = prepare_study(spec, sqlite_url, data)
    _enqueue(study)                                               # 0: learns -> COMPLETE
    _enqueue(study, **{"train.lr": 1e-9, "train.sgd_lr": 1e-9})   # 1: cannot learn -> PRUNED
    _enqueue(study, **{"wavemix.level": 4})                       # 2: 8x8 input: build raises
    _enqueue(study, **{"train.switch_epoch": 0, "train.sgd_lr": 1e8})  # 3: SGD diverges
    lines: list[str] = []
    run_search(spec, storage_url=sqlite_url, progress=lines.append)
    trials = load_study(sqlite_url, "faults").get_trials()
    states = [t.state for t in trials]
    assert states[:4] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                          TrialState.FAIL], lines
    # The candidate that cannot be built was screened out (never trained), so it does not
    # count towards n_trials: the search trained 4 candidates, and more were proposed.
    assert trials[2].user_attrs[schema.TRIAL_TRAINED] is False
    assert sum(TrialRecord.read(t).counts_as_trained for t in trials) == 4 and len(trials) >= 5, lines
    pruned = trials[1]
    assert max(pruned.intermediate_values) < 4
    assert "stopped by the scheduler" in pruned.user_attrs[schema.TRIAL_STATE_REASON]
    assert "2**level" in trials[2].user_attrs[schema.TRIAL_FAIL_REASON]
    assert trials[3].user_attrs[schema.TRIAL_FAIL_REASON] == "non-finite loss at epoch 1"
    # Only the complete trial can be on the front.
    assert pareto_numbers(load_study(sqlite_url, "faults")) == {0}


def _epochs(study: optuna.Study) -> list[int]:
    return [len(t.intermediate_values) for t in study.trials]


def test_epoch_budget_stops_the_search_and_counts_earlier_runs(ray_local, sqlite_url):
    """budget_epochs alone is a budget: a trial starts only if its full training still fits,
    and a second run with a larger budget spends only the difference."""
    raw = tiny_spec_dict("budget", train={"epochs": 2},
                         search={"sampler": "random", "budget_epochs": 5, "max_concurrent": 2})
    del raw["search"]["n_trials"]
    spec = SearchSpec.model_validate(raw)
    assert spec.planned_trials == 2
    lines: list[str] = []
    out = run_search(spec, storage_url=sqlite_url, progress=lines.append)
    study = load_study(sqlite_url, "budget")
    # 2 + 2 epochs trained; a third 2-epoch trial would need 6 > 5.
    seen = (_epochs(study), [t.state.name for t in study.trials], lines)
    assert _epochs(study) == [2, 2] and out.n_new == 2, seen
    assert any("epoch budget reached: 4 of 5 epochs" in ln for ln in lines), lines
    raw["search"]["budget_epochs"] = 9
    lines.clear()
    out = run_search(SearchSpec.model_validate(raw), storage_url=sqlite_url, progress=lines.append)
    assert any("2 finished, 4 of 9 epochs trained" in ln for ln in lines), lines
    assert _epochs(load_study(sqlite_url, "budget")) == [2, 2, 2, 2] and out.n_new == 2, lines


def test_epoch_budget_with_early_stopping_runs_more_trials_within_it(ray_local, sqlite_url):
    """With ASHA, stopped trials leave their unspent epochs to new candidates, and the budget
    still holds: one learning trial and three that cannot learn are queued first."""
    from engine.data import load_data

    never = {"type": "float", "low": 1e-9, "high": 1e-2, "log": True}
    raw = tiny_spec_dict(
        "budget-asha", train={"epochs": 4, "lr": never, "sgd_lr": never},
        search={"sampler": "random", "budget_epochs": 14, "max_concurrent": 1, "seed": 0,
                "scheduler": "asha", "asha": {"grace_period": 1, "reduction_factor": 2}})
    del raw["search"]["n_trials"]
    spec = SearchSpec.model_validate(raw)
    study = prepare_study(spec, sqlite_url, load_data(spec.data))
    _enqueue(study)
    for _ in range(3):
        _enqueue(study, **{"train.lr": 1e-9, "train.sgd_lr": 1e-9})
    run_search(spec, storage_url=sqlite_url, progress=lambda _: None)
    study = load_study(sqlite_url, "budget-asha")
    epochs = _epochs(study)
    # The hopeless three stop at rung 1 or 2 (ASHA lets a tie with the cutoff go on)...
    assert epochs[0] == 4 and all(e <= 2 for e in epochs[1:4]), epochs
    assert [t.state for t in study.trials[1:4]] == [TrialState.PRUNED] * 3
    # ...so >= 4 epochs are left for more candidates: more trials than 14 // 4 full ones,
    # and never more epochs than the budget.
    assert len(epochs) >= 5 and sum(epochs) <= 14, epochs


def test_time_budget_cuts_trials_at_the_deadline_and_estimates_the_search(ray_local, sqlite_url):
    """search.budget_minutes: the running trial stops itself before an epoch it could not
    finish by the deadline (PRUNED with its curve); no trial starts that could not finish; the
    first epochs give an estimate of the whole search."""
    import time

    raw = tiny_spec_dict(
        "deadline", data={"train_size": 1200, "val_size": 100},
        model={"wavemix": {"final_dim": 8, "depth": 1, "level": 1}},
        train={"epochs": 60, "batch_size": 4, "switch_epoch": 30},
        search={"sampler": "random", "n_trials": 3, "max_concurrent": 1,
                "budget_minutes": 0.5})
    spec = SearchSpec.model_validate(raw)
    lines: list[str] = []
    t0 = time.time()
    run_search(spec, storage_url=sqlite_url, progress=lines.append)
    elapsed = time.time() - t0
    trials = load_study(sqlite_url, "deadline").trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert len(pruned) == 1, lines
    cut = pruned[0]
    reason = cut.user_attrs[schema.TRIAL_STATE_REASON]
    assert reason.startswith("cut at the time budget after epoch"), reason
    assert 1 <= len(cut.intermediate_values) < 60
    assert cut.user_attrs[schema.TRIAL_CURVE] == [cut.intermediate_values[e] for e in
                                                   sorted(cut.intermediate_values)]
    # Nothing is left running; a candidate asked but too large to finish in time is given
    # back (FAIL "interrupted", not counted) and queued for the next run.
    for t in trials:
        assert t.state != TrialState.RUNNING
        if t.state == TrialState.FAIL:
            assert t.user_attrs[schema.TRIAL_FAIL_REASON] == schema.INTERRUPTED_REASON
    # The deadline is 30 s after the start; the run ends within about one epoch after it
    # (plus Ray's shutdown).
    epoch_s = max(cut.user_attrs.get(schema.TRIAL_WALL_TIME_S, 0.0), 0.0) or 2.0
    assert elapsed < 30 + epoch_s + 20, (elapsed, lines)
    estimate = next(ln for ln in lines if ln.startswith("estimate: ~"))
    assert "for 3 trials at this pace" in estimate and "the time budget ends it in" in estimate
    assert any(ln.startswith("time budget reached") for ln in lines), lines

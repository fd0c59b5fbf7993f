"""Issue 21's behaviours of the app with Streamlit's AppTest on real SQLite studies: the
progress count, links that carry study and trial, the trial page, the front of the axis
shown, the runs table, comparing several trials, the first epoch, the editor's lines."""

from __future__ import annotations

import time

import optuna
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app.runs_table import apply_filter, table
from engine.spec import parse_spec, spec_hash
from storage import front_2d, load_study, open_storage, schema, trial_rows
from tests._app_helpers import app_test, chart_spec, seed_study
from tests.conftest import ROOT, tiny_spec_dict

MAIN = str(ROOT / "app" / "main.py")


@pytest.fixture
def storage(tmp_path, monkeypatch):
    """`alpha` (two families, 6 trials) and `quick`: 12 trained trials of a 12-trial budget,
    one candidate screened out over the cap and one trial cut off by a stopped search."""
    url = f"sqlite:///{tmp_path / 'views.db'}"
    seed_study(url, "alpha", families=("wavemix", "cxv"), n_done=6, seed=1)
    quick = seed_study(url, "quick", n_done=12, n_trials=12, over_cap=None, seed=4)
    spec = parse_spec(tiny_spec_dict("quick"))
    quick.set_user_attr(schema.STUDY_SPEC, spec.model_dump(mode="json"))
    quick.set_user_attr(schema.STUDY_SPEC_HASH, spec_hash(spec))
    dist = {"wavemix.depth": optuna.distributions.IntDistribution(1, 4)}
    quick.add_trial(optuna.trial.create_trial(
        params={"wavemix.depth": 4}, distributions=dist, values=[0.0, 45.0],
        constraints={"gpu_ram_mb": 5.0},
        user_attrs={schema.TRIAL_TRAINED: False, schema.TRIAL_PEAK_MEMORY_MB: 45.0,
                    schema.TRIAL_STATE_REASON: "predicted 45 MB over the 40 MB cap"}))
    quick.add_trial(optuna.trial.create_trial(
        params={"wavemix.depth": 2}, distributions=dist, state=optuna.trial.TrialState.FAIL,
        intermediate_values={1: 0.31},
        user_attrs={schema.TRIAL_FAIL_REASON: schema.INTERRUPTED_REASON,
                    schema.TRIAL_VAL_ACCURACY: 0.31, schema.TRIAL_EPOCHS_RUN: 1,
                    schema.TRIAL_WALL_TIME_S: 3.0}))
    monkeypatch.setenv("WAVESEARCH_STORAGE", url)
    monkeypatch.setenv("WAVESEARCH_RUN_DIR", str(tmp_path / "runs"))
    return url


def _select(at: AppTest, study: str) -> AppTest:
    return at.sidebar.selectbox[0].select(study).run()


def test_progress_counts_by_the_one_rule_in_the_sidebar_and_the_resume_tab(storage):
    at = _select(app_test().run(), "quick")
    assert at.sidebar.get("progress")[0].proto.text == "12 of 12 trials"  # not 13, not 14
    at.switch_page("views/new_search.py").run()
    assert any(c.value.startswith("12 trials count towards the budget") for c in at.caption)
    assert next(n for n in at.number_input if n.label == "Total trials").value == 13


def test_an_interrupted_trial_shows_no_result_and_says_why(storage):
    at = _select(app_test().run(), "quick")
    frame = at.dataframe[0].value
    cut = frame[frame["trial"] == 13].iloc[0]
    assert cut["state"] == "interrupted" and pd.isna(cut["val_accuracy"])
    assert pd.isna(cut["time_s"])
    at.query_params["trial"] = "13"
    at.switch_page("views/trial.py").run()
    assert not at.exception
    assert "interrupted" in at.warning[0].value
    assert [m.value for m in at.metric][0] == "-"  # val accuracy: none shown


def test_a_link_carries_the_study_and_the_trial(storage):
    at = app_test()
    at.query_params["study"] = "alpha"  # beta-like "most recent" would be quick
    at.query_params["trial"] = "3"
    at.run()
    assert at.sidebar.selectbox[0].value == "alpha"
    at.switch_page("views/trial.py").run()
    assert not at.exception
    assert at.header[0].value.startswith("Trial 3:")
    assert at.query_params["study"] == "alpha" and at.query_params["trial"] == "3"
    _select(at, "quick")  # the URL follows the sidebar
    assert at.query_params["study"] == "quick"


def test_the_trial_page_lists_every_recorded_attribute(storage):
    at = _select(app_test().run(), "alpha")
    at.switch_page("views/trial.py").run()
    fields = set(at.dataframe[2].value["field"])
    assert {"number", "state", "val_accuracy", "peak_memory_mb", "param_count", "epochs_run",
            "wall_time_s", "switched_at", "trained", "datetime_start"} <= fields
    assert at.get("plotly_chart")  # its learning curve
    assert "Only a trial that finished training with saved weights" in at.info[0].value


def test_stars_mark_the_front_of_the_axis_shown_and_the_zoom_is_kept(storage):
    at = _select(app_test().run(), "alpha")
    box = next(s for s in at.selectbox if s.label == "x axis")
    box.set_value("parameters").run()
    fig = chart_spec(at, "pareto_chart")
    stars = {c[0] for t in fig["data"] if t.get("customdata") and t["marker"]["symbol"] == "star"
             for c in t["customdata"]}
    rows = trial_rows(load_study(storage, "alpha"))
    expected = front_2d([(r.number, r.val_accuracy, r.param_count) for r in rows
                         if r.state == "COMPLETE" and r.feasible])
    assert stars == expected
    assert fig["layout"]["uirevision"]  # plotly keeps the user's zoom across refreshes
    assert fig["layout"]["legend"]["y"] > 1  # above the plot, clear of the axis title
    legend = [t["name"] for t in fig["data"] if t.get("showlegend", True) and t["x"] == [None]]
    assert "running (latest epoch)" not in legend  # alpha has no running trial
    # Any numeric parameter, on a log scale if asked.
    next(s for s in at.selectbox if s.label == "x axis").set_value("wavemix.depth").run()
    next(t for t in at.toggle if t.label == "log scale").set_value(True).run()
    fig = chart_spec(at, "pareto_chart")
    assert fig["layout"]["xaxis"]["type"] == "log"
    assert fig["layout"]["xaxis"]["title"]["text"] == "wavemix.depth"


def test_the_runs_table_filters_sorts_and_keeps_whole_numbers_whole(storage):
    rows = trial_rows(load_study(storage, "alpha"))
    frame = table(rows, {})
    assert str(frame["params"].dtype) == "Int64"
    assert str(frame["wavemix.depth"].dtype) == "Int64"  # not 2.000000
    kept, problem = apply_filter(frame, "family = cxv, val_accuracy > 0.5")
    assert problem is None
    assert set(kept["family"]) == {"cxv"} and (kept["val_accuracy"] > 0.5).all()
    _, problem = apply_filter(frame, "colour = red")
    assert "no column 'colour'" in problem
    at = _select(app_test().run(), "alpha")
    box = next(t for t in at.text_input if t.label == "Filter rows")
    box.input("family = wavemix").run()
    assert set(at.dataframe[0].value["family"]) == {"wavemix"}


def test_compare_takes_more_than_two_trials_and_shows_plain_values(storage):
    at = _select(app_test().run(), "alpha")
    at.switch_page("views/compare.py").run()
    box = next(m for m in at.multiselect if m.label == "Trials")
    box.set_value([0, 1, 3]).run()
    side = at.dataframe[0].value
    assert list(side.columns) == ["trial 0", "trial 1", "trial 3"]
    diff = at.dataframe[1].value
    values = [v for c in ("trial 0", "trial 1", "trial 3") for v in diff[c]]
    assert not any(v.startswith("'") for v in values)  # no quotes
    assert all(len(v) < 12 for v in values)  # no 16-digit floats
    assert len(at.get("plotly_chart")) == 1


def test_before_the_first_epoch_no_empty_chart_and_no_eta(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'first.db'}"
    study = seed_study(url, "fresh", n_done=0, n_trials=4, driver_eta_s=5.0)
    study.ask()  # running, no epoch yet
    monkeypatch.setenv("WAVESEARCH_STORAGE", url)
    monkeypatch.setenv("WAVESEARCH_RUN_DIR", str(tmp_path / "runs"))
    at = app_test().run()
    assert not at.get("plotly_chart") and not at.get("component_instance")
    assert "first point appears" in at.info[0].value
    captions = [c.value for c in at.sidebar.caption]
    assert "1 running · ETA after the first trial" in captions


def test_the_editor_shows_the_lines_its_error_cites(storage):
    at = app_test().run()
    at.switch_page("views/new_search.py").run()
    editor = next(t for t in at.text_area if t.label.startswith("Spec"))
    bad = editor.value.replace("  lr: 0.003", "  lr: -1", 1)
    editor.input(bad).run()
    line = bad.splitlines().index("  lr: -1") + 1
    assert any(f"> {line} |   lr: -1" in c.value for c in at.code)


def test_the_live_switch_stops_the_refresh(storage):
    study = load_study(storage, "quick")
    now = time.time()
    study.set_user_attr(schema.DRIVER_PREFIX + "d", {
        "host": "h", "pid": 1, "started_at": now - 5, "heartbeat_at": now, "state": "running"})
    open_storage(storage)
    at = _select(app_test().run(), "quick")
    assert any(c.value.startswith("Live: refreshing") for c in at.sidebar.caption)
    next(t for t in at.sidebar.toggle if t.label == "Live refresh").set_value(False).run()
    assert any(c.value.startswith("Live refresh is off") for c in at.sidebar.caption)

"""The app with Streamlit's AppTest on real SQLite studies, and the servers behind `engine app`
and `engine dashboard` (started, queried, and killed by their pid)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from streamlit.testing.v1 import AppTest

from app.common import escape_markdown, trial_colour
from app.runs import Registry, SearchRun
from app.specs import key_line, resume_text
from storage import load_study, schema
from tests._app_helpers import app_test, chart_spec, free_port, port_open, seed_study, wait_http
from tests.conftest import ROOT, descendants, tiny_spec_dict

MAIN = str(ROOT / "app" / "main.py")
PAGES = ["pareto", "curves", "analysis", "compare", "export", "new_search"]


@pytest.fixture
def two_studies(tmp_path, monkeypatch):
    """A storage with `alpha` (two families, older) and `beta` (running, live driver)."""
    url = f"sqlite:///{tmp_path / 'two.db'}"
    seed_study(url, "alpha", families=("wavemix", "cxv"), n_done=6, seed=1)
    time.sleep(0.05)  # beta's trials start later: beta is the most recently active
    seed_study(url, "beta", n_done=4, running=1, driver_eta_s=125.0, seed=2)
    monkeypatch.setenv("WAVESEARCH_STORAGE", url)
    monkeypatch.setenv("WAVESEARCH_RUN_DIR", str(tmp_path / "runs"))
    return url


def _sidebar(at: AppTest) -> tuple[str, str | None]:
    return at.sidebar.text_input[0].value, (at.sidebar.selectbox[0].value
                                            if at.sidebar.selectbox else None)


def test_every_page_renders_a_seeded_study(two_studies):
    at = app_test().run()
    for page in PAGES:
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, (page, at.exception)
        assert not at.error, (page, [e.value for e in at.error])
    at.switch_page("views/analysis.py").run()
    charts = {c.proto.id for c in at.get("plotly_chart")}
    assert any("hypervolume_chart" in c for c in charts)
    assert any("parallel_chart" in c for c in charts)
    assert sum("importance_chart" in c for c in charts) == 2  # one per objective
    hv = chart_spec(at, "hypervolume_chart")
    assert "reference point: val_accuracy = 0" in hv["layout"]["title"]["text"]
    assert "peak_memory_mb = 40 (the cap)" in hv["layout"]["title"]["text"]
    # Real trial numbers on the x axis: beta's feasible trained trials (trial 2 is over the cap).
    assert [x for t in hv["data"] for x in t["x"]] == [0, 1, 3]


def test_page_switches_keep_the_storage_and_the_study(two_studies):
    at = app_test().run()
    assert _sidebar(at) == (two_studies, "beta")
    at.sidebar.selectbox[0].select("alpha").run()
    alpha_trials = len(load_study(two_studies, "alpha").trials)
    for page in PAGES * 2 + PAGES[::-1]:
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception
        assert _sidebar(at) == (two_studies, "alpha"), page
        at.run()  # a plain rerun too
        assert _sidebar(at) == (two_studies, "alpha"), page
    at.switch_page("views/pareto.py").run()
    shown = sum(int(m.value) for m in at.metric)
    assert shown == alpha_trials  # the page reads alpha, not the first or the newest study


def test_default_study_is_the_most_recently_active(two_studies):
    at = app_test().run()
    assert _sidebar(at)[1] == "beta"  # not "alpha", the alphabetically first
    study = load_study(two_studies, "alpha")
    study.tell(study.ask(), values=[0.1, 1.0])  # alpha is active again
    time.sleep(1.1)
    at = app_test().run()  # a new session
    assert _sidebar(at)[1] == "alpha"


def test_live_study_shows_progress_eta_and_the_running_trial(two_studies):
    at = app_test().run()  # beta: 4 of 8 trials, one running after epoch 1 of 3, driver ETA 125 s
    progress = at.sidebar.get("progress")[0].proto
    assert progress.text == "4 of 8 trials"
    assert progress.value == 50
    captions = [c.value for c in at.sidebar.caption]
    assert "1 running · ETA 2 min 05 s" in captions
    assert any(c.startswith("Live: refreshing every") for c in captions)
    table = at.dataframe[0].value
    running = table[table["state"] == "running"]
    assert list(running["epochs"]) == ["epoch 1/3"]
    at.switch_page("views/curves.py").run()
    fig = chart_spec(at, "curves_chart")
    names = [t["name"] for t in fig["data"]]
    assert any("running, epoch 1/3" in n for n in names), names
    line = next(t for t in fig["data"] if "running" in t["name"])
    assert line["y"] == [0.42] and line["line"]["dash"] == "dot"
    # The search ends: the running trial finishes, the driver says so; the page follows.
    study = load_study(two_studies, "beta")
    trial = next(t for t in study.trials if t.state.name == "RUNNING")
    study.tell(trial.number, values=[0.5, 12.0])
    driver = study.user_attrs[schema.DRIVER_PREFIX + "seeded"]
    study.set_user_attr(schema.DRIVER_PREFIX + "seeded", {**driver, "state": "finished"})
    time.sleep(1.1)  # the probe is cached for a second
    at.run()
    assert not any(c.value.startswith("Live") for c in at.sidebar.caption)
    assert at.sidebar.get("progress")[0].proto.text == "5 of 8 trials"
    names = [t["name"] for t in chart_spec(at, "curves_chart")["data"]]
    assert not any("running" in n for n in names)


def test_each_trial_keeps_one_colour_and_switch_markers_carry_it(two_studies):
    assert len({trial_colour(n) for n in range(1000)}) == 1000
    at = app_test().run()
    at.sidebar.selectbox[0].select("alpha").run()
    pareto = chart_spec(at, "pareto_chart")
    colour_on_pareto = {}
    for tr in pareto["data"]:
        if tr.get("customdata"):  # a category's points (not its legend entry, not the front)
            for (number, *_), colour in zip(tr["customdata"], tr["marker"]["color"], strict=True):
                colour_on_pareto[number] = colour
    assert len(colour_on_pareto) == 6
    at.switch_page("views/curves.py").run()
    trials = next(m for m in at.multiselect if m.label == "Trials")
    trials.set_value(sorted(colour_on_pareto)).run()
    curves = chart_spec(at, "curves_chart")
    switches = [t for t in curves["data"] if t["name"].endswith("switch")]
    assert switches
    for t in curves["data"]:
        number = int(t["name"].split()[1])
        colour = t["marker"]["color"]
        assert colour == trial_colour(number) == colour_on_pareto[number]
    study = load_study(two_studies, "alpha")
    for mark in switches:
        number = int(mark["name"].split()[1])
        epoch = study.trials[number].user_attrs[schema.TRIAL_SWITCHED_AT]
        assert mark["hovertemplate"] == f"trial {number}: SGD from epoch {epoch}<extra></extra>"
        assert mark["marker"]["color"] != "black"


def test_filters_and_axis_choice(two_studies):
    at = app_test().run()
    at.sidebar.selectbox[0].select("alpha").run()
    fam = next(m for m in at.multiselect if m.label == "Families")
    fam.set_value(["cxv"]).run()
    table = at.dataframe[0].value
    assert set(table["family"]) == {"cxv"}
    next(s for s in at.selectbox if s.label == "x axis").set_value("parameters").run()
    fig = chart_spec(at, "pareto_chart")
    assert fig["layout"]["xaxis"]["title"]["text"] == "parameters"
    xs = {x for t in fig["data"] for x in t["x"] if x is not None}
    assert xs <= {1500 * d for d in range(1, 5)}
    # Filters are kept per study across pages.
    at.switch_page("views/curves.py").run()
    assert next(m for m in at.multiselect if m.label == "Families").value == ["cxv"]


def test_missing_sqlite_file_is_reported_not_created(tmp_path, monkeypatch):
    monkeypatch.setenv("WAVESEARCH_RUN_DIR", str(tmp_path / "runs"))
    missing = tmp_path / "nowhere" / "__init__" / "study.db"
    monkeypatch.setenv("WAVESEARCH_STORAGE", f"sqlite:///{missing}")
    at = app_test().run()
    assert not at.exception
    assert "no database file at" in at.info[0].value
    assert "\\_\\_init\\_\\_" in at.info[0].value  # escaped: shown literally, not as bold
    assert not missing.exists() and not missing.parent.exists()
    at.sidebar.text_input[0].input("not-a-url").run()
    assert not at.exception
    assert "must be a database URL" in at.error[0].value
    assert at.sidebar.warning[0].value == "Not a usable storage URL."
    other = tmp_path / "other.db"  # someone else's SQLite database: read, never changed
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (text)")
    before = other.read_bytes()
    at.sidebar.text_input[0].input(f"sqlite:///{other}").run()
    assert "is not a study database" in at.error[0].value
    assert other.read_bytes() == before


@pytest.mark.slow
def test_export_is_keyed_by_storage_study_and_trial(finished_search, tmp_path, monkeypatch):
    import shutil

    import engine

    _, shared_url, _, _ = finished_search
    db = tmp_path / "copy.db"  # the session's study is read-only: work on a copy
    shutil.copy(shared_url.removeprefix("sqlite:///"), db)
    url = f"sqlite:///{db}"
    seed_study(url, "zeta", n_done=4, over_cap=None)  # the same trial numbers, no weights
    monkeypatch.setenv("WAVESEARCH_STORAGE", url)
    monkeypatch.setenv("WAVESEARCH_RUN_DIR", str(tmp_path / "runs"))
    at = app_test().run()
    at.sidebar.selectbox[0].select("e2e").run()
    at.switch_page("views/export.py").run()
    study = load_study(url, "e2e")
    best = max(study.best_trials, key=lambda t: t.values[0])
    trial_box = next(s for s in at.selectbox if s.label == "Trial")
    assert trial_box.value == best.number  # default: the best-accuracy Pareto point
    at.checkbox(key="export_with_test").uncheck().run()
    at.button(key="export_button").click().run()
    assert not at.exception
    assert "ready" in at.success[0].value
    blob = at.session_state["export"]["blob"]
    (tmp_path / "dl.pt").write_bytes(blob)
    model = engine.load_model(tmp_path / "dl.pt")
    assert sum(p.numel() for p in model.parameters()) == best.user_attrs[schema.TRIAL_PARAM_COUNT]
    download = at.get("download_button")[0].proto
    assert download.label == "Download checkpoint"
    # ONNX too: a verified graph, named as what it is.
    at.radio(key="export_format").set_value("onnx").run()
    assert "export" not in at.session_state  # the checkpoint was built for the other format
    at.button(key="export_button").click().run()
    assert not at.exception and "ONNX model" in at.success[0].value
    onnx_blob = at.session_state["export"]["blob"]
    import onnx

    onnx.checker.check_model(onnx.load_from_string(onnx_blob))
    assert at.get("download_button")[0].proto.label == "Download ONNX"
    # Study zeta, the same trial number: nothing built for e2e may be offered.
    at.switch_page("views/pareto.py").run()
    at.sidebar.selectbox[0].select("zeta").run()
    at.switch_page("views/export.py").run()
    next(s for s in at.selectbox if s.label == "Trial").set_value(best.number).run()
    assert next(s for s in at.selectbox if s.label == "Trial").value == best.number
    assert not at.success and not at.get("download_button")
    assert "export" not in at.session_state
    at.button(key="export_button").click().run()  # zeta has no weights: an error, no traceback
    assert not at.exception and at.error


def test_new_search_page_validates_like_engine_validate(two_studies, tmp_path):
    at = app_test().run()
    at.switch_page("views/new_search.py").run()
    editor = next(t for t in at.text_area if t.label.startswith("Spec"))
    assert "study:" in editor.value  # a template to start from
    bad = editor.value.replace("  lr: 0.003", "  lr: -1", 1)
    editor.input(bad).run()
    message = at.error[0].value
    spec_file = tmp_path / "spec"
    spec_file.write_text(bad)
    cli = subprocess.run([sys.executable, "-m", "engine.cli", "validate", str(spec_file)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert cli.returncode == 2
    cli_message = cli.stderr.strip().removeprefix("error: ").replace(str(spec_file), "spec")
    assert message.startswith(escape_markdown(cli_message))
    assert escape_markdown("train.lr") in message
    line = bad.splitlines().index("  lr: -1") + 1
    assert message.endswith(escape_markdown(f"(line {line})"))
    assert at.button(key="start_search").disabled
    editor.input(bad.replace("lr: -1", "lr: 0.003")).run()
    assert not at.error and "Valid" in at.success[0].value
    assert not at.button(key="start_search").disabled


def test_a_stored_spec_resumes_the_same_search_space():
    from engine.spec import parse_spec, spec_hash

    spec = parse_spec(tiny_spec_dict("resumable"))
    stored = spec.model_dump(mode="json")  # what prepare_study stores as STUDY_SPEC
    text = resume_text(stored, n_trials=9, budget_epochs=None)
    import yaml

    again = parse_spec(yaml.safe_load(text))
    assert spec_hash(again) == spec_hash(spec)
    assert again.search.n_trials == 9
    assert key_line(text, "search.n_trials") == text.splitlines().index("  n_trials: 9") + 1


def test_a_study_resumes_from_the_app_and_stops_like_ctrl_c(two_studies, tmp_path):
    import yaml

    from app.runs import session_pids
    from engine.spec import parse_spec, spec_hash

    # A study copied under another name keeps its original's spec (study.name "resumable"):
    # resuming it must train the copy, the study chosen in the sidebar.
    spec = parse_spec(tiny_spec_dict("resumable"))
    study = seed_study(two_studies, "copied", n_done=2, n_trials=2)
    study.set_user_attr(schema.STUDY_SPEC, spec.model_dump(mode="json"))
    study.set_user_attr(schema.STUDY_SPEC_HASH, spec_hash(spec))
    at = app_test().run()
    at.sidebar.selectbox[0].select("copied").run()
    at.switch_page("views/new_search.py").run()
    assert any("Resume study **copied**" in m.value for m in at.markdown)
    total = next(n for n in at.number_input if n.label == "Total trials")
    assert total.value == 3  # the recorded budget (2 trials, as the sidebar says), or one more
    total.set_value(5).run()
    assert not at.error
    at.button(key="resume_search").click().run()
    assert not at.exception
    run = Registry(tmp_path / "runs").runs()[0]
    assert (run.study, run.kind, run.storage_url) == ("copied", "resume", two_studies)
    launched = parse_spec(yaml.safe_load(run.spec_path.read_text()))
    assert launched.study.name == "copied"
    assert spec_hash(launched) == spec_hash(spec) and launched.search.n_trials == 5
    at.button(key=f"stop:{run.id}").click().run()  # SIGINT, as Ctrl-C
    deadline = time.time() + 60
    while run.alive() and time.time() < deadline:
        time.sleep(0.3)
    assert not run.alive()
    deadline = time.time() + 20
    while session_pids(run.pid) and time.time() < deadline:
        time.sleep(0.3)
    assert not session_pids(run.pid)
    at.run()
    assert Registry(tmp_path / "runs").runs()[0].status == "stopped"
    assert any("copied: stopped" in e.label.replace("\\", "") for e in at.expander)


def test_the_registry_finds_runs_again(tmp_path):
    reg = Registry(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = SearchRun(id="r1", pid=dead.pid, start_ticks="1", owner_pid=os.getpid(),
                    storage_url="sqlite:///x.db", study="s", kind="new", folder=str(tmp_path),
                    started_at=time.time())
    reg.put(run)
    again = Registry(tmp_path).runs()  # as a reloaded page reads it
    assert again == [run]
    assert again[0].status == "ended" and not again[0].alive()
    (tmp_path / "runs.json").write_text("{broken")
    assert Registry(tmp_path).runs() == []


def test_error_text_is_shown_literally():
    text = "**bold** __init__ :red[x] <b>h</b> $x$ [a](b)"
    escaped = escape_markdown(text)
    assert all(f"\\{c}" in escaped for c in "*_:[]<>$()")
    at = AppTest.from_string(f"import streamlit as st\nst.error({escaped!r})").run()
    assert at.error[0].value == escaped


def test_the_app_modules_import_neither_torch_nor_ray():
    code = ("import sys, app.state, app.data, app.figures, app.insight, app.widgets, app.runs, "
            "app.specs; bad = [m for m in ('torch', 'ray') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the servers: loopback, the storage, and a clean end on SIGTERM ---------------------------

def _start(command: str, url: str, tmp_path: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WAVESEARCH_RUN_DIR": str(tmp_path / "runs")}
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", command, "--storage", url,
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return proc, port


@pytest.mark.slow
@pytest.mark.parametrize("command,path", [("app", "/_stcore/health"), ("dashboard", "/api/studies")])
def test_servers_serve_on_loopback_and_end_with_their_pid(two_studies, tmp_path, command, path):
    proc, port = _start(command, two_studies, tmp_path)
    try:
        body = wait_http(f"http://127.0.0.1:{port}{path}")
        assert (b"ok" if command == "app" else b"alpha") in body
        if command == "dashboard":  # objectives named, not "Objective 0/1"
            studies = json.loads(body)["study_summaries"]
            sid = next(s["study_id"] for s in studies if s["study_name"] == "alpha")
            detail = json.loads(wait_http(f"http://127.0.0.1:{port}/api/studies/{sid}"))
            assert detail["objective_names"] == ["val_accuracy", "peak_memory_mb"]
        kids = descendants(proc.pid)
        assert (len(kids) >= 1) == (command == "app")  # the app runs Streamlit as a child
        proc.send_signal(signal.SIGTERM)  # the pid alone, as `kill PID` does
        deadline = time.time() + 10
        while port_open(port) and time.time() < deadline:
            time.sleep(0.2)
        assert not port_open(port), "the port is still served after SIGTERM"
        assert proc.wait(timeout=30) is not None
        assert not any(Path(f"/proc/{k}").exists() and "Z" not in
                       Path(f"/proc/{k}/stat").read_text().split(")")[-1][:3] for k in kids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_dashboard_names_objectives_of_older_studies(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    study = optuna.create_study(study_name="old", directions=["maximize", "minimize"],
                                storage=url)
    study.set_user_attr(schema.STUDY_OBJECTIVES, ["val_accuracy", "peak_memory_mb"])
    assert load_study(url, "old").metric_names is None
    proc, port = _start("dashboard", url, tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/api/studies")
        assert load_study(url, "old").metric_names == ["val_accuracy", "peak_memory_mb"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

"""The app with Streamlit's AppTest, and the real servers behind `engine app` / `engine dashboard`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest
from streamlit.testing.v1 import AppTest

from app.common import REFRESH_S
from storage import load_study, open_storage, schema
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
PAGES = ROOT / "app" / "pages"


def _page(name: str, url: str, monkeypatch) -> AppTest:
    monkeypatch.setenv("WAVESEARCH_STORAGE", url)
    return AppTest.from_file(str(PAGES / name), default_timeout=60)


def test_export_page_offers_the_checkpoint_as_a_download(finished_search, monkeypatch, tmp_path):
    import engine

    _, url, _, _ = finished_search
    at = _page("export.py", url, monkeypatch).run()
    assert not at.exception
    study = load_study(url, "e2e")
    best = max(study.best_trials, key=lambda t: t.values[0])
    assert at.selectbox(key="export_trial").value == best.number  # default: best-accuracy Pareto point
    at.checkbox[0].uncheck()
    at.button(key="export_button").click().run()
    assert not at.exception
    assert "ready" in at.success[0].value
    # The bytes offered for download are a checkpoint that rebuilds the model.
    blob = at.session_state["export_blob"][1]
    path = tmp_path / "dl.pt"
    path.write_bytes(blob)
    model = engine.load_model(path)
    assert sum(p.numel() for p in model.parameters()) == best.user_attrs[schema.TRIAL_PARAM_COUNT]


def test_curves_page_marks_the_optimizer_switch(finished_search, monkeypatch):
    _, url, _, _ = finished_search
    at = _page("curves.py", url, monkeypatch).run()
    assert not at.exception
    study = load_study(url, "e2e")
    front = sorted(t.number for t in study.best_trials)
    assert sorted(at.multiselect(key="curve_trials").value) == front  # default: the Pareto trials
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    lines = [tr for tr in fig["data"] if tr["mode"] == "lines+markers"]
    switches = [tr for tr in fig["data"] if tr["name"].endswith("switch")]
    assert len(lines) == len(front) == len(switches)
    for num, line, mark in zip(front, lines, switches, strict=True):
        t = study.trials[num]
        assert line["y"] == [t.intermediate_values[e] for e in (1, 2, 3)]
        assert mark["x"] == [t.user_attrs[schema.TRIAL_SWITCHED_AT]]


def test_pages_report_storage_problems_without_tracebacks(monkeypatch, tmp_path):
    at = _page("pareto.py", "not-a-url", monkeypatch).run()
    assert not at.exception
    assert "must be a database URL" in at.error[0].value
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    at = _page("pareto.py", empty, monkeypatch).run()
    assert "No studies" in at.info[0].value


def test_running_study_refreshes(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'live.db'}"
    study = optuna.create_study(study_name="live", storage=open_storage(url),
                                directions=["maximize", "minimize"])
    study.set_user_attr(schema.STUDY_OBJECTIVES, ["val_accuracy", "peak_memory_mb"])
    done = study.ask()
    done.set_user_attr(schema.TRIAL_VAL_ACCURACY, 0.5)
    done.set_user_attr(schema.TRIAL_PEAK_MEMORY_MB, 3.0)
    study.tell(done, values=[0.5, 3.0])
    running = study.ask()  # left RUNNING, as while a search is under way
    running.set_user_attr(schema.TRIAL_CONFIG, {"family": "wavemix"})
    at = _page("pareto.py", url, monkeypatch).run()
    assert not at.exception
    assert any("refreshing every" in c.value for c in at.caption)
    # Once the trial finishes, the next run shows it without the refresh notice.
    study.tell(running, values=[0.9, 5.0])
    time.sleep(REFRESH_S + 0.5)  # reads are cached for REFRESH_S seconds
    at = _page("pareto.py", url, monkeypatch).run()
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    front = next(tr for tr in fig["data"] if tr["name"] == "Pareto front")
    assert sorted(front["y"]) == [0.5, 0.9]
    assert not any("refreshing" in c.value for c in at.caption)


def test_navigation_entry_runs(finished_search, monkeypatch):
    _, url, _, _ = finished_search
    monkeypatch.setenv("WAVESEARCH_STORAGE", url)
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value.startswith("Pareto front")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 60.0) -> bytes:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read()
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.parametrize("command,path,expect", [
    ("app", "/_stcore/health", b"ok"),
    ("dashboard", "/api/studies", b"e2e"),
])
def test_servers_start_on_loopback_with_the_storage(finished_search, command, path, expect):
    _, url, _, _ = finished_search
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", command, "--storage", url,
                             "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        body = _get(f"http://127.0.0.1:{port}{path}")
        assert expect in body
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # only the process group this test started
        proc.wait(timeout=30)

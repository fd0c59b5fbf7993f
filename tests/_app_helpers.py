"""Helpers of the app tests: studies written as the engine writes them, the app server, and
Debian's chromium driven by playwright.

Seeded studies are data, not stand-ins: real Optuna SQLite storages holding trials with the
attributes ``storage/schema.py`` documents (objectives, configs, curves, constraints, the
budget and driver heartbeats).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from storage import open_storage, schema
from tests.conftest import ROOT, descendants, tiny_spec_dict

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]


def seed_study(url: str, name: str, *, families: tuple[str, ...] = ("wavemix",), n_done: int = 5,
               running: int = 0, cap_mb: float = 40.0, n_trials: int | None = 8,
               driver_eta_s: float | None = None, seed: int = 0,
               over_cap: int | None = 2) -> optuna.Study:
    """A two-objective study (val_accuracy max, peak_memory_mb min) with ``n_done`` finished
    trials (trial ``over_cap`` over the memory cap), ``running`` trials that
    reported one of three epochs, the budget, and a live driver when ``driver_eta_s`` is set."""
    rng = random.Random(seed)
    study = optuna.create_study(study_name=name, storage=open_storage(url),
                                directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val_accuracy", "peak_memory_mb"])
    study.set_user_attr(schema.STUDY_OBJECTIVES, ["val_accuracy", "peak_memory_mb"])
    study.set_user_attr(schema.STUDY_CONSTRAINTS, {"gpu_ram_mb": cap_mb, "max_params": None})
    study.set_user_attr(schema.STUDY_BUDGET, {"n_trials": n_trials, "budget_epochs": None,
                                              "budget_minutes": None, "epochs_per_trial": 3})
    for i in range(n_done):
        family = families[i % len(families)]
        params, dists = _params(family, families, rng)
        depth = params[f"{family}.depth"]
        over = i == over_cap
        mem = cap_mb + 5.0 if over else 8.0 + 6.0 * depth + rng.random() * 4
        curve = sorted(0.3 + 0.5 * rng.random() for _ in range(3))
        switch = params["train.switch_epoch"]
        attrs = {**_config_attrs(family, depth, switch), schema.TRIAL_VAL_ACCURACY: curve[-1],
                 schema.TRIAL_PEAK_MEMORY_MB: mem, schema.TRIAL_PARAM_COUNT: 1500 * depth,
                 schema.TRIAL_MEMORY_METHOD: "predicted", schema.TRIAL_EPOCHS_RUN: 3,
                 schema.TRIAL_WALL_TIME_S: 4.0 + i, schema.TRIAL_SWITCHED_AT: switch,
                 schema.TRIAL_TRAINED: True, schema.TRIAL_CURVE: curve}
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=dists, values=[curve[-1], mem],
            intermediate_values={e + 1: v for e, v in enumerate(curve)}, user_attrs=attrs,
            constraints={"gpu_ram_mb": mem - cap_mb}))
    storage = open_storage(url)
    for _ in range(running):
        trial = study.ask()
        family = families[0]
        trial.set_user_attr(schema.TRIAL_CONFIG, _config_attrs(family, 1, 2)[schema.TRIAL_CONFIG])
        trial.set_user_attr(schema.TRIAL_PEAK_MEMORY_MB, 12.0)
        trial.set_user_attr(schema.TRIAL_PARAM_COUNT, 1500)
        storage.set_trial_intermediate_value(trial._trial_id, 1, 0.42)
    if driver_eta_s is not None:
        now = time.time()
        study.set_user_attr(schema.DRIVER_PREFIX + "seeded", {
            "host": socket.gethostname(), "pid": os.getpid(), "started_at": now - 60,
            "heartbeat_at": now, "state": "running", "deadline": None, "eta_s": driver_eta_s,
            "running_trials": running})
    return study


def _params(family: str, families: tuple[str, ...], rng: random.Random):
    params = {f"{family}.depth": rng.randint(1, 4), "train.switch_epoch": rng.randint(1, 2),
              f"{family}.dropout": round(rng.random() * 0.2, 3)}
    dists = {f"{family}.depth": IntDistribution(1, 4), "train.switch_epoch": IntDistribution(1, 2),
             f"{family}.dropout": FloatDistribution(0.0, 0.2)}
    if len(families) > 1:
        params["family"] = family
        dists["family"] = CategoricalDistribution(list(families))
    return params, dists


def _config_attrs(family: str, depth: int, switch: int) -> dict:
    return {schema.TRIAL_CONFIG: {"family": family, "model": {"depth": depth, "final_dim": 16},
                                  "train": {"epochs": 3, "switch_epoch": switch, "lr": 0.01}}}


def tiny_search_yaml(name: str, *, n_trials: int = 2, epochs: int = 1) -> str:
    """The smallest real search: digits, tiny WaveMix, ``n_trials`` x ``epochs``."""
    spec = tiny_spec_dict(name, train={"epochs": epochs, "switch_epoch": 1},
                          search={"n_trials": n_trials, "max_concurrent": 2})
    return yaml.safe_dump(spec, sort_keys=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_http(url: str, timeout: float = 60.0) -> bytes:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read()
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.3)


@contextlib.contextmanager
def app_server(url: str, run_dir: Path, cwd: Path) -> Iterator[tuple[subprocess.Popen, int]]:
    """``engine app --storage URL`` on a free port; stopped (SIGTERM to its pid) at the end."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WAVESEARCH_RUN_DIR": str(run_dir),
           "RAY_AUTH_MODE": "disabled"}
    log = open(cwd / f"app-{port}.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "app", "--storage", url,
                             "--port", str(port)], env=env, cwd=cwd, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health")
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                for pid in descendants(proc.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                proc.kill()
                proc.wait()
        log.close()


def chromium_path() -> str | None:
    return shutil.which("chromium")


def chart_spec(at, key: str) -> dict:
    """The Plotly figure (as JSON) of the chart with ``key`` on an AppTest page: drawn by
    ``st.plotly_chart`` or by the app's live chart component (app/live_chart)."""
    import json

    for c in at.get("plotly_chart"):
        if key in c.proto.id:
            return json.loads(c.proto.spec)
    for c in at.get("component_instance"):
        if c.proto.id.endswith(key):
            return json.loads(json.loads(c.proto.json_args)["spec"])
    raise LookupError(f"no chart with key {key!r}")


# A chart drawn in the main page (st.plotly_chart) or in the live chart's frame (same origin).
CHART_DRAWN_JS = ("() => !!document.querySelector('[data-testid=stMain] .js-plotly-plot') || "
                  "[...document.querySelectorAll('[data-testid=stMain] iframe')].some(f => "
                  "f.contentDocument && f.contentDocument.querySelector('.js-plotly-plot .main-svg'))")


def wait_chart(pg, timeout_ms: float = 30_000) -> None:
    """Wait until the page shows a Plotly chart (see :data:`CHART_DRAWN_JS`)."""
    pg.wait_for_function(CHART_DRAWN_JS, timeout=timeout_ms)


def app_test():
    """The app (app/main.py) under Streamlit's AppTest, with a timeout long enough for a
    loaded 2-core machine."""
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    return AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=90)


# The marks of every real-browser test file: slow, and skipped only where chromium is missing.
BROWSER_MARKS = [pytest.mark.slow,
                 pytest.mark.skipif(shutil.which("chromium") is None,
                                    reason="chromium is not installed (apt-get install chromium)")]

"""Faults with real processes: the driver killed with SIGKILL then resumed; a worker killed.

Every process a test starts is stopped by its id (never `ray stop`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from storage import load_study, schema
from tests.conftest import ROOT, tiny_spec_dict, write_spec
from tests.test_cli import _ray_pids

pytestmark = pytest.mark.slow


def _spawn(spec_path: Path, url: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "engine.cli", "search", str(spec_path),
                             "--storage", url], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for(proc: subprocess.Popen, needle: str, timeout: float = 180) -> list[str]:
    lines, deadline = [], time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"never saw {needle!r}:\n{''.join(lines)[-3000:]}")


def _kill_new_ray(before: set[int]) -> None:
    for pid in _ray_pids() - before:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _slow_spec(name: str, n_trials: int) -> dict:
    return tiny_spec_dict(name, data={"train_size": 1200, "val_size": 200},
                          train={"epochs": 4, "batch_size": 16},
                          search={"sampler": "random", "n_trials": n_trials, "max_concurrent": 1})


def test_driver_killed_then_resumed(tmp_path):
    f = write_spec(tmp_path / "s.yaml", _slow_spec("resume", 3))
    url = f"sqlite:///{tmp_path / 'r.db'}"
    before = _ray_pids()
    proc = _spawn(f, url, tmp_path)
    try:
        # Let trial 0 finish and trial 1 get under way, then SIGKILL the driver mid-trial.
        _wait_for(proc, "trial 1 epoch 1/4")
        proc.kill()
        proc.wait(timeout=30)
    finally:
        _kill_new_ray(before)  # the orphaned Ray processes of the killed driver, by id
    study = load_study(url, "resume")
    states = {t.number: t.state for t in study.trials}
    assert states[0] == TrialState.COMPLETE and states[1] == TrialState.RUNNING
    done_before = study.trials[0]
    interrupted_params = study.trials[1].params

    resumed = subprocess.run([sys.executable, "-m", "engine.cli", "search", str(f), "--storage", url],
                             cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                             capture_output=True, text=True, timeout=600)
    _kill_new_ray(before)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "1 finished, 2 to run" in resumed.stdout
    study = load_study(url, "resume")
    trials = study.trials
    # The finished trial is kept untouched; the interrupted one is FAIL with its reason ...
    assert trials[0].state == TrialState.COMPLETE and trials[0].values == done_before.values
    assert trials[1].state == TrialState.FAIL
    assert "interrupted" in trials[1].user_attrs[schema.TRIAL_FAIL_REASON]
    # ... and re-ran with the same parameters; the budget counts finished trials (3 in all).
    rerun = [t for t in trials[2:] if t.params == interrupted_params]
    assert rerun and rerun[0].state == TrialState.COMPLETE
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(finished) == 3


def _trial_worker_pids() -> set[int]:
    """Ray worker processes currently executing a trial (their process title names it)."""
    found = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ray::ImplicitFunc") or cmd.startswith("ray::run_trial"):
                found.add(int(d.name))
    return found


def test_worker_killed_mid_trial_is_fail_and_the_study_completes(tmp_path):
    f = write_spec(tmp_path / "w.yaml", _slow_spec("worker", 3))
    url = f"sqlite:///{tmp_path / 'w.db'}"
    before = _ray_pids()
    proc = _spawn(f, url, tmp_path)
    try:
        _wait_for(proc, "trial 0 epoch 1/4")
        workers = _trial_worker_pids()
        assert workers, "no trial worker process found"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_new_ray(before)
    assert proc.returncode == 0, out[-3000:]
    trials = load_study(url, "worker").trials
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs[schema.TRIAL_FAIL_REASON].startswith("worker error:")
    assert [t.state for t in trials[1:]] == [TrialState.COMPLETE, TrialState.COMPLETE]


def test_ctrl_c_stops_cleanly_and_requeues_the_running_trial(tmp_path):
    f = write_spec(tmp_path / "c.yaml", _slow_spec("ctrlc", 3))
    url = f"sqlite:///{tmp_path / 'c.db'}"
    before = _ray_pids()
    proc = _spawn(f, url, tmp_path)
    try:
        _wait_for(proc, "trial 0 epoch 1/4")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    # The driver's own shutdown stopped every Ray process it started.
    deadline = time.time() + 20
    while (_ray_pids() - before) and time.time() < deadline:
        time.sleep(0.5)
    leftover = _ray_pids() - before
    _kill_new_ray(before)
    assert not leftover, "Ray processes left running after Ctrl-C"
    trials = load_study(url, "ctrlc").trials
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs[schema.TRIAL_FAIL_REASON] == schema.INTERRUPTED_REASON
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert [t.system_attrs["fixed_params"] for t in waiting] == [trials[0].params]
    assert "interrupted" in out

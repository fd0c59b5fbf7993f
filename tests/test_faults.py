"""Faults with real processes: the driver killed with SIGKILL then resumed; a worker killed.

Every process a test starts is stopped by its id (never `ray stop`).
"""

from __future__ import annotations

import os
import signal

import pytest
from optuna.trial import TrialState

from storage import load_study, schema
from tests.conftest import (
    kill_pids,
    lingering,
    search_process,
    tiny_spec_dict,
    trial_worker_pids,
    wait_for_line,
    write_spec,
)

pytestmark = pytest.mark.slow


def _slow_spec(name: str, n_trials: int) -> dict:
    return tiny_spec_dict(name, data={"train_size": 1200, "val_size": 200},
                          train={"epochs": 4, "batch_size": 16},
                          search={"sampler": "random", "n_trials": n_trials, "max_concurrent": 1})


def test_driver_killed_then_resumed(tmp_path, shared_ray):
    f = write_spec(tmp_path / "s.yaml", _slow_spec("resume", 3))
    url = f"sqlite:///{tmp_path / 'r.db'}"
    # Let trial 0 finish and trial 1 get under way, then SIGKILL the driver mid-trial; leaving
    # the block kills the killed driver's orphaned Ray processes, by id.
    with search_process(f, url, tmp_path, shared_ray) as proc:
        wait_for_line(proc, "trial 1 epoch 1/4")
        proc.kill()
        proc.wait(timeout=30)
    study = load_study(url, "resume")
    states = {t.number: t.state for t in study.trials}
    assert states[0] == TrialState.COMPLETE and states[1] == TrialState.RUNNING
    done_before = study.trials[0]
    interrupted_params = study.trials[1].params

    with search_process(f, url, tmp_path, shared_ray) as resumed:
        out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-3000:]
    assert "1 finished, 2 to run" in out
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


def test_worker_killed_mid_trial_is_fail_and_the_study_completes(tmp_path, shared_ray):
    f = write_spec(tmp_path / "w.yaml", _slow_spec("worker", 3))
    url = f"sqlite:///{tmp_path / 'w.db'}"
    with search_process(f, url, tmp_path, shared_ray) as proc:
        wait_for_line(proc, "trial 0 epoch 1/4")
        workers = trial_worker_pids(under=os.getpid())  # the session Ray's, not a peer's
        assert workers, "no trial worker process found"
        kill_pids(workers)
        out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    trials = load_study(url, "worker").trials
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs[schema.TRIAL_FAIL_REASON].startswith("worker error:")
    assert [t.state for t in trials[1:]] == [TrialState.COMPLETE, TrialState.COMPLETE]


def test_ctrl_c_stops_cleanly_and_requeues_the_running_trial(tmp_path):
    f = write_spec(tmp_path / "c.yaml", _slow_spec("ctrlc", 3))
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with search_process(f, url, tmp_path) as proc:
        wait_for_line(proc, "trial 0 epoch 1/4")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        # The driver's own shutdown stopped every Ray process it started.
        leftover = lingering(proc.pid)
    assert not leftover, "Ray processes left running after Ctrl-C"
    # 128 + SIGINT: a script can tell a stopped search from a finished one.
    assert proc.returncode == 130, out[-3000:]
    assert "run the same command again to resume" in out
    trials = load_study(url, "ctrlc").trials
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs[schema.TRIAL_FAIL_REASON] == schema.INTERRUPTED_REASON
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert [t.system_attrs["fixed_params"] for t in waiting] == [trials[0].params]
    assert "interrupted" in out

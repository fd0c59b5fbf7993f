"""Signals to `engine search`: SIGTERM (what `kill PID`, systemd and container runtimes send)
stops it as Ctrl-C does: the running trial re-queued, its Ray stopped, no stack dump, and exit
143 (128 + SIGTERM) so a script can tell it from Ctrl-C (130) and from a finished search (0).
"""

from __future__ import annotations

import signal

import pytest
from optuna.trial import TrialState

from storage import load_study, schema
from tests.conftest import lingering, search_process, tiny_spec_dict, wait_for_line, write_spec

pytestmark = pytest.mark.slow


def test_sigterm_stops_cleanly_requeues_and_exits_143(tmp_path):
    spec = tiny_spec_dict("term", data={"train_size": 1200, "val_size": 200},
                          train={"epochs": 4, "batch_size": 16},
                          search={"sampler": "random", "n_trials": 3, "max_concurrent": 1})
    f = write_spec(tmp_path / "t.yaml", spec)
    url = f"sqlite:///{tmp_path / 't.db'}"
    with search_process(f, url, tmp_path) as proc:  # its own Ray: the test checks it is stopped
        wait_for_line(proc, "trial 0 epoch 1/4")
        proc.send_signal(signal.SIGTERM)  # the pid alone, as `kill PID` does
        out, _ = proc.communicate(timeout=120)
        leftover = lingering(proc.pid)
    assert not leftover, "Ray processes left running after SIGTERM"
    assert proc.returncode == 143, out[-3000:]
    assert "SIGTERM received" not in out and "Traceback" not in out, out[-3000:]
    assert "run the same command again to resume" in out
    trials = load_study(url, "term").trials
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs[schema.TRIAL_FAIL_REASON] == schema.INTERRUPTED_REASON
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert [t.system_attrs["fixed_params"] for t in waiting] == [trials[0].params]
    assert not [t for t in trials if t.state == TrialState.RUNNING]

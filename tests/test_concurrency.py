"""One study, many hands: several drivers on one study, SQLite and PostgreSQL, a database
restarted mid-search, and many trials reporting at once. Real processes throughout; every
process a test starts is stopped by its id."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from storage import TrialRecord, load_study, schema
from tests._pg import PrivateServer, temp_database
from tests.conftest import (
    search_process,
    tiny_spec_dict,
    wait_for_line,
    write_spec,
)

pytestmark = pytest.mark.slow


def _spec(name: str, n_trials: int, epochs: int = 2, **search) -> dict:
    return tiny_spec_dict(name, data={"train_size": 300, "val_size": 100},
                          model={"wavemix": {"final_dim": 8, "depth": 1, "level": 1,
                                             "dropout": {"type": "float", "low": 0.0,
                                                         "high": 0.2}}},
                          train={"epochs": epochs, "batch_size": 32, "switch_epoch": 1},
                          search={"sampler": "random", "n_trials": n_trials,
                                  "max_concurrent": 1, **search})


@contextlib.contextmanager
def _drivers(spec_path: Path, url: str, n: int, cwd: Path, ray: tuple[str, dict[str, str]]):
    """``n`` `engine search` processes started together, joining the session's Ray (``ray``
    from the ``shared_ray`` fixture: separate drivers, as on a cluster, without n Ray starts);
    on exit every one still alive is killed, with any process left in their sessions
    (``search_process``)."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(search_process(spec_path, url, cwd, ray)) for _ in range(n)]


def _finish(procs: list[subprocess.Popen], timeout: float = 420) -> list[str]:
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        outs.append(out)
    return outs


def _check_shared_budget(url: str, name: str, n_trials: int, outs: list[str],
                         procs: list[subprocess.Popen]) -> None:
    assert [p.returncode for p in procs] == [0] * len(procs), "\n---\n".join(o[-2500:] for o in outs)
    trials = load_study(url, name).trials
    trained = [t for t in trials if TrialRecord.read(t).counts_as_trained]
    assert len(trained) == n_trials, [(t.number, t.state.name) for t in trials]
    assert all(t.state == TrialState.COMPLETE for t in trained)
    # Each driver draws from its own random stream: with one seed for all, they would train
    # the same parameters side by side.
    dropouts = [t.params["wavemix.dropout"] for t in trained]
    assert len(set(dropouts)) == len(dropouts), dropouts
    # No driver failed a trial that a live peer owned.
    assert not [t for t in trials if t.state == TrialState.FAIL], [
        (t.number, t.user_attrs) for t in trials if t.state == TrialState.FAIL]
    # Every driver ran (each recorded itself on the study) and ended cleanly.
    records = [v for k, v in load_study(url, name).user_attrs.items()
               if k.startswith(schema.DRIVER_PREFIX)]
    assert len(records) == len(procs) and {r["state"] for r in records} == {"finished"}


def test_two_drivers_on_a_new_sqlite_study_finish_exactly_the_budget(tmp_path, shared_ray):
    f = write_spec(tmp_path / "s.yaml", _spec("shared", n_trials=4))
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with _drivers(f, url, 2, tmp_path, shared_ray) as procs:
        outs = _finish(procs)
    _check_shared_budget(url, "shared", 4, outs, procs)


@pytest.mark.postgres
def test_three_drivers_on_a_new_postgresql_study_finish_exactly_the_budget(tmp_path, shared_ray):
    f = write_spec(tmp_path / "p.yaml", _spec("shared-pg", n_trials=5))
    with temp_database() as url, _drivers(f, url, 3, tmp_path, shared_ray) as procs:
        outs = _finish(procs)
        _check_shared_budget(url, "shared-pg", 5, outs, procs)


def test_a_killed_driver_leaves_its_trial_to_the_survivor(tmp_path, shared_ray):
    """SIGKILL one of two drivers mid-trial: the other fails that trial as interrupted (its
    owner's process is gone), runs its parameters again, and finishes the whole budget."""
    f = write_spec(tmp_path / "k.yaml", _spec("killed", n_trials=4, epochs=3))
    url = f"sqlite:///{tmp_path / 'k.db'}"
    with _drivers(f, url, 2, tmp_path, shared_ray) as (victim, survivor):
        wait_for_line(victim, "epoch 1/3")
        victim.kill()
        killed_at = time.time()
        victim.wait()
        out, _ = survivor.communicate(timeout=420)
    assert survivor.returncode == 0, out[-3000:]
    study = load_study(url, "killed")
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs[schema.TRIAL_FAIL_REASON] == \
        schema.INTERRUPTED_REASON
    dead = failed[0]
    # Detected from the dead pid within a heartbeat or two, well before the grace period.
    detected_s = dead.datetime_complete.timestamp() - killed_at
    assert detected_s < 15, detected_s
    rerun = [t for t in study.trials if t.number > dead.number and t.params == dead.params]
    assert rerun and rerun[0].state == TrialState.COMPLETE
    assert sum(TrialRecord.read(t).counts_as_trained for t in study.trials) == 4
    print(f"dead driver's trial failed {detected_s:.1f} s after the kill")


@pytest.mark.postgres
def test_a_postgresql_restart_mid_search_loses_nothing(tmp_path, shared_ray):
    server = PrivateServer()
    try:
        with temp_database(server.admin_url) as url:
            f = write_spec(tmp_path / "r.yaml", _spec("restart", n_trials=3, epochs=3))
            with _drivers(f, url, 1, tmp_path, shared_ray) as (proc,):
                lines = wait_for_line(proc, "trial 0 COMPLETE")
                server.restart()
                restarted_at = time.time()
                out, _ = proc.communicate(timeout=420)
            assert proc.returncode == 0, "".join(lines)[-2000:] + out[-3000:]
            trials = load_study(url, "restart").trials
            assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
            assert all(len(t.intermediate_values) == 3 for t in trials)
            assert any(t.datetime_complete.timestamp() > restarted_at for t in trials)
    finally:
        server.stop()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_eight_concurrent_trials_lose_no_report(tmp_path, backend, ray_local):
    """8 tiny trials at once (a quarter CPU each), reporting every epoch: every intermediate
    value and every final value arrives."""
    from engine.search import run_search
    from engine.spec import SearchSpec

    raw = _spec(f"load-{backend}", n_trials=8, epochs=4, max_concurrent=8)
    raw["resources"] = {"cpus": 0.25, "gpus": 0}
    spec = SearchSpec.model_validate(raw)
    with contextlib.ExitStack() as stack:
        url = (f"sqlite:///{tmp_path / 'load.db'}" if backend == "sqlite"
               else stack.enter_context(temp_database()))
        lines: list[str] = []
        run_search(spec, storage_url=url, progress=lines.append)
        trials = load_study(url, spec.study.name).trials
        reports = sum(len(t.intermediate_values) for t in trials)
        finals = sum(t.values is not None and len(t.values) == 2 for t in trials)
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 8, lines
        assert reports == 8 * 4 and finals == 8
        assert max(int(ln.split("running")[0].split(",")[-1]) for ln in lines
                   if ln.startswith("progress:") and "running" in ln) >= 2  # they overlapped
        print(f"{backend}: {reports} intermediate values, {finals} final values")

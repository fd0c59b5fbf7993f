"""A real Ray cluster of two nodes (head + worker, token auth on) running one search into a
PostgreSQL study; the worker node is killed mid-trial."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time

import pytest
from optuna.trial import TrialState

from storage import load_study, schema
from tests._pg import temp_database
from tests.conftest import ROOT, engine_env, kill_session, spawn, tiny_spec_dict, write_spec

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _read_until(proc: subprocess.Popen, pred, timeout: float, seen: list[str]) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if pred(line):
            return line
    raise AssertionError("never saw the expected line:\n" + "".join(seen)[-3000:])


def test_a_search_spans_two_nodes_and_survives_losing_one(tmp_path):
    env = {**engine_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    raw = tiny_spec_dict("cluster", data={"train_size": 600, "val_size": 100},
                         model={"wavemix": {"final_dim": 8, "depth": 1, "level": 1,
                                            "dropout": {"type": "float", "low": 0.0,
                                                        "high": 0.2}}},
                         train={"epochs": 6, "batch_size": 8, "switch_epoch": 3},
                         search={"sampler": "random", "n_trials": 4, "max_concurrent": 2},
                         resources={"cpus": 1, "gpus": "auto"})
    spec = write_spec(tmp_path / "c.yaml", raw)
    cluster = spawn([sys.executable, "-m", "tests._ray_cluster"], cwd=ROOT, env=env,
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    driver = None
    try:
        info = json.loads(cluster.stdout.readline())
        with temp_database() as url:
            driver = spawn(
                [sys.executable, "-m", "engine.cli", "search", str(spec), "--storage", url,
                 "--ray-address", info["address"]], cwd=tmp_path, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            seen: list[str] = []
            # Both nodes busy: two trials have each finished an epoch.
            started: set[str] = set()

            def two_running(line: str) -> bool:
                if "epoch 1/6" in line:
                    started.add(line.split("trial ")[1].split()[0])
                return len(started) >= 2

            _read_until(driver, two_running, 300, seen)
            study = load_study(url, "cluster")
            nodes = {t.number: t.user_attrs.get(schema.TRIAL_NODE) for t in study.trials
                     if t.state == TrialState.RUNNING}
            victims = [n for n, node in nodes.items() if node == info["worker_node_id"]]
            assert victims, (nodes, info)
            cluster.stdin.write("kill-worker\n")
            cluster.stdin.flush()
            assert cluster.stdout.readline().strip() == "killed"
            out, _ = driver.communicate(timeout=600)
            log = "".join(seen) + out
            assert driver.returncode == 0, log[-3000:]
            trials = load_study(url, "cluster").trials
            assert not [t for t in trials if t.state == TrialState.RUNNING], log[-2000:]
            lost = next(t for t in trials if t.number == victims[0])
            # The trial on the lost node ends FAIL with the reason; the search goes on.
            assert lost.state == TrialState.FAIL, log[-2000:]
            assert lost.user_attrs[schema.TRIAL_FAIL_REASON].startswith("worker error:")
            ran_on = {t.user_attrs.get(schema.TRIAL_NODE) for t in trials}
            assert {info["head_node_id"], info["worker_node_id"]} <= ran_on
            done = [t for t in trials if t.state == TrialState.COMPLETE]
            assert len(done) == 3 and all(t.user_attrs[schema.TRIAL_NODE] == info["head_node_id"]
                                          for t in done if t.number > victims[0])
            print(f"nodes per trial: {[(t.number, t.state.name, t.user_attrs.get(schema.TRIAL_NODE, '')[:8]) for t in trials]}")
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait()
        if cluster.poll() is None:
            try:
                cluster.stdin.write("quit\n")
                cluster.stdin.flush()
                cluster.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                cluster.kill()
                cluster.wait()
        kill_session(cluster.pid)
        if driver is not None:
            kill_session(driver.pid)

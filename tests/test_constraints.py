"""The caps: candidates over them are recorded infeasible before training; Ray packs trials
by predicted memory where the cluster offers a gpu_mem_mb resource."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from optuna.trial import TrialState

from engine.search import prepare_study, run_search
from engine.spec import SearchSpec
from storage import TrialRecord, load_study, pareto_numbers, schema, trial_rows
from tests.conftest import ROOT, tiny_spec_dict

pytestmark = pytest.mark.slow


def _spec(name: str, **constraints) -> SearchSpec:
    return SearchSpec.model_validate(tiny_spec_dict(
        name, model={"wavemix": {"final_dim": {"type": "categorical", "choices": [8, 32]},
                                 "depth": 2, "level": 1}},
        train={"epochs": 2, "switch_epoch": 1},
        constraints=constraints,
        search={"sampler": "tpe", "n_trials": 3, "max_concurrent": 2, "seed": 0}))


def test_over_cap_candidates_are_recorded_infeasible_not_trained(ray_local, sqlite_url):
    from engine.data import load_data

    spec = _spec("caps", gpu_ram_mb=1.5, max_params=20_000)
    study = prepare_study(spec, sqlite_url, load_data(spec.data))
    for fd in (8, 32, 8):  # fd 32: ~2.9 MB predicted at batch 32 and ~40k parameters
        study.enqueue_trial({"wavemix.final_dim": fd})
    run_search(spec, storage_url=sqlite_url, progress=lambda _: None)
    study = load_study(sqlite_url, "caps")
    small, big, again = study.trials[:3]
    assert [t.state for t in study.trials[:3]] == [TrialState.COMPLETE] * 3
    # The screened-out candidate does not count: 3 trained trials make the budget.
    assert sum(TrialRecord.read(t).counts_as_trained for t in study.trials) == 3
    reason = big.user_attrs[schema.TRIAL_STATE_REASON]
    assert reason.startswith("predicted ") and "MB > cap 1.5 MB" in reason
    assert "parameters > max_params 20,000" in reason
    assert big.user_attrs[schema.TRIAL_TRAINED] is False
    assert not big.intermediate_values  # never trained
    assert big.constraints["gpu_ram_mb"] > 0 and big.constraints["max_params"] > 0
    assert big.user_attrs[schema.TRIAL_PEAK_MEMORY_MB] > 1.5
    for t in (small, again):
        assert t.user_attrs[schema.TRIAL_TRAINED] is True
        assert all(v <= 0 for v in t.constraints.values())
    assert big.number not in pareto_numbers(study)
    row = {r.number: r for r in trial_rows(study)}[big.number]
    assert row.category == "infeasible" and row.val_accuracy is None  # shown as not trained


PACKING = """
import json, sys, ray
from engine.search import run_search
from engine.spec import SearchSpec
from storage import load_study
spec = SearchSpec.model_validate(json.loads(sys.argv[1]))
# A node offering 3 MiB of 'GPU memory': two trials asking 2 MiB each (1.3 MiB predicted,
# rounded up) cannot run at the same time, though there are CPUs for both; the third candidate
# (final_dim 64, ~9 MiB) could never be placed and must be refused, not left pending.
ray.init(address="local", num_cpus=2, resources={"gpu_mem_mb": 3}, include_dashboard=False,
         log_to_driver=False, object_store_memory=128 * 2**20)
try:
    from engine.data import load_data
    from engine.search import prepare_study
    study = prepare_study(spec, sys.argv[2], load_data(spec.data))
    for fd in (16, 64, 16):
        study.enqueue_trial({"wavemix.final_dim": fd})
    run_search(spec, storage_url=sys.argv[2], progress=lambda _: None)
finally:
    ray.shutdown()
trials = load_study(sys.argv[2], spec.study.name).trials
spans = [(t.user_attrs["run_started_at"], t.datetime_complete.timestamp()) for t in trials
         if t.user_attrs.get("trained")]
reasons = [t.user_attrs.get("state_reason") for t in trials if not t.user_attrs.get("trained")]
print("SPANS", json.dumps({"spans": spans, "refused": reasons}))
"""


def test_trials_are_packed_by_predicted_memory(tmp_path):
    raw = tiny_spec_dict("pack", model={"wavemix": {"final_dim": {"type": "categorical",
                                                                  "choices": [16, 64]},
                                                    "depth": 2}},
                         train={"epochs": 2, "switch_epoch": 1},
                         search={"sampler": "random", "n_trials": 3, "max_concurrent": 2})
    url = f"sqlite:///{tmp_path / 'pack.db'}"
    proc = subprocess.run([sys.executable, "-c", PACKING, json.dumps(raw), url], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.split("SPANS", 1)[1])
    # The fd-64 candidate (and any later one like it) is refused, never left pending; the
    # refusals do not count, so the budget's 3 trained trials are all small ones.
    assert got["refused"] and all("the most GPU memory any node" in r for r in got["refused"])
    spans = sorted(got["spans"])
    assert len(spans) == 3
    for (_, e0), (s1, _) in zip(spans, spans[1:], strict=False):
        assert s1 >= e0 - 0.5, f"trials overlapped although together they exceed the node: {got}"


def test_a_space_with_nothing_under_the_caps_stops_before_any_training(tmp_path):
    """Not even the smallest corner of the space fits: exit 2 at once, naming the smallest
    predicted memory and size found and the cap; nothing trained."""
    from tests.conftest import engine_env, write_spec

    raw = tiny_spec_dict("nofit", constraints={"gpu_ram_mb": 0.05},
                         model={"wavemix": {"final_dim": {"type": "int", "low": 8, "high": 16,
                                                          "step": 8},
                                            "depth": {"type": "int", "low": 1, "high": 2},
                                            "wavelet": {"type": "categorical",
                                                        "choices": ["haar", "db2"]}}})
    f = write_spec(tmp_path / "nofit.yaml", raw)
    url = f"sqlite:///{tmp_path / 'nofit.db'}"
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "search", str(f), "--storage", url],
                          cwd=tmp_path, env=engine_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    err = errors[0]
    assert "no candidate fits the caps (the space's smallest corner)" in err
    assert "wavemix (final_dim=8, depth=1" in err and "MB > cap 0.05 MB" in err, err
    assert "parameters" in err and "raise constraints.gpu_ram_mb" in err
    assert not any("scheduled" in ln for ln in proc.stdout.splitlines())
    study = load_study(url, "nofit")
    assert not [t for t in study.trials if t.user_attrs.get(schema.TRIAL_TRAINED)]

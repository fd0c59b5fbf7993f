"""The console script as users run it: search, resume, studies, export, and Ray cleaned up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import engine_env, kill_pids, new_ray_pids, ray_pids, tiny_spec_dict, write_spec

pytestmark = pytest.mark.slow

def _engine(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=cwd, env=engine_env(),
                          capture_output=True, text=True, timeout=600)


def test_search_resume_export_and_no_ray_left_behind(tmp_path):
    spec = tiny_spec_dict("cli", search={"n_trials": 2, "max_concurrent": 2, "sampler": "random"},
                          train={"epochs": 2})
    f = write_spec(tmp_path / "cli.yaml", spec)
    url = "sqlite:///cli.db"  # relative, as users write it: trial processes run elsewhere
    before = ray_pids()

    first = _engine("search", str(f), "--storage", url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    assert "trial 0 scheduled" in out and "trial 1 scheduled" in out
    assert "study 'cli': 2 trials (" in out and "infeasible" not in out
    assert "Pareto front" in out

    # Every Ray process the command started is gone once it has exited.
    leftover = new_ray_pids(before)
    kill_pids(leftover)
    assert not leftover, "Ray processes left running"

    again = _engine("search", str(f), "--storage", url, cwd=tmp_path)
    assert again.returncode == 0
    assert "2 finished, 0 to run" in again.stdout

    listed = _engine("studies", "--storage", url, cwd=tmp_path)
    assert listed.stdout.startswith("cli\t2 trials")

    ckpt = tmp_path / "out" / "best.pt"
    exported = _engine("export", "--study", "cli", "--storage", url, "--out", str(ckpt), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert ckpt.exists() and "wrote" in exported.stdout

    missing = _engine("export", "--study", "nope", "--storage", url, "--out", str(tmp_path / "x.pt"),
                      cwd=tmp_path)
    assert missing.returncode == 2
    assert "no study named 'nope'" in missing.stderr and "cli" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_resources_the_cluster_lacks_are_refused(tmp_path):
    spec = tiny_spec_dict("gpu", resources={"cpus": 1, "gpus": 1})
    f = write_spec(tmp_path / "gpu.yaml", spec)
    proc = _engine("search", str(f), "--storage", f"sqlite:///{tmp_path / 'g.db'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "resources.gpus = 1.0 per trial" in proc.stderr and "wait forever" in proc.stderr

"""Shared fixtures: one local Ray for the whole session, small specs, temporary storages."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2-core CI: trials and tests must not oversubscribe


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray shared by every test that runs a search; shut down (its processes stopped) at the end."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING", object_store_memory=128 * 2**20)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def shared_ray(ray_local) -> tuple[str, dict[str, str]]:
    """(address, environment) with which an `engine search` subprocess joins the session's
    Ray instead of starting its own (seconds and ~700 MB saved per driver). Ray's token
    authentication is on: the joining process presents the token this Ray wrote."""
    address = ray_local.get_runtime_context().gcs_address
    token = Path.home() / ".ray" / "auth_token"
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)} if token.exists() else {}
    return address, env


def tiny_spec_dict(name: str = "tiny", **overrides) -> dict:
    """A digits search small enough for a test: tiny WaveMix models, a few epochs."""
    spec = {
        "study": {"name": name},
        "data": {"dataset": "digits", "train_size": 600, "val_size": 120, "val_fraction": 0.25},
        "model": {"wavemix": {
            "final_dim": {"type": "int", "low": 8, "high": 16, "step": 8},
            "depth": {"type": "int", "low": 1, "high": 2},
            "level": 1,
            "dropout": {"type": "float", "low": 0.0, "high": 0.2},
        }},
        "train": {"epochs": 3, "batch_size": 32, "optimizer": "dualopt",
                  "switch_epoch": {"type": "int", "low": 1, "high": 2}, "lr": 0.01, "sgd_lr": 0.01},
        "objectives": [{"metric": "val_accuracy", "direction": "maximize"},
                       {"metric": "peak_memory_mb", "direction": "minimize"}],
        "constraints": {"gpu_ram_mb": 512},
        "search": {"sampler": "tpe", "n_trials": 4, "max_concurrent": 2, "seed": 0},
        "resources": {"cpus": 1, "gpus": 0},
    }
    for section, value in overrides.items():
        if isinstance(value, dict) and isinstance(spec.get(section), dict):
            spec[section] = {**spec[section], **value}
        else:
            spec[section] = value
    return spec


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture(scope="session")
def finished_search(ray_local, tmp_path_factory):
    """A real 4-trial search on digits (Ray Tune + SQLite), shared by the tests that read it."""
    from engine.search import run_search
    from engine.spec import SearchSpec

    url = f"sqlite:///{tmp_path_factory.mktemp('search') / 'study.db'}"
    spec = SearchSpec.model_validate(tiny_spec_dict("e2e"))
    lines: list[str] = []
    out = run_search(spec, storage_url=url, progress=lines.append)
    return spec, url, out, lines


# -- processes: tests stop every process they start, by its id (never `ray stop`) ---------
RAY_MARKERS = ("raylet", "gcs_server", "ray::", "ray/_private", "dashboard/agent", "runtime_env/agent")


def _cmdlines() -> Iterator[tuple[int, str]]:
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                yield int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace")
            except OSError:
                continue


def ray_pids() -> set[int]:
    """Every Ray process on the machine (compare before/after to find a test's own)."""
    return {pid for pid, cmd in _cmdlines() if any(m in cmd for m in RAY_MARKERS)}


def trial_worker_pids() -> set[int]:
    """Ray worker processes currently executing a trial (their process title names it)."""
    return {pid for pid, cmd in _cmdlines()
            if cmd.startswith("ray::ImplicitFunc") or cmd.startswith("ray::run_trial")}


def new_ray_pids(before: set[int], grace_s: float = 20.0) -> set[int]:
    """Ray processes started since ``before`` that are still alive after ``grace_s`` seconds."""
    deadline = time.time() + grace_s
    while (ray_pids() - before) and time.time() < deadline:
        time.sleep(0.5)
    return ray_pids() - before


def kill_pids(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def engine_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


@contextlib.contextmanager
def search_process(spec_path: Path, url: str, cwd: Path,
                   ray: tuple[str, dict[str, str]] | None = None) -> Iterator[subprocess.Popen]:
    """`engine search SPEC --storage URL` as a child process (stdout+stderr piped, text),
    joining ``ray`` (see ``shared_ray``) or starting its own. On exit the child is killed if
    still alive, and so are the Ray processes it left behind (a joined Ray stays)."""
    before = ray_pids()
    args, env = ([], engine_env()) if ray is None else (
        ["--ray-address", ray[0]], {**engine_env(), **ray[1]})
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "search", str(spec_path),
                             "--storage", url, *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_pids(ray_pids() - before)


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 240) -> list[str]:
    """Read ``proc``'s stdout line by line until one contains ``needle``; the lines read.
    Fails (with the last output) when the process ends or ``timeout`` passes first."""
    lines, deadline = [], time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"never saw {needle!r}:\n{''.join(lines)[-3000:]}")

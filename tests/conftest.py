"""Shared fixtures: one local Ray for the whole session, small specs, temporary storages."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from app.runs import session_pids  # the app's own: a launched search and what it started

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2-core CI: trials and tests must not oversubscribe


def pytest_configure(config: pytest.Config) -> None:
    """Before any test (in the controller when test files run in parallel workers): make sure
    Ray's auth token exists. The first Ray started on a machine writes ~/.ray/auth_token and
    every later one reads it; two workers starting their first Ray at once could each write
    a different token, and a driver joining one Ray would present the other's."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    token = Path.home() / ".ray" / "auth_token"
    if not token.exists():
        token.parent.mkdir(parents=True, exist_ok=True)
        part = token.with_suffix(f".{os.getpid()}")
        part.write_text(secrets.token_hex(32))  # Ray's own format: 256 random bits, hex
        os.replace(part, token)


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray shared by every test that runs a search; shut down (its processes stopped) at the end.
    Like a user's local search: token authentication on, every server on 127.0.0.1."""
    import ray

    from engine.search.cluster import bind_to_loopback, require_token_auth

    bind_to_loopback()
    require_token_auth()
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
# Every process a test starts gets a session of its own (`spawn`), and so do the Ray processes
# it starts in turn (Ray does not leave its parent's session). What a test left behind is then
# its child's session: the same check holds when test files run in parallel pytest workers,
# where "Ray processes that appeared since the test began" would include the other worker's.
RAY_MARKERS = ("raylet", "gcs_server", "ray::", "ray/_private", "dashboard/agent", "runtime_env/agent")


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live (not zombie) process."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):  # gone, or not a process
            raw = (d / "stat").read_text()
            fields = raw[raw.rindex(")") + 2:].split()  # after "(comm)": state, ppid, ...
            if fields[0] != "Z":
                out[int(d.name)] = int(fields[1])
    return out


def spawn(args: list[str], **kwargs) -> subprocess.Popen:
    """``subprocess.Popen`` in a new session (its id is the child's pid; ``session_pids``
    lists its processes)."""
    return subprocess.Popen(args, start_new_session=True, **kwargs)


def ray_session_pids(sid: int) -> set[int]:
    """Ray processes of session ``sid`` (a ``spawn``ed child's pid), even those re-parented
    after the child died."""
    return {pid for pid in session_pids(sid) if any(m in _cmdline(pid) for m in RAY_MARKERS)}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (by the parent links in /proc)."""
    parents = _parents()
    out, frontier = set(), {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - out
        out |= frontier
    return out


def trial_worker_pids(under: int) -> set[int]:
    """Ray worker processes executing a trial (their process title names it) among the
    descendants of ``under`` (this test process, for the session's own Ray)."""
    return {pid for pid in descendants(under)
            if _cmdline(pid).startswith(("ray::ImplicitFunc", "ray::run_trial"))}


def lingering(sid: int, grace_s: float = 20.0) -> set[int]:
    """Ray processes of session ``sid`` still alive after ``grace_s`` seconds (a driver's
    shutdown takes a few): what a finished ``engine search`` left running."""
    deadline = time.time() + grace_s
    while ray_session_pids(sid) and time.time() < deadline:
        time.sleep(0.5)
    return ray_session_pids(sid)


def kill_pids(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def kill_session(sid: int) -> None:
    """SIGKILL every process of a ``spawn``ed child's session."""
    kill_pids(session_pids(sid))


def engine_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


@contextlib.contextmanager
def search_process(spec_path: Path, url: str, cwd: Path,
                   ray: tuple[str, dict[str, str]] | None = None) -> Iterator[subprocess.Popen]:
    """`engine search SPEC --storage URL` as a child process in its own session (stdout+stderr
    piped, text), joining ``ray`` (see ``shared_ray``) or starting its own. On exit every
    process of its session is killed: the child if still alive and the Ray processes it
    started (a joined Ray stays)."""
    args, env = ([], engine_env()) if ray is None else (
        ["--ray-address", ray[0]], {**engine_env(), **ray[1]})
    proc = spawn([sys.executable, "-m", "engine.cli", "search", str(spec_path),
                  "--storage", url, *args], cwd=cwd, env=env,
                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_session(proc.pid)


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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def prepared_url(request, tmp_path):
    """A prepared, empty study database of each backend (SQLite file; a PostgreSQL database
    created for the test and dropped after it)."""
    from storage import prepare_database
    from tests._pg import temp_database

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'contract.db'}"
        prepare_database(url)
        yield url
        return
    with temp_database() as url:
        prepare_database(url)
        yield url

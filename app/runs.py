"""Searches started from the app: ``engine search`` child processes and their registry.

Each search runs in its own session (process group) with its spec and log in a folder of its
own under :func:`run_dir`. A registry file there lists them, so a reloaded page, a second tab
or a restarted app still finds them. :meth:`SearchLauncher.stop` sends SIGINT, as Ctrl-C in a
terminal would (the driver re-queues the trials it was running and shuts its Ray down);
:meth:`SearchLauncher.kill` ends the whole group for a search that does not stop. The launcher
that started a search stops it when the app shuts down (:meth:`SearchLauncher.shutdown`), so
the app leaves no orphans.

Nothing here imports streamlit: the pages hold one launcher per server process.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

__all__ = ["RUN_DIR_ENV", "Registry", "SearchLauncher", "SearchRun", "process_alive",
           "run_dir", "session_pids", "tail"]

RUN_DIR_ENV = "WAVESEARCH_RUN_DIR"  # where launched searches keep their spec, log and registry
_ROOT = Path(__file__).resolve().parent.parent


def run_dir() -> Path:
    """The folder of the registry: ``$WAVESEARCH_RUN_DIR``, else a per-user temp folder."""
    env = os.environ.get(RUN_DIR_ENV)
    folder = Path(env) if env else Path(tempfile.gettempdir()) / f"wavesearch-app-{os.getuid()}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (None: no such process)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def _start_ticks(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot): tells a reused pid from ours."""
    fields = _proc_stat(pid)
    return fields[19] if fields else None


def process_alive(pid: int, start_ticks: str | None = None) -> bool:
    """True while ``pid`` runs (not a zombie) and, if given, started at ``start_ticks``."""
    fields = _proc_stat(pid)
    if fields is None:
        return False
    return fields[0] != "Z" and (start_ticks is None or fields[19] == start_ticks)


def session_pids(sid: int) -> set[int]:
    """Every live process of session ``sid`` (a launched search and what it started)."""
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (fields := _proc_stat(int(d.name))) and fields[0] != "Z" \
                and int(fields[3]) == sid:
            out.add(int(d.name))
    return out


def tail(path: str | Path, max_bytes: int = 16_000) -> str:
    """The last ``max_bytes`` of a log file ("" while it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return text if size <= max_bytes else text[text.find("\n") + 1:]


@dataclass(frozen=True)
class SearchRun:
    """One launched search, as the registry records it.

    Attributes:
        id: Folder name under :func:`run_dir` (time, study, random suffix).
        pid: The ``engine search`` process; it leads its own session and process group.
        start_ticks: When ``pid`` started (see :func:`process_alive`).
        owner_pid: The app server that launched it (and stops it when it shuts down).
        storage_url: The storage the search writes to.
        study: The study name in the spec.
        kind: ``"new"`` or ``"resume"``.
        folder: Its folder: ``spec.yaml`` and ``search.log``.
        started_at: Unix time of the launch.
        stop_requested_at: Unix time of the Stop button (None: not asked to stop).
        returncode: Exit status, once known to the launcher that reaped it.
    """

    id: str
    pid: int
    start_ticks: str | None
    owner_pid: int
    storage_url: str
    study: str
    kind: str
    folder: str
    started_at: float
    stop_requested_at: float | None = None
    returncode: int | None = None

    @property
    def log_path(self) -> Path:
        return Path(self.folder) / "search.log"

    @property
    def spec_path(self) -> Path:
        return Path(self.folder) / "spec.yaml"

    def alive(self) -> bool:
        """The search process still runs."""
        return process_alive(self.pid, self.start_ticks)

    @property
    def status(self) -> str:
        """running | stopping | finished | stopped | failed (exit N) | ended."""
        if self.alive():
            return "stopping" if self.stop_requested_at else "running"
        if self.stop_requested_at or self.returncode in (130, -signal.SIGINT):
            return "stopped"
        if self.returncode is None:
            return "ended"
        return "finished" if self.returncode == 0 else f"failed (exit {self.returncode})"


class Registry:
    """The JSON file listing launched searches; every change holds an exclusive file lock."""

    def __init__(self, folder: Path | None = None):
        self.folder = folder or run_dir()
        self.path = self.folder / "runs.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[dict]]:
        with open(self.folder / "runs.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                records = json.loads(self.path.read_text()) if self.path.exists() else []
            except (OSError, ValueError):
                records = []  # a damaged registry forgets old runs rather than breaking the app
            before = json.dumps(records)
            yield records
            if json.dumps(records) != before:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(records, indent=1))
                tmp.replace(self.path)

    def runs(self) -> list[SearchRun]:
        """Every recorded run, newest first."""
        names = {f.name for f in fields(SearchRun)}
        with self._locked() as records:
            runs = []
            for r in records:
                with contextlib.suppress(TypeError):  # a record from another version
                    runs.append(SearchRun(**{k: v for k, v in r.items() if k in names}))
        return sorted(runs, key=lambda r: r.started_at, reverse=True)

    def get(self, run_id: str) -> SearchRun | None:
        return next((r for r in self.runs() if r.id == run_id), None)

    def put(self, run: SearchRun) -> None:
        """Add ``run`` or replace the record with its id."""
        with self._locked() as records:
            records[:] = [r for r in records if r["id"] != run.id] + [asdict(run)]


class SearchLauncher:
    """Starts, stops and reaps the searches of one app server process.

    Args:
        registry: Where runs are recorded (default: the one in :func:`run_dir`).
    """

    def __init__(self, registry: Registry | None = None):
        self.registry = registry or Registry()
        self._children: dict[int, subprocess.Popen] = {}

    def launch(self, spec_text: str, storage_url: str, study: str, *, kind: str = "new",
               extra_args: tuple[str, ...] = ()) -> SearchRun:
        """Write ``spec_text`` to a new run folder and start ``engine search`` on it."""
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", study)[:40]
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{uuid.uuid4().hex[:6]}"
        folder = self.registry.folder / run_id
        folder.mkdir(parents=True)
        (folder / "spec.yaml").write_text(spec_text, encoding="utf-8")
        cmd = [sys.executable, "-m", "engine.cli", "search", str(folder / "spec.yaml"),
               "--storage", storage_url, *extra_args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(p for p in (str(_ROOT), os.environ.get("PYTHONPATH"))
                                             if p)}
        with open(folder / "search.log", "wb") as log:
            log.write(("$ " + " ".join(cmd[1:]) + "\n").encode())
            log.flush()
            # Own session: Ctrl-C in the app's terminal does not reach it; its Ray processes
            # share its process group, so kill() can end them all.
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self._children[proc.pid] = proc
        run = SearchRun(id=run_id, pid=proc.pid, start_ticks=_start_ticks(proc.pid),
                        owner_pid=os.getpid(), storage_url=storage_url, study=study, kind=kind,
                        folder=str(folder), started_at=time.time())
        self.registry.put(run)
        return run

    def runs(self) -> list[SearchRun]:
        """Every recorded run (newest first), with the exit status of children that ended."""
        for pid, proc in list(self._children.items()):
            code = proc.poll()  # also reaps the child, so it does not linger as a zombie
            if code is not None:
                del self._children[pid]
                for run in self.registry.runs():
                    if run.pid == pid and run.owner_pid == os.getpid():
                        self.registry.put(replace(run, returncode=code))
        return self.registry.runs()

    def stop(self, run_id: str) -> bool:
        """Ask a search to stop, like Ctrl-C (SIGINT to its process); False if it has ended."""
        run = self.registry.get(run_id)
        if run is None or not run.alive():
            return False
        os.kill(run.pid, signal.SIGINT)
        self.registry.put(replace(run, stop_requested_at=run.stop_requested_at or time.time()))
        return True

    def kill(self, run_id: str) -> bool:
        """End a search and everything it started (SIGKILL to its process group)."""
        run = self.registry.get(run_id)
        if run is None or not run.alive():
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
        self.registry.put(replace(run, stop_requested_at=run.stop_requested_at or time.time()))
        return True

    def shutdown(self, grace_s: float = 25.0) -> None:
        """Stop every search this process started: SIGINT, then SIGKILL to the groups still
        alive after ``grace_s`` seconds (registered at exit by the app)."""
        mine = [r for r in self.runs() if r.owner_pid == os.getpid() and r.alive()]
        for run in mine:
            self.stop(run.id)
        deadline = time.time() + grace_s
        while time.time() < deadline and any(r.alive() for r in mine):
            for proc in self._children.values():
                proc.poll()
            time.sleep(0.2)
        for run in mine:
            if session_pids(run.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.pid, signal.SIGKILL)
        self.runs()  # record the exit statuses

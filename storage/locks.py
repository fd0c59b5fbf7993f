"""A lock per study database, shared by every process that works on it.

Several ``engine search`` drivers may work on one study at the same time. Two things must not
interleave between them: creating the database's tables (Optuna's and ours), and deciding
whether the budget still allows one more trial before asking Optuna for it. Optuna has no lock
of its own, and holding a database transaction open across Optuna's own calls would deadlock
SQLite, so the lock lives beside the data:

- SQLite (one machine by nature): an exclusive ``flock`` on ``<database file>.lock``;
- PostgreSQL: a session-level advisory lock (``pg_advisory_lock``) keyed by the database name,
  held on a connection of its own;
- MySQL: ``GET_LOCK`` on a named lock, likewise.

The lock is held for milliseconds (a count and an ask); it is released when its holder
exits, even by SIGKILL (the file lock dies with the process, the advisory lock with its
connection). It is re-entrant within a process: code holding it may call code that takes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Iterator

import sqlalchemy as sa

from engine.errors import StorageError

__all__ = ["database_lock", "sqlite_path"]

_WAIT_S = 120.0  # a holder keeps the lock for milliseconds; minutes mean something is stuck


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///FILE`` URL (None for other schemes and in-memory databases).

    A SQLite URI (``sqlite:///file:PATH?uri=true``) names the file ``PATH``, unless it asks
    for ``mode=memory``; without ``uri=true``, ``file:x.db`` is a plain file name.
    """
    if not url.startswith("sqlite"):
        return None
    rest, _, query = url.partition(":///")[2].partition("?")
    if rest.startswith("file:") and "uri=true" in query.lower().split("&"):
        if "mode=memory" in query.lower().split("&"):
            return None
        rest = rest.removeprefix("file:")
    if rest in ("", ":memory:"):
        return None
    return rest


_HELD: dict[str, threading.RLock] = {}  # per database: this process's holders
_DEPTH: dict[str, int] = {}
_REGISTRY = threading.Lock()


@contextlib.contextmanager
def database_lock(url: str) -> Iterator[None]:
    """Hold the lock of the database at ``url`` (see the module docstring).

    Raises:
        StorageError: the lock could not be taken within two minutes.
    """
    with _REGISTRY:
        local = _HELD.setdefault(url, threading.RLock())
    with local:  # threads of this process queue here; the OS lock is taken once
        _DEPTH[url] = _DEPTH.get(url, 0) + 1
        try:
            if _DEPTH[url] > 1:
                yield
            else:
                with _process_lock(url):
                    yield
        finally:
            _DEPTH[url] -= 1


@contextlib.contextmanager
def _process_lock(url: str) -> Iterator[None]:
    path = sqlite_path(url)
    if path is not None:
        with _file_lock(path + ".lock"):
            yield
        return
    if url.startswith(("postgresql", "mysql")):
        with _server_lock(url):
            yield
        return
    yield  # in-memory SQLite: one process by definition


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + _WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StorageError(f"the lock file {path} has been held for {_WAIT_S:.0f} s; "
                                       "another engine process on this database is stuck: stop "
                                       "it, then retry") from None
                time.sleep(0.01)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


_ENGINES: dict[str, sa.Engine] = {}


def _lock_key(url: str) -> int:
    # A signed 63-bit integer from the database part of the URL: the same for every driver
    # whatever user or host spelling it connects with.
    database = sa.engine.make_url(url).database or ""
    return int.from_bytes(hashlib.sha256(f"wavesearch:{database}".encode()).digest()[:8],
                          "big") >> 1


_REACHED: set[str] = set()  # URLs this process has connected to once


def _connect(engine: sa.Engine, url: str) -> sa.Connection:
    """A connection. A server this process reached before is waited for (it is restarting)
    for up to _WAIT_S; one never reached fails at once (a wrong URL should say so now)."""
    deadline, delay = time.monotonic() + _WAIT_S, 0.25
    while True:
        try:
            conn = engine.connect()
            _REACHED.add(url)
            return conn
        except (sa.exc.OperationalError, sa.exc.InterfaceError):
            if url not in _REACHED or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(5.0, delay * 2)


@contextlib.contextmanager
def _server_lock(url: str) -> Iterator[None]:
    engine = _ENGINES.get(url)
    if engine is None:
        engine = _ENGINES[url] = sa.create_engine(url, pool_pre_ping=True, pool_size=1)
    key = _lock_key(url)
    postgres = url.startswith("postgresql")
    with _connect(engine, url) as conn:
        if postgres:
            conn.execute(sa.text("SET lock_timeout = :ms"), {"ms": f"{int(_WAIT_S * 1000)}"})
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        else:
            got = conn.execute(sa.text("SELECT GET_LOCK(:k, :t)"),
                               {"k": f"wavesearch{key}", "t": int(_WAIT_S)}).scalar()
            if got != 1:
                raise StorageError(f"could not take the study lock within {_WAIT_S:.0f} s; "
                                   "another engine process on this database is stuck")
        conn.commit()
        try:
            yield
        finally:
            # A lost connection (server restarted) has released the lock already.
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                if postgres:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                else:
                    conn.execute(sa.text("SELECT RELEASE_LOCK(:k)"), {"k": f"wavesearch{key}"})
                conn.commit()

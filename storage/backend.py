"""Opening Optuna storages by URL, with SQLAlchemy errors translated at the boundary.

Every study database is shared: several drivers, their Ray workers, the app. So a storage
opened here

- creates the database's tables under the database lock (:mod:`storage.locks`), never racing
  another process doing the same;
- records trial heartbeats (``HEARTBEAT_S``): a RUNNING trial whose heartbeat is older than
  ``GRACE_S`` belongs to a dead process (``ResilientRDBStorage.stale_trial_ids``; the search
  fails it as interrupted and queues its parameters again, once);
- rides out a database server restart: every call is retried for up to ``RETRY_S`` while the
  connection is refused or dropped (Optuna never retries, and the first call after a restart
  fails without ``pool_pre_ping``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import re
import sqlite3
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import sqlalchemy.exc

from engine.errors import StorageError
from storage.locks import database_lock, sqlite_path

__all__ = ["GRACE_S", "HEARTBEAT_S", "StudySummary", "call_with_retry", "check_existing_storage",
           "check_search_storage",
           "list_studies",
           "load_study", "normalize_url", "open_storage", "redact"]

HEARTBEAT_S = 5  # seconds between heartbeats of a running trial (Optuna wants an int)
GRACE_S = 20  # a trial without a heartbeat for this long belongs to a dead process
RETRY_S = 120.0  # how long a call keeps retrying while the database is unreachable

log = logging.getLogger(__name__)


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to print)."""
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


def normalize_url(url: str) -> str:
    """Check that ``url`` is a SQLAlchemy database URL and name a PostgreSQL driver.

    A bare ``postgresql://`` means psycopg 3 in SQLAlchemy 2.1; when only psycopg2 is
    installed it is rewritten to ``postgresql+psycopg2://``.
    """
    url = url.strip()
    if "://" not in url:
        raise StorageError(
            f"storage must be a database URL, got {url!r}; write sqlite:///{url or 'wavesearch.db'} "
            "for a local file or postgresql+psycopg2://user@host:5432/db for a server")
    try:
        sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as e:
        raise StorageError(f"storage URL {redact(url)} is malformed ({e}); write "
                           "postgresql+psycopg2://user@host:5432/db, or sqlite:///FILE") from None
    scheme = url.split("://", 1)[0]
    if scheme.startswith("sqlite"):
        return _absolute_sqlite(url)
    if scheme == "postgresql" and importlib.util.find_spec("psycopg") is None:
        url = "postgresql+psycopg2://" + url.split("://", 1)[1]
    elif not (scheme.startswith("postgresql") or scheme.startswith("mysql")):
        raise StorageError(f"unsupported storage scheme {scheme!r} in {redact(url)}; "
                           "use sqlite:///FILE or postgresql+psycopg2://...")
    return url


def _absolute_sqlite(url: str) -> str:
    """Make a relative SQLite path absolute: trial processes run in other directories."""
    head, sep, rest = url.partition(":///")
    path = sqlite_path(url)
    if not sep or path is None or path.startswith("/"):
        return url
    # A SQLite URI (file:PATH?uri=true) keeps its prefix; its path is made absolute likewise.
    prefix = "file:" if rest.startswith("file:") and not rest.startswith(path) else ""
    q, query = rest.partition("?")[1:]
    return f"{head}:///{prefix}{os.path.abspath(os.path.expanduser(path))}{q}{query}"


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine options for every connection WaveSearch opens to a study database:
    SQLite waits up to 60 s on a lock (several writers); servers are pinged before use, so a
    restart is invisible to the next call."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}


# How drivers word "the server is gone, restarting or busy" (psycopg2, pymysql, sqlite3).
_TRANSIENT = ("server closed the connection", "connection refused", "could not connect",
              "terminating connection", "connection to server", "database system is starting up",
              "database system is shutting down", "connection already closed",
              "ssl connection has been closed", "lost connection", "gone away",
              "database is locked")


def _is_disconnect(e: BaseException) -> bool:
    """True for errors that mean "the database is (briefly) unreachable", worth a retry; a
    missing table or a bad statement is not."""
    cause = e.__cause__ if isinstance(e, optuna.exceptions.StorageInternalError) else e
    if isinstance(cause, sqlalchemy.exc.DBAPIError) and cause.connection_invalidated:
        return True
    if isinstance(cause, sqlalchemy.exc.InterfaceError):
        return True
    return isinstance(cause, sqlalchemy.exc.OperationalError) and any(
        word in str(cause).lower() for word in _TRANSIENT)


def call_with_retry(fn: Callable[[], Any], what: str,
                    already_done: type[BaseException] | None = None) -> Any:
    """Call ``fn`` until it succeeds, retrying for up to ``RETRY_S`` while the database is
    unreachable (backing off to 5 s between tries).

    Args:
        fn: The call.
        what: Its name, for the log.
        already_done: An error that, after an earlier attempt was cut off, means that attempt
            was committed (its answer was lost with the connection): then return None.
    """
    deadline = time.monotonic() + RETRY_S
    delay, failed_once = 0.25, False
    while True:
        try:
            return fn()
        except Exception as e:
            if already_done is not None and failed_once and isinstance(e, already_done):
                return None
            if not isinstance(e, (optuna.exceptions.StorageInternalError,
                                  sqlalchemy.exc.SQLAlchemyError)) or not _is_disconnect(e) \
                    or time.monotonic() > deadline:
                raise
            failed_once = True
            log.warning("database unreachable during %s; retrying in %.1f s", what, delay)
            time.sleep(delay)
            delay = min(5.0, delay * 2)


def _retrying(method: Callable) -> Callable:
    done = (optuna.exceptions.UpdateFinishedTrialError
            if method.__name__ == "set_trial_state_values" else None)

    @functools.wraps(method)
    def call(self, *args: Any, **kwargs: Any) -> Any:
        result = call_with_retry(lambda: method(self, *args, **kwargs), method.__name__, done)
        # set_trial_state_values reports success as True; a lost-but-committed call was one.
        return True if result is None and done is not None else result

    return call


class ResilientRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage whose calls are retried while the database is unreachable."""

    def stale_trial_ids(self, study_id: int) -> list[int]:
        """RUNNING trials of the study whose heartbeat is older than the grace period."""
        return self._get_stale_trial_ids(study_id)


for _name in dir(optuna.storages.RDBStorage):
    if _name.startswith(("get_", "set_", "create_new_", "record_", "check_", "delete_",
                         "_get_stale")):
        setattr(ResilientRDBStorage, _name,
                _retrying(getattr(optuna.storages.RDBStorage, _name)))


@functools.lru_cache(maxsize=16)
def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage for ``url`` (cached per process; see the module docstring)."""
    url = normalize_url(url)
    try:
        # Optuna creates its tables here, under the lock; a database that has them already
        # needs none (so reading a study writes no lock file).
        lock = contextlib.nullcontext() if _has_study_tables(url) else database_lock(url)
        with lock, warnings.catch_warnings():
            # Heartbeats are "experimental" in Optuna 5; we rely on them and test them.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return ResilientRDBStorage(url, engine_kwargs=engine_kwargs(url),
                                       heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, ImportError,
            OSError) as e:
        cause = e.__cause__ or e
        raise StorageError(f"cannot open storage {redact(url)}: {type(cause).__name__}: "
                           f"{str(cause).splitlines()[0]}; check that the server is running, the "
                           "URL is right and the database is writable") from e


def _unwritable(path: str) -> str | None:
    """Why a SQLite file (or the folder SQLite writes its journal to) cannot be written, tried
    for real: permission bits do not bind root, but a read-only mount or an immutable file
    does."""
    folder = os.path.dirname(path) or "."
    try:
        if os.path.exists(path):
            with open(path, "ab"):
                pass
        if os.path.isdir(folder):
            probe = os.path.join(folder, f".wavesearch-write-test-{os.getpid()}")
            with open(probe, "wb"):
                pass
            os.unlink(probe)
    except OSError as e:
        return f"{e.filename} is not writable ({e.strerror})"
    return None


def _not_sqlite(path: str) -> str | None:
    """Why an existing, non-empty file is not a SQLite database SQLite can open (read-only
    checks: a damaged file is named before a lock file or a table is written beside it)."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return None  # a new (or empty) file: SQLite makes the database
    with open(path, "rb") as f:
        if f.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
            return f"{path} holds something other than a SQLite database"
    try:
        _sqlite_tables(path)
    except sqlite3.Error as e:
        return f"{path} is a damaged SQLite database ({e})"
    return None


def check_search_storage(url: str) -> str:
    """Refuse storages a search cannot keep its study in; returns the normalized URL.

    Raises:
        StorageError: in-memory SQLite (a search must outlive its process, and its Ray
            workers are other processes), or a SQLite file that cannot be written.
    """
    url = normalize_url(url)
    if url.startswith("sqlite") and sqlite_path(url) is None:
        raise StorageError(f"storage {url!r} is an in-memory database, but a search must outlive "
                           "its process (and its workers run in other processes); use "
                           "sqlite:///FILE.db or postgresql+psycopg2://...")
    path = sqlite_path(url)
    if path is not None:
        problem = "mode=ro" in url and "the URL opens it read-only"
        problem = problem or _unwritable(path)
        if problem:
            raise StorageError(f"storage {url!r}: {problem}, but a search writes its study there "
                               "(and SQLite writes its journal beside it); choose a writable "
                               "file and folder, or fix their permissions")
        problem = _not_sqlite(path)
        if problem:
            raise StorageError(f"storage {url!r}: {problem}; fix: name another file (a new one "
                               "is created), or restore this one from a copy")
    return url


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _sqlite_tables(path: str) -> set[str]:
    """The tables of an existing SQLite file, read through a read-only connection."""
    from urllib.parse import quote

    with contextlib.closing(sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _has_study_tables(url: str) -> bool:
    """True when ``url`` is a SQLite file that already holds Optuna's tables: opening it then
    creates nothing, so no lock (and no lock file) is needed."""
    path = sqlite_path(url)
    if path is None or not os.path.isfile(path):
        return False
    try:
        return "studies" in _sqlite_tables(path)
    except sqlite3.Error:
        return False


def check_existing_storage(url: str) -> str:
    """For commands that only read studies: refuse a storage that holds none, writing nothing
    (no database file, no lock file, no tables); returns the normalized URL.

    A SQLite file must exist and be an Optuna study database, checked through a read-only
    connection; a server database is left to :func:`open_storage` (a server's database exists
    before anyone connects).

    Raises:
        StorageError: naming the path and the fix.
    """
    url = normalize_url(url)
    if not url.startswith("sqlite"):
        return url
    path = sqlite_path(url)
    if path is None:
        raise StorageError(f"storage {url!r} is an in-memory database, which holds no studies; "
                           "fix: name the study database, e.g. --storage sqlite:///wavesearch.db")
    fix = "fix: check --storage (engine search creates the database)"
    if not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "does not exist"
        raise StorageError(f"no study database at {path}: the file {what}; {fix}")
    try:
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as e:
        raise StorageError(f"cannot read the study database {path} ({e.strerror}); fix: check "
                           "its permissions") from None
    if head != _SQLITE_MAGIC:
        what = "an empty file" if not head else "other content"
        raise StorageError(f"{path} is not a SQLite database ({what}); {fix}, or restore the "
                           "file from a copy")
    try:
        tables = _sqlite_tables(path)
    except sqlite3.Error as e:
        raise StorageError(f"{path} is a damaged SQLite database ({e}); {fix}, or restore the "
                           "file from a copy") from None
    if "studies" not in tables:
        raise StorageError(f"{path} is a SQLite database without studies (no Optuna tables); "
                           f"{fix}")
    return url


@dataclass(frozen=True)
class StudySummary:
    """One study in a storage, as listed by the app and the CLI."""

    name: str
    n_trials: int
    directions: tuple[str, ...]
    objectives: tuple[str, ...]


def list_studies(url: str) -> list[StudySummary]:
    """Every study in the storage at ``url``, by name."""
    from storage.record import summary_objectives

    storage = open_storage(url)
    out = []
    for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False):
        out.append(StudySummary(s.study_name, s.n_trials, tuple(d.name.lower() for d in s.directions),
                                summary_objectives(s)))
    return sorted(out, key=lambda s: s.name)


def load_study(url: str, name: str) -> optuna.Study:
    """Load study ``name``; a missing study is a StorageError listing what is there."""
    storage = open_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.study.get_all_study_summaries(storage, False)]
        raise StorageError(f"no study named {name!r} in {redact(url)}; studies there: "
                           f"{', '.join(names) or 'none'}") from None


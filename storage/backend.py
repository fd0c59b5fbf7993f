"""Opening Optuna storages by URL, with SQLAlchemy errors translated at the boundary."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from dataclasses import dataclass
from typing import Any

import optuna
import sqlalchemy.exc

from engine.errors import StorageError

__all__ = ["StudySummary", "list_studies", "load_study", "normalize_url", "open_storage", "redact"]


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
    if not sep or rest.startswith("/") or rest in ("", ":memory:") or rest.startswith("file:"):
        return url
    path, q, query = rest.partition("?")
    return f"{head}:///{os.path.abspath(os.path.expanduser(path))}{q}{query}"


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine options for every connection WaveSearch opens to a study database:
    SQLite waits up to 60 s on a lock (several writers); servers are pinged before use, so a
    restart is invisible to the next call."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}


@functools.lru_cache(maxsize=16)
def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage for ``url`` (cached per process; see :func:`engine_kwargs`)."""
    url = normalize_url(url)
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url))
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, ImportError) as e:
        cause = e.__cause__ or e
        raise StorageError(f"cannot open storage {redact(url)}: {type(cause).__name__}: "
                           f"{str(cause).splitlines()[0]}; check that the server is running and the "
                           "URL is right") from e


@dataclass(frozen=True)
class StudySummary:
    """One study in a storage, as listed by the app and the CLI."""

    name: str
    n_trials: int
    directions: tuple[str, ...]
    objectives: tuple[str, ...]


def list_studies(url: str) -> list[StudySummary]:
    """Every study in the storage at ``url``, by name."""
    from storage.schema import STUDY_OBJECTIVES

    storage = open_storage(url)
    out = []
    for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False):
        objectives = tuple(s.user_attrs.get(STUDY_OBJECTIVES, ()))
        out.append(StudySummary(s.study_name, s.n_trials, tuple(d.name.lower() for d in s.directions),
                                objectives))
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

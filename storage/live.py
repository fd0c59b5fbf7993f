"""Studies kept open for a long-lived reader (the app): each re-read fetches only what changed.

A finished Optuna trial never changes again (Optuna refuses writes to it), so a reader that
keeps one :class:`optuna.Study` open re-reads only the trials that were unfinished at its
last read and the ones added since: Optuna's cached storage (``_CachedStorage``, which
``optuna.load_study`` wraps every RDB storage in) does exactly that, and :class:`StudyReader`
keeps the :class:`TrialRecord` of each finished trial so it is built once. At 1,000 trials a
re-read costs milliseconds where a fresh read costs a second.

The cheap questions (how many studies, which changed, when was one last active) never load
trials: :func:`listing`, :func:`activity` and :func:`change_mark` count with SQL
(:mod:`storage.record.counts`).
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import optuna
import sqlalchemy.exc
from optuna.trial import FrozenTrial

from engine.errors import StorageError
from storage import optuna_api
from storage.backend import call_with_retry, load_study, open_storage, redact
from storage.record import StudyRecord, TrialRecord
from storage.record.counts import ChangeMark, study_activity, study_listing
from storage.record.counts import change_mark as _change_mark

__all__ = ["ChangeMark", "StudyReader", "StudySnapshot", "activity", "change_mark", "listing",
           "reader", "snapshot"]


@dataclass(frozen=True)
class StudySnapshot:
    """A study as read at one moment: its record and every trial, in number order.

    Attributes:
        record: The study's record (objectives, caps, spec, budget, drivers).
        trials: Optuna's trials (what ``optuna.visualization`` takes).
        records: The same trials as records (``records[i]`` is ``trials[i]``).
    """

    record: StudyRecord
    trials: tuple[FrozenTrial, ...]
    records: tuple[TrialRecord, ...]

    @classmethod
    def of(cls, study: optuna.Study) -> StudySnapshot:
        """A snapshot of ``study`` read now."""
        trials = tuple(study.get_trials(deepcopy=False))
        return cls(StudyRecord.read(study), trials, tuple(TrialRecord.read(t) for t in trials))


class StudyReader:
    """One study, kept open; :meth:`read` returns a fresh snapshot, re-reading only trials
    that were unfinished or new (thread-safe: the app's sessions share one reader)."""

    def __init__(self, url: str, name: str):
        self.url, self.name = url, name
        self._study = load_study(url, name)
        self._done: dict[int, TrialRecord] = {}  # storage id -> record of a finished trial
        self._lock = threading.Lock()

    def read(self) -> StudySnapshot:
        """The study now."""
        with self._lock:
            trials = tuple(call_with_retry(lambda: self._study.get_trials(deepcopy=False),
                                           "read trials"))
            records = []
            for t in trials:
                tid = optuna_api.trial_id(t)
                r = self._done.get(tid)
                if r is None:
                    r = TrialRecord.read(t)
                    if r.finished:
                        self._done[tid] = r
                records.append(r)
            return StudySnapshot(StudyRecord.read(self._study), trials, tuple(records))


@functools.lru_cache(maxsize=32)
def reader(url: str, name: str) -> StudyReader:
    """The process's reader of study ``name`` at ``url`` (raises StorageError if missing)."""
    return StudyReader(url, name)


def snapshot(url: str, name: str) -> StudySnapshot:
    """Study ``name`` now, read incrementally through the process's reader.

    Raises:
        StorageError: no such study (any more: a study deleted and made again under its
            name is opened afresh).
    """
    try:
        return reader(url, name).read()
    except KeyError:
        reader.cache_clear()
        return reader(url, name).read()


def _engine(url: str):
    return open_storage(url).engine


def _sql(what: str, url: str, fn):
    try:
        return call_with_retry(fn, what)
    except sqlalchemy.exc.SQLAlchemyError as e:
        raise StorageError(f"cannot read {redact(url)} ({what}): {type(e).__name__}: "
                           f"{str(e).splitlines()[0]}; check that the server is running and "
                           "the URL is right") from e


def listing(url: str) -> list[tuple[str, int]]:
    """``(name, number of trials)`` of every study at ``url``, by name (one query)."""
    return _sql("list studies", url, lambda: study_listing(_engine(url)))


def activity(url: str) -> dict[str, float]:
    """Study -> Unix time of its latest activity (trial asked or ended, driver heartbeat)."""
    return _sql("study activity", url, lambda: study_activity(_engine(url)))


def change_mark(url: str, name: str) -> ChangeMark | None:
    """What study ``name`` looks like now, by a few counts (None: no such study)."""
    return _sql("look for changes", url, lambda: _change_mark(_engine(url), name))

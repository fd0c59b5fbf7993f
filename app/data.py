"""Cached reads of the study storage, for every page.

Nothing here loads every trial on a page run. The list of studies, their activity and a
study's change mark are SQL counts (:mod:`storage.live`), polled every second or two. The
trials are read through a reader kept open per study, which fetches only the trials that
changed since its last read, and only when the change mark moved; what is built from them
(rows, configs, figures) is cached under the mark's token, so a page switch on an unchanged
study re-reads nothing.

Heavy results are cached with ``st.cache_resource`` (shared, not copied: ``st.cache_data``
would pickle 1,000 rows on every hit); callers treat them as read-only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from engine.errors import StorageError
from storage import (
    DriverInfo,
    SearchProgress,
    StudySnapshot,
    TrialRecord,
    TrialRow,
    cap_for,
    change_mark,
    normalize_url,
    progress_of,
    rows_of,
    snapshot,
)
from storage import activity as _activity
from storage import listing as _listing

__all__ = ["StorageCheck", "StudyInfo", "StudyProbe", "activity", "check_storage", "configs",
           "info", "probe", "records", "rows", "studies", "study_snapshot"]

PROBE_TTL_S = 1.0  # the watcher polls every couple of seconds; this only merges bursts


@dataclass(frozen=True)
class StorageCheck:
    """A typed storage URL, judged before anything opens it.

    Attributes:
        url: The normalised URL (None when it is not a usable database URL).
        problem: Why it cannot be read, in words (None: it can).
        missing_file: A SQLite file that does not exist yet (a search started from the app
            would create it; the pages must not, as opening it would).
    """

    url: str | None
    problem: str | None = None
    missing_file: bool = False


def check_storage(text: str) -> StorageCheck:
    """Judge a typed storage URL without creating anything."""
    try:
        url = normalize_url(text)
    except StorageError as e:
        return StorageCheck(None, str(e))
    if url.startswith("sqlite"):
        rest = url.partition(":///")[2].partition("?")[0]
        if rest and rest != ":memory:" and not rest.startswith("file:"):
            path = Path(rest)
            if not path.exists():
                where = "" if path.parent.is_dir() else f" (and its folder {path.parent} is missing)"
                return StorageCheck(url, f"no database file at {path}{where}; check the path, or "
                                         "start a search on the New search page to create it",
                                    missing_file=True)
            if path.is_dir():
                return StorageCheck(None, f"{path} is a folder, not a database file")
            if not _holds_studies(path):
                return StorageCheck(None, f"{path} is not a study database (no Optuna tables); "
                                          "check the path")
    return StorageCheck(url)


def _holds_studies(path: Path) -> bool:
    """An empty file, or a SQLite database with Optuna's tables: opening anything else would
    add Optuna's tables to someone else's database (read-only look, nothing is written)."""
    if path.stat().st_size == 0:
        return True
    try:
        with contextlib.closing(sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)) as db:
            found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                               "name = 'studies'").fetchone()
    except sqlite3.Error:
        return False
    return found is not None


@dataclass(frozen=True)
class StudyInfo:
    """What a study records about itself (objectives, caps, its spec)."""

    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    cap_mb: float | None
    max_params: int | None
    spec: dict[str, Any] | None
    spec_hash: str | None
    constraints: dict[str, Any] = dataclasses.field(default_factory=dict)

    def cap_for(self, metric: str) -> float | None:
        """The cap on ``metric`` (None: uncapped)."""
        return cap_for(metric, self.constraints)


@dataclass(frozen=True)
class StudyProbe:
    """A study's progress and its data version.

    Attributes:
        token: Changes whenever a trial is added, changes state or reports an epoch, and
            when a driver starts, stops or goes quiet; heavy reads are cached under it.
        progress: Finished / budget, running trials, live drivers, ETA (with fallbacks:
            the spec's budget when the study records none; an estimate from the elapsed
            time when no driver gives one).
        drivers: The search processes that recorded themselves on the study.
        eta_estimated: The ETA is the app's estimate, not a driver's.
        finished_token: Changes only when a trial finishes: figures of finished trials (the
            analysis page) are cached under it, so they are not recomputed every epoch.
        eta_pending: No trial of this run has finished yet: any ETA would be a guess
            (the first trial also pays for start-up), so none is shown.
    """

    token: tuple
    progress: SearchProgress
    drivers: tuple[DriverInfo, ...]
    eta_estimated: bool = False
    finished_token: tuple = ()
    eta_pending: bool = False

    @property
    def live(self) -> bool:
        """Trials running or a driver alive: the pages refresh themselves."""
        return self.progress.running > 0 or self.progress.live_drivers > 0


@st.cache_data(ttl=PROBE_TTL_S, show_spinner=False)
def studies(url: str) -> list[tuple[str, int]]:
    """``(name, n_trials)`` of every study, by name (one SQL count)."""
    return _listing(url)


@st.cache_data(ttl=PROBE_TTL_S, show_spinner=False)
def token(url: str, study: str) -> tuple:
    """The data version of ``study`` from a few SQL counts (raises StorageError: no study)."""
    mark = change_mark(url, study)
    if mark is None:
        raise StorageError(f"no study named {study!r} (deleted meanwhile?)")
    return mark.token


def probe(url: str, study: str) -> StudyProbe:
    """The progress and data version of ``study``: the trials are read (incrementally) only
    when its counts changed."""
    return _probe(url, study, token(url, study))


@st.cache_resource(max_entries=64, show_spinner=False)
def study_snapshot(url: str, study: str, token: tuple) -> StudySnapshot:
    """The study's record and trials at data version ``token`` (read-only)."""
    return snapshot(url, study)


@st.cache_resource(max_entries=64, show_spinner=False)
def _probe(url: str, study: str, token: tuple) -> StudyProbe:
    snap = study_snapshot(url, study, token)
    trials = snap.records
    progress = progress_of(snap)
    spec_search = snap.record.spec_search
    if progress.n_trials is None and progress.budget_epochs is None:
        # Studies begun before the budget was recorded: the spec's budget.
        progress = dataclasses.replace(progress, n_trials=spec_search.get("n_trials"),
                                       budget_epochs=spec_search.get("budget_epochs"))
    ds = snap.record.drivers
    eta, pending = None, False
    if progress.running > 0 or progress.live_drivers > 0:
        done = _done_this_run(trials, ds)
        pending = done == 0
        if progress.eta_s is None:
            eta = _estimate_eta(trials, ds, progress, done)
            progress = dataclasses.replace(progress, eta_s=eta)
    finished = tuple(t.number for t in trials if t.finished)
    return StudyProbe(token, progress, ds, eta is not None, finished_token=finished,
                      eta_pending=pending)


def _run_start(trials: tuple[TrialRecord, ...], ds: tuple[DriverInfo, ...]) -> float | None:
    live = [d.started_at for d in ds if d.live()]
    starts = [t.datetime_start.timestamp() for t in trials if t.datetime_start]
    return min(live) if live else min(starts, default=None)


def _done_this_run(trials: tuple[TrialRecord, ...], ds: tuple[DriverInfo, ...]) -> int:
    """Trials that count, finished since the search (re)started."""
    since = _run_start(trials, ds)
    if since is None:
        return 0
    return sum(1 for t in trials if t.datetime_complete and t.counts_as_trained
               and t.datetime_complete.timestamp() >= since)


def _estimate_eta(trials: tuple[TrialRecord, ...], ds: tuple[DriverInfo, ...],
                  p: SearchProgress, done: int) -> float | None:
    """Seconds left at the pace of this run: trials finished since the search (re)started,
    against the trials the budget still allows (None: no trial budget or no pace yet)."""
    since = _run_start(trials, ds)
    if not p.n_trials or since is None or done == 0:
        return None
    return max(0, p.n_trials - p.finished) * (time.time() - since) / done


@st.cache_resource(max_entries=64, show_spinner=False)
def rows(url: str, study: str, token: tuple) -> list[TrialRow]:
    """Every trial of ``study`` as a row (cached per data version; read-only)."""
    return rows_of(study_snapshot(url, study, token))


def records(url: str, study: str, token: tuple) -> tuple[TrialRecord, ...]:
    """Every trial's record (cached per data version; read-only)."""
    return study_snapshot(url, study, token).records


@st.cache_resource(max_entries=64, show_spinner=False)
def configs(url: str, study: str, token: tuple) -> dict[int, dict[str, Any]]:
    """Trial number -> its recorded config (family, model, train), for trials that have one."""
    return {t.number: t.config for t in study_snapshot(url, study, token).records
            if t.config is not None}


@st.cache_resource(max_entries=64, show_spinner=False)
def info(url: str, study: str, token: tuple) -> StudyInfo:
    """The study's objectives, directions, caps and stored spec."""
    r = study_snapshot(url, study, token).record
    return StudyInfo(objectives=r.objectives, directions=r.directions, cap_mb=r.cap_mb,
                     max_params=r.max_params, spec=r.spec, spec_hash=r.spec_hash,
                     constraints=r.constraints)


@st.cache_data(ttl=10, show_spinner=False)
def activity(url: str, listing: tuple[tuple[str, int], ...]) -> dict[str, float]:
    """Study -> Unix time of its latest activity (a trial started or ended, a heartbeat),
    by SQL over every study at once.

    Args:
        listing: ``studies(url)``: a new study or trial is a new cache key.
    """
    return _activity(url)

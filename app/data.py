"""Cached reads of the study storage, for every page.

Cheap reads (the list of studies, a study's progress) live for a second; heavy reads (trial
rows, configs, figures) are keyed by ``(url, study, token)``, where the token is the study's
data version from :func:`probe`: a page shows new data as soon as the study changes, re-reads
nothing while it does not, and nothing built for one selection is served for another.
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

from engine.errors import StorageError, WaveSearchError
from storage import (
    DriverInfo,
    SearchProgress,
    StudyRecord,
    TrialRecord,
    TrialRow,
    cap_for,
    list_studies,
    load_study,
    normalize_url,
    read_trials,
    search_progress,
    trial_rows,
)

__all__ = ["StorageCheck", "StudyInfo", "StudyProbe", "activity", "check_storage", "configs",
           "info", "probe", "rows", "studies"]

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
            with every driver heartbeat; heavy reads are cached under it.
        progress: Finished / budget, running trials, live drivers, ETA (with fallbacks:
            the spec's budget when the study records none; an estimate from the elapsed
            time when no driver gives one).
        drivers: The search processes that recorded themselves on the study.
        eta_estimated: The ETA is the app's estimate, not a driver's.
        finished_token: Changes only when a trial finishes: figures of finished trials (the
            analysis page) are cached under it, so they are not recomputed every epoch.
    """

    token: tuple
    progress: SearchProgress
    drivers: tuple[DriverInfo, ...]
    eta_estimated: bool = False
    finished_token: tuple = ()

    @property
    def live(self) -> bool:
        """Trials running or a driver alive: the pages refresh themselves."""
        return self.progress.running > 0 or self.progress.live_drivers > 0


@st.cache_data(ttl=PROBE_TTL_S, show_spinner=False)
def studies(url: str) -> list[tuple[str, int]]:
    """``(name, n_trials)`` of every study, by name."""
    return [(s.name, s.n_trials) for s in list_studies(url)]


@st.cache_data(ttl=PROBE_TTL_S, show_spinner=False)
def probe(url: str, study: str) -> StudyProbe:
    """The progress and data version of ``study`` (one read of its trials)."""
    s = load_study(url, study)
    trials = read_trials(s)
    progress = search_progress(s)
    spec_search = StudyRecord.read(s).spec_search
    if progress.n_trials is None and progress.budget_epochs is None:
        # Studies begun before the budget was recorded: the spec's budget.
        progress = dataclasses.replace(progress, n_trials=spec_search.get("n_trials"),
                                       budget_epochs=spec_search.get("budget_epochs"))
    ds = StudyRecord.read(s).drivers
    eta = None
    if progress.eta_s is None and (progress.running > 0 or progress.live_drivers > 0):
        eta = _estimate_eta(trials, ds, progress)
        progress = dataclasses.replace(progress, eta_s=eta)
    finished = tuple(t.number for t in trials if t.finished)
    token = (len(trials), progress.finished, progress.running, progress.epochs, finished,
             tuple((d.id, d.state, d.heartbeat_at) for d in ds))
    return StudyProbe(token, progress, ds, eta is not None, finished_token=finished)


def _estimate_eta(trials: list[TrialRecord], ds: tuple[DriverInfo, ...], p: SearchProgress) -> float | None:
    """Seconds left at the pace of this run: trials finished since the search (re)started,
    against the trials the budget still allows (None: no trial budget or no pace yet)."""
    if not p.n_trials:
        return None
    live = [d.started_at for d in ds if d.live()]
    starts = [t.datetime_start.timestamp() for t in trials if t.datetime_start]
    since = min(live) if live else min(starts, default=None)
    if since is None:
        return None
    done = sum(1 for t in trials if t.datetime_complete and t.datetime_complete.timestamp() >= since
               and t.counts_as_trained)
    if done == 0:
        return None
    return max(0, p.n_trials - p.finished) * (time.time() - since) / done


@st.cache_data(max_entries=64, show_spinner=False)
def rows(url: str, study: str, token: tuple) -> list[TrialRow]:
    """Every trial of ``study`` as a row (cached per data version)."""
    return trial_rows(load_study(url, study))


@st.cache_data(max_entries=64, show_spinner=False)
def configs(url: str, study: str, token: tuple) -> dict[int, dict[str, Any]]:
    """Trial number -> its recorded config (family, model, train), for trials that have one."""
    return {t.number: t.config for t in read_trials(load_study(url, study))
            if t.config is not None}


@st.cache_data(max_entries=64, show_spinner=False)
def info(url: str, study: str, token: tuple) -> StudyInfo:
    """The study's objectives, directions, caps and stored spec."""
    r = StudyRecord.read(load_study(url, study))
    return StudyInfo(objectives=r.objectives, directions=r.directions, cap_mb=r.cap_mb,
                     max_params=r.max_params, spec=r.spec, spec_hash=r.spec_hash,
                     constraints=r.constraints)


@st.cache_data(ttl=10, show_spinner=False)
def activity(url: str, listing: tuple[tuple[str, int], ...]) -> dict[str, float]:
    """Study -> Unix time of its latest activity (a trial started or ended, a heartbeat).

    Args:
        listing: ``studies(url)``: a new study or trial is a new cache key.
    """
    out = {}
    for name, _ in listing:
        try:
            s = load_study(url, name)
        except WaveSearchError:
            continue
        stamps = [d.timestamp() for t in s.get_trials(deepcopy=False)
                  for d in (t.datetime_start, t.datetime_complete) if d is not None]
        stamps += [d.heartbeat_at for d in StudyRecord.read(s).drivers]
        out[name] = max(stamps, default=0.0)
    return out

"""What the user has chosen, kept across pages and reruns, and the live refresh.

The entry script calls :func:`sidebar` before ``nav.run()``. The choices live in plain
session-state keys (``storage_url``, ``study_by_url``), which Streamlit never drops; the
sidebar widgets have keys of their own, seeded from those values whenever they differ, so a
page switch or rerun can never blank the storage URL or reset the study.

While the selected study has running trials, a live driver or a search this app launched, a
fragment polls it every :data:`LIVE_S` seconds (every :data:`IDLE_S` seconds otherwise, so
new studies appear) and reruns the whole page when its data changed. A poll is a few SQL
counts (:func:`app.data.token`), never a read of the trials. The sidebar's "Live refresh"
switch turns the polling off; charts keep the user's zoom across refreshes either way.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from app import common, data, links
from app.runs import Registry, SearchLauncher, SearchRun, run_dir
from engine.errors import WaveSearchError
from engine.units import format_duration
from storage.schema import DEFAULT_STORAGE_URL

__all__ = ["IDLE_S", "LIVE_S", "Selection", "current", "launcher", "require_study",
           "select_study_when_it_appears", "sidebar"]

LIVE_S = 2.0  # seconds between refreshes while a search runs
IDLE_S = 5.0  # seconds between checks for new studies and new searches otherwise
LIVE_KEY = "live_refresh"  # the sidebar's switch: off, the page does not refresh itself
URL_KEY = "storage_url"
STUDY_KEY = "study_by_url"  # {storage url: chosen study}
PENDING_KEY = "pending_study"  # {storage url: study a launched search will create}
_W_URL, _W_STUDY = "_w_storage_url", "_w_study"


@dataclass(frozen=True)
class Selection:
    """The storage and study chosen in the sidebar, and how live they are.

    Attributes:
        storage: The typed URL, judged (``storage.url`` is None when it is unusable).
        studies: Study names in the storage, by name.
        study: The chosen study (None: none yet).
        probe: Its progress and data version (None: no study).
        runs: Searches launched from the app on this storage, newest first.
    """

    storage: data.StorageCheck
    studies: tuple[str, ...] = ()
    study: str | None = None
    probe: data.StudyProbe | None = None
    runs: tuple[SearchRun, ...] = ()

    @property
    def url(self) -> str | None:
        return self.storage.url

    @property
    def token(self) -> tuple:
        return self.probe.token if self.probe else ()

    @property
    def live(self) -> bool:
        """The page refreshes itself: the study is live or a launched search runs."""
        return bool(self.probe and self.probe.live) or any(r.alive() for r in self.runs)


@st.cache_resource(show_spinner=False)
def _launcher(folder: str) -> SearchLauncher:
    launcher = SearchLauncher(Registry(Path(folder)))
    # The app's shutdown stops the searches it started (SIGINT, then SIGKILL after a grace).
    atexit.register(launcher.shutdown)
    return launcher


def launcher() -> SearchLauncher:
    """This server's launcher of searches (one per run folder)."""
    return _launcher(str(run_dir()))


def current() -> Selection:
    """The selection the sidebar made in this run (pages call this)."""
    return st.session_state["_selection"]


def select_study_when_it_appears(url: str, study: str) -> None:
    """Make ``study`` the chosen one as soon as it exists (a search was just launched)."""
    st.session_state.setdefault(PENDING_KEY, {})[url] = study


def _url_widget() -> str:
    ss = st.session_state
    if URL_KEY not in ss:
        ss[URL_KEY] = os.environ.get("WAVESEARCH_STORAGE", DEFAULT_STORAGE_URL)
    if ss.get(_W_URL) != ss[URL_KEY]:
        ss[_W_URL] = ss[URL_KEY]

    def commit() -> None:
        # A blank box keeps the URL: a page switch during a session's first run can send the
        # box's state before the browser filled it in (seen in chromium under load).
        if (ss[_W_URL] or "").strip():
            ss[URL_KEY] = ss[_W_URL]

    st.sidebar.text_input("Storage URL", key=_W_URL, on_change=commit,
                          help="sqlite:///PATH or postgresql+psycopg2://user@host/db")
    return ss[URL_KEY]


def _choose_study(url: str, listing: list[tuple[str, int]],
                  runs: tuple[SearchRun, ...]) -> str | None:
    ss = st.session_state
    names = [n for n, _ in listing]
    chosen: dict[str, str] = ss.setdefault(STUDY_KEY, {})
    pending: dict[str, str] = ss.setdefault(PENDING_KEY, {})
    if url not in chosen:  # a new session (a reload, a link), or a launched search starting
        if links.requested_study() in names:
            chosen[url] = links.requested_study()
        starting = [r.study for r in runs if r.alive() and r.study not in names]
        if starting:  # followed even over the link's study: it was launched from here
            pending.setdefault(url, starting[0])
    if pending.get(url) in names:
        chosen[url] = pending.pop(url)
    if chosen.get(url) not in names:
        if not names:
            return None
        # The most recently active: a trial started or ended, a heartbeat, a launch from here.
        recent = dict(data.activity(url, tuple(listing)))
        for r in runs:
            recent[r.study] = max(recent.get(r.study, 0.0), r.started_at)
        chosen[url] = max(names, key=lambda n: (recent.get(n, 0.0), n))
    if ss.get(_W_STUDY) != chosen[url]:
        ss[_W_STUDY] = chosen[url]

    def commit() -> None:
        chosen[url] = ss[_W_STUDY]
        pending.pop(url, None)

    st.sidebar.selectbox("Study", names, key=_W_STUDY, on_change=commit)
    return chosen[url]


def _progress(sel: Selection) -> None:
    p = sel.probe.progress if sel.probe else None
    waiting = st.session_state.get(PENDING_KEY, {}).get(sel.url or "")
    if waiting and waiting not in sel.studies:
        st.sidebar.caption(f"Waiting for study {common.escape_markdown(waiting)} to appear…")
    if p is None:
        return
    parts = [f"{p.finished} of {p.n_trials} trials" if p.n_trials else f"{p.finished} trials"]
    if p.budget_epochs:
        parts.append(f"{p.epochs} of {p.budget_epochs} epochs")
    if p.fraction is not None:
        st.sidebar.progress(p.fraction, text=" · ".join(parts))
    else:
        st.sidebar.caption(" · ".join(parts))
    if sel.probe.live:
        if sel.probe.eta_pending:  # the first trial also pays for start-up: no pace yet
            eta = "after the first trial"
        else:
            eta = format_duration(p.eta_s, precise=True) + (" (estimate)" if sel.probe.eta_estimated
                                                            else "")
        st.sidebar.caption(f"{p.running} running · ETA {eta}"
                           + (f" · deadline {common.when(p.deadline)}" if p.deadline else ""))
    elif p.fraction is not None and p.fraction < 1 and not sel.live:
        st.sidebar.caption("No search is running on this study: resume it on the New search "
                           "page.")


def sidebar() -> Selection:
    """Render the storage URL, the study picker and the progress; keep the choice."""
    url_text = _url_widget()
    check = data.check_storage(url_text)
    runs = ()
    if check.url:
        runs = tuple(r for r in launcher().runs() if r.storage_url == check.url)
    if check.url is None or check.missing_file:
        # The page says what is wrong and how to fix it; the sidebar only flags it.
        st.sidebar.warning("No database file at this path yet." if check.missing_file
                           else "Not a usable storage URL.")
        sel = Selection(check, runs=runs)
    else:
        try:
            listing = data.studies(check.url)
        except WaveSearchError as e:
            st.sidebar.warning("Cannot read this storage.")
            sel = Selection(data.StorageCheck(None, str(e)), runs=runs)
        else:
            study = _choose_study(check.url, listing, runs)
            probe = None
            if study:
                try:
                    probe = data.probe(check.url, study)
                except WaveSearchError:
                    probe = None  # deleted meanwhile: the next run picks another
            sel = Selection(check, tuple(n for n, _ in listing), study, probe, runs)
    _progress(sel)
    follow = st.sidebar.toggle("Live refresh", value=True, key=LIVE_KEY,
                               help="off: the page stays as it is until you change something "
                                    "(charts keep their zoom either way)")
    if sel.live and follow:
        st.sidebar.caption(f"Live: refreshing every {LIVE_S:g} s")
    elif sel.live:
        st.sidebar.caption("Live refresh is off: new results appear when it is on again.")
    st.session_state["_selection"] = sel
    st.session_state["_seen"] = _fingerprint(sel)
    links.show_study(sel.study)
    if follow:
        _watch(LIVE_S if sel.live else IDLE_S)
    return sel


def _fingerprint(sel: Selection) -> tuple:
    """What a full rerun would show differently: the database file, the studies and their
    trial counts, the chosen study's data version, the launched searches and their states."""
    if sel.url is None:
        return ()
    check = data.check_storage(sel.url)
    names: tuple = ()
    token: tuple = ()
    if check.url and not check.missing_file:
        try:
            names = tuple(data.studies(sel.url))
            if sel.study in dict(names):
                token = data.token(sel.url, sel.study)
        except WaveSearchError:
            pass
    runs = tuple((r.id, r.status) for r in launcher().runs() if r.storage_url == sel.url)
    return check.missing_file, names, token, runs


def _watch(every_s: float) -> None:
    @st.fragment(run_every=every_s)
    def watcher() -> None:
        sel: Selection = st.session_state.get("_selection")
        if sel is None:
            return
        if _fingerprint(sel) != st.session_state.get("_seen"):
            st.rerun()

    watcher()


def require_study() -> Selection | None:
    """The selection, or None after telling the user why there is no study to show."""
    sel = current()
    if sel.url is None:
        common.show_error(sel.storage.problem or "no storage URL")
        return None
    if sel.storage.missing_file:
        st.info(common.escape_markdown(sel.storage.problem or ""))
        return None
    if not sel.study:
        st.info(f"No studies in {common.escape_markdown(sel.url)} yet. Start one on the New search "
                "page, or with engine search SPEC.")
        return None
    if sel.probe is None:
        st.info("Reading the study…")
        return None
    return sel

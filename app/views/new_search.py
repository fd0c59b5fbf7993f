"""Start, watch, stop and resume searches: each one is an ``engine search`` process."""

from __future__ import annotations

import os
import signal
import socket
import time

import streamlit as st

from app import common, data, specs, state
from app.runs import SearchRun, process_alive, tail
from app.widgets import kept
from engine.units import format_duration

LOG_LINES = 60
EDITOR = "Spec (YAML): edit or paste"


def _log_view(run: SearchRun) -> None:
    """The end of the search's log; refreshed every second while it runs."""
    lines = tail(run.log_path).splitlines()[-LOG_LINES:]
    st.code("\n".join(lines) or "(no output yet)", language=None)


def _run_panel(run: SearchRun, expanded: bool) -> None:
    status = run.status
    title = f"{run.study}: {status} (started {common.when(run.started_at)}, pid {run.pid})"
    with st.expander(common.escape_markdown(title), expanded=expanded):
        cols = st.columns([1, 1, 4])
        if status == "running":
            if cols[0].button("Stop", key=f"stop:{run.id}", type="primary",
                              help="SIGINT, as Ctrl-C: running trials are re-queued"):
                state.launcher().stop(run.id)
                st.rerun()
        if status == "stopping":
            cols[0].caption(f"stopping since {common.when(run.stop_requested_at)}…")
            if cols[1].button("Kill", key=f"kill:{run.id}",
                              help="if it does not stop: SIGKILL to the search and its Ray "
                                   "(its running trials are re-queued by the next resume)"):
                state.launcher().kill(run.id)
                st.rerun()
        cols[2].caption(common.escape_markdown(f"log: {run.log_path}"))
        if run.alive():
            st.fragment(run_every=1.0)(_live_log)(run.id)
        else:
            _log_view(run)


def _live_log(run_id: str) -> None:
    run = next((r for r in state.launcher().runs() if r.id == run_id), None)
    if run is None:
        return
    _log_view(run)
    if not run.alive():
        st.rerun()  # the whole page: status, buttons, the new study's data


def _other_drivers(sel: state.Selection) -> None:
    """Searches on the chosen study that this app did not start (e.g. from a terminal)."""
    if not sel.probe:
        return
    mine = {r.pid for r in sel.runs}
    here = socket.gethostname()
    for d in sel.probe.drivers:
        if not d.live() or (d.host == here and d.pid in mine):
            continue
        line = (f"Search process {d.pid} on {d.host} works on {sel.study} "
                f"(heartbeat {format_duration(time.time() - d.heartbeat_at, precise=True)} ago).")
        left, right = st.columns([4, 1])
        left.caption(common.escape_markdown(line))
        if d.host == here and process_alive(d.pid) and right.button(
                "Stop", key=f"stop-driver:{d.id}", help="SIGINT, as Ctrl-C"):
            os.kill(d.pid, signal.SIGINT)
            st.rerun()


def _editor() -> str:
    """Template / upload / paste into one editor; returns its text."""
    ss = st.session_state
    names = list(specs.templates())

    def load_template() -> None:
        name = ss["_w_template"]
        ss["_kept"]["spec_text"] = specs.templates().get(name, "")

    def load_upload() -> None:
        up = ss.get("_w_upload")
        if up is not None:
            ss["_kept"]["spec_text"] = up.getvalue().decode("utf-8", errors="replace")

    first = "quickstart.yaml" if "quickstart.yaml" in names else (names[0] if names else None)
    ss.setdefault("_kept", {}).setdefault("spec_text", specs.templates().get(first, ""))
    left, right = st.columns(2)
    left.selectbox("Load a spec from search_spaces/", names, key="_w_template",
                   on_change=load_template, index=None,
                   placeholder=f"the editor starts with {first}" if first else "none")
    right.file_uploader("or upload a spec", type=["yaml", "yml"], key="_w_upload",
                        on_change=load_upload)
    return kept(st.text_area, EDITOR, "spec_text", "", height=420)


def _check(text: str) -> specs.Checked:
    return specs.validate(text) if text.strip() else specs.Checked(error="the spec is empty")


def _start(sel: state.Selection) -> None:
    text = _editor()
    shown = text
    checked = _check(shown)
    conflict = None
    if checked.error:
        where = f" (line {checked.line})" if checked.line else ""
        common.show_error(f"{checked.error}{where}")
        if checked.line:  # the editor shows no line numbers: show the lines it means
            st.code(specs.excerpt(shown, checked.line), language=None)
    else:
        st.success(common.escape_markdown(f"Valid: {checked.summary}."))
        if checked.study in sel.studies and not sel.storage.missing_file:
            other = data.info(sel.url, checked.study, data.probe(sel.url, checked.study).token)
            if other.spec_hash not in (None, checked.spec_hash):
                conflict = (f"study {checked.study} already exists with a different search space "
                            f"(spec hash {other.spec_hash} != {checked.spec_hash}); change "
                            "study.name to start a new study")
                common.show_error(conflict)
            else:
                st.info(common.escape_markdown(f"Study {checked.study} exists with this search "
                                           "space: starting continues it."))
    if st.button("Start search", key="start_search", type="primary",
                 disabled=bool(checked.error or conflict)):
        run = state.launcher().launch(text, sel.url, checked.study, kind="new")
        state.select_study_when_it_appears(sel.url, checked.study)
        st.session_state["followed_run"] = run.id
        st.rerun()


def _resume(sel: state.Selection) -> None:
    if not sel.studies:
        st.info("No study in this storage yet.")
        return
    study = sel.study  # the sidebar's study, which every page shows
    if study is None or sel.probe is None:
        st.info("Choose a study in the sidebar.")
        return
    st.markdown(f"Resume study **{common.escape_markdown(study)}** (the study chosen in the "
                "sidebar).")
    probe = sel.probe
    info = data.info(sel.url, study, probe.token)
    if not info.spec:
        st.info("This study has no stored spec: resume it with engine search SPEC.")
        return
    p = probe.progress
    # The same count as the sidebar's and the search's budget (TrialRecord.counts_as_trained).
    st.caption(f"{p.finished} trials count towards the budget, {p.epochs} epochs trained so far"
               + (f"; {p.running} running now" if p.running else "") + ".")
    search = info.spec.get("search") or {}
    left, right = st.columns(2)
    n = left.number_input("Total trials", min_value=1, step=1, key=f"resume_n:{study}",
                          value=int(max(p.n_trials or search.get("n_trials") or 0,
                                        p.finished + 1)))
    epochs = None
    if search.get("budget_epochs") is not None:
        epochs = right.number_input("Total epochs", min_value=1, step=1,
                                    key=f"resume_e:{study}",
                                    value=int(max(search["budget_epochs"], p.epochs + 1)))
    text = specs.resume_text(info.spec, int(n), None if epochs is None else int(epochs),
                             study=study)
    checked = specs.validate(text)
    busy = probe.live or any(r.alive() and r.study == study for r in sel.runs)
    if checked.error:
        common.show_error(checked.error)
    elif info.spec_hash and checked.spec_hash != info.spec_hash:
        common.show_error(f"the stored spec no longer gives the study's search space (spec hash "
                      f"{checked.spec_hash} != {info.spec_hash}); the engine changed since")
    with st.expander("The stored spec, with the new budget"):
        st.code(text, language="yaml")
    if busy:
        st.caption("A search is running on this study.")
    if st.button("Resume", key="resume_search", type="primary",
                 disabled=bool(busy or checked.error)):
        run = state.launcher().launch(text, sel.url, study, kind="resume")
        state.select_study_when_it_appears(sel.url, study)
        st.session_state["followed_run"] = run.id
        st.rerun()


st.title("New search")
sel = state.current()
if sel.url is None:
    common.show_error(sel.storage.problem or "no storage URL")
else:
    st.caption(common.escape_markdown(f"Searches write to {sel.url} (the sidebar's storage URL)."))
    followed = st.session_state.get("followed_run")
    for i, run in enumerate(sel.runs[:5]):
        _run_panel(run, expanded=run.alive() or run.id == followed or i == 0)
    _other_drivers(sel)
    start, resume = st.tabs(["Start a search", "Resume a study"])
    with start:
        _start(sel)
    with resume:
        _resume(sel)
    st.caption("Searches started here are stopped (as with Ctrl-C) when the app shuts down. "
               "To keep one running without the app, start it in a terminal: "
               "engine search SPEC --storage URL.")

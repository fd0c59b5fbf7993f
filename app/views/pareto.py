"""The front: validation accuracy against memory, size, time or any searched parameter, and
every trial in a table that sorts, filters and picks its columns."""

from __future__ import annotations

import streamlit as st

from app import data, links
from app.figures import AXES, param_axes, pareto_figure
from app.live_chart import figure_json, live_chart
from app.runs_table import runs_table
from app.state import require_study
from app.widgets import STATES, kept, selection_key, trial_filters


@st.cache_resource(max_entries=16, show_spinner=False)
def _spec(url: str, study: str, token: tuple, numbers: tuple[int, ...], axis_name: str,
          log_x: bool, revision: str) -> str | None:
    """The chart's spec for these trials at this data version (cached: a figure of 10,000
    points takes a second to build)."""
    wanted = set(numbers)
    rows = [r for r in data.rows(url, study, token) if r.number in wanted]
    epochs = {n: c.get("train", {}).get("epochs") for n, c in data.configs(url, study, token).items()}
    axes = {**AXES, **param_axes(rows)}
    fig = pareto_figure(rows, axes[axis_name], data.info(url, study, token), epochs,
                        log_x=log_x, revision=revision)
    return None if fig is None else figure_json(fig)


st.title("Pareto front")
sel = require_study()
if sel:
    rows = data.rows(sel.url, sel.study, sel.token)
    if not rows:
        st.info("No trial yet" + (": the search is starting." if sel.live else "."))
        st.stop()
    info = data.info(sel.url, sel.study, sel.token)
    epochs = {n: c.get("train", {}).get("epochs")
              for n, c in data.configs(sel.url, sel.study, sel.token).items()}
    counts = {c: sum(r.category == c for r in rows) for c in STATES}
    counts = {c: n for c, n in counts.items() if n or c in ("pareto", "dominated", "running")}
    for col, (name, n) in zip(st.columns(len(counts)), counts.items(), strict=True):
        col.metric(name, n)
    axes = {**AXES, **param_axes(rows)}
    left, right = st.columns([4, 1])
    with left:
        axis_name = kept(st.selectbox, "x axis", "pareto_axis", "peak memory", list(axes),
                         help="a metric, or any numeric searched parameter")
    with right:
        log_x = kept(st.toggle, "log scale", "pareto_log", False)
    shown = trial_filters(sel, rows)
    fig = _spec(sel.url, sel.study, sel.token, tuple(r.number for r in shown), axis_name,
                bool(log_x), f"{selection_key(sel)}:{axis_name}:{log_x}")
    if fig is None:
        st.info("No trial has a result to plot yet: the first point appears when a trial "
                "reports its first epoch." if shown else "No trial matches the filters.")
    else:
        clicked = live_chart(fig, key="pareto_chart")
        if clicked is not None:
            links.open_trial(clicked)
        st.caption("Each trial keeps its colour on every page; the shape says its state. "
                   "Over-cap candidates rejected before training sit at accuracy 0. Zoom and "
                   "pan are kept while the page refreshes; click a point to open its trial.")
    st.subheader("Trials")
    if shown:
        picked = runs_table(sel, shown, epochs)
        if picked is not None:
            links.open_trial(picked)
    else:
        st.info("No trial matches the filters.")

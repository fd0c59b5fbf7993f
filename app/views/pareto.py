"""The front: validation accuracy against memory, size or time, and every trial in a table."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import data
from app.common import trial_colour
from app.figures import AXES, pareto_figure, progress_label
from app.state import require_study
from app.widgets import STATES, kept, trial_filters


def table(rows, epochs: dict[int, int]) -> pd.DataFrame:
    """One line per trial; a running trial's epochs read ``epoch 2/3``."""
    return pd.DataFrame([{
        "trial": r.number, "state": r.category, "family": r.family,
        "val_accuracy": r.val_accuracy if r.state != "RUNNING" else (r.curve or [None])[-1],
        "peak_memory_mb": r.peak_memory_mb, "memory": r.memory_method, "params": r.param_count,
        # Text: "3", or "epoch 1/3" while running (one column type for Arrow).
        "epochs": progress_label(r, epochs.get(r.number)) if r.state == "RUNNING"
        else ("" if r.epochs_run is None else str(r.epochs_run)),
        "time_s": None if r.wall_time_s is None else round(r.wall_time_s, 1),
        "reason": r.reason or "", **r.params,
    } for r in rows])


FORMATS = {"val_accuracy": "{:.4f}", "peak_memory_mb": "{:.2f}", "params": "{:,.0f}",
           "time_s": "{:.1f}"}


def _styled(frame: pd.DataFrame):
    """Numbers rounded, blanks empty, and the trial column painted in each trial's colour
    (the colour of its points and lines on every page)."""
    return (frame.style
            .map(lambda n: f"background-color: {trial_colour(int(n))}; color: white",
                 subset=["trial"])
            .format({k: v for k, v in FORMATS.items() if k in frame}, na_rep=""))


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
    counts = {c: sum(r.category == c for r in rows) for c in STATES[:-1]}
    for col, (name, n) in zip(st.columns(len(counts)), counts.items(), strict=True):
        col.metric(name, n)
    axis_name = kept(st.radio, "x axis", "pareto_axis", "peak memory", list(AXES),
                     horizontal=True)
    shown = trial_filters(sel, rows)
    st.plotly_chart(pareto_figure(shown, AXES[axis_name], info, epochs), key="pareto_chart")
    st.caption("Each trial keeps its colour on every page; the shape says its state. "
               "Over-cap candidates rejected before training sit at accuracy 0.")
    st.subheader("Trials")
    if shown:
        st.dataframe(_styled(table(shown, epochs)), hide_index=True)
    else:
        st.info("No trial matches the filters.")

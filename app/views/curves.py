"""Learning curves: validation accuracy per epoch (partial while running), with the AdamW ->
SGD switch marked in each trial's colour."""

from __future__ import annotations

import streamlit as st

from app import data
from app.figures import curves_figure
from app.live_chart import live_chart
from app.state import require_study
from app.widgets import kept, ranked_choices, selection_key, trial_filters

st.title("Learning curves")
sel = require_study()
if sel:
    every = data.rows(sel.url, sel.study, sel.token)
    rows = [r for r in trial_filters(sel, every) if r.curve]
    if not rows:
        st.info("No trial matching the filters has a learning curve." if any(r.curve for r in every)
                else "No trial has finished an epoch yet.")
    else:
        epochs = {n: c.get("train", {}).get("epochs")
                  for n, c in data.configs(sel.url, sel.study, sel.token).items()}
        numbers = [r.number for r in rows]
        # Default: the front and whatever is running now (new trials join while they run).
        default = [r.number for r in rows if r.pareto or r.state == "RUNNING"] or numbers[:1]
        name = f"curve_trials:{selection_key(sel)}"
        before = st.session_state.get("_kept", {}).get(name) or []
        running = [r.number for r in rows if r.state == "RUNNING"]
        options = ranked_choices(rows, keep=[*before, *running])  # not 10,000 options
        chosen = kept(st.multiselect, "Trials", name, [], options,
                      placeholder="the Pareto front and the running trials")
        chosen = set(chosen or default)
        fig = curves_figure([r for r in rows if r.number in chosen], epochs)
        fig.update_layout(uirevision=selection_key(sel))  # the zoom outlives live refreshes
        live_chart(fig, key="curves_chart")
        st.caption("Dotted: still running. Diamonds mark the first epoch trained with SGD "
                   "(DualOpT's switch), in the trial's colour.")

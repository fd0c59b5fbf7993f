"""Trials side by side (two or more): their metrics, the settings where their configs differ,
and their learning curves on one chart."""

from __future__ import annotations

import streamlit as st

from app import data
from app.figures import curves_figure
from app.formats import config_table, side_by_side
from app.state import require_study
from app.widgets import kept, ranked_choices, selection_key

MAX_TRIALS = 8  # beyond this the columns are too narrow to read


def label(row) -> str:
    acc = "" if row.val_accuracy is None else f", val acc {row.val_accuracy:.4f}"
    return f"trial {row.number} ({row.family or '?'}, {row.category}{acc})"


st.title("Compare trials")
sel = require_study()
if sel:
    rows = {r.number: r for r in data.rows(sel.url, sel.study, sel.token)}
    cfgs = data.configs(sel.url, sel.study, sel.token)
    if len(rows) < 2:
        st.info("The study needs two trials to compare.")
    else:
        # Default: the two most accurate trials that met the caps.
        ranked = sorted(rows, key=lambda n: (not rows[n].feasible,
                                             -(rows[n].val_accuracy or -1.0)))
        name = f"compare:{selection_key(sel)}"
        before = st.session_state.get("_kept", {}).get(name) or []
        options = ranked_choices(list(rows.values()), keep=before)
        chosen = kept(st.multiselect, "Trials", name, ranked[:2], options,
                      format_func=lambda n: label(rows[n]), max_selections=MAX_TRIALS,
                      help=f"two to {MAX_TRIALS} trials; the list holds the front and the "
                           "most accurate trials (open any trial from the runs table)")
        if len(chosen) < 2:
            st.info("Choose at least two trials.")
            st.stop()
        picked = [rows[n] for n in chosen]
        st.dataframe(side_by_side(picked), key="compare_metrics")
        st.subheader("Config")
        diff = config_table({f"trial {n}": cfgs.get(n, {}) for n in chosen})
        n_diff = int(diff["differs"].sum())
        st.caption(f"{n_diff} setting(s) differ.")
        st.dataframe(diff.style.apply(lambda r: ["background-color: #fff3b0" if r["differs"]
                                                 else "" for _ in r], axis=1),
                     hide_index=True, key="config_diff")
        st.subheader("Learning curves")
        fig = curves_figure([r for r in picked if r.curve])
        fig.update_layout(uirevision=f"{selection_key(sel)}:{sorted(chosen)}")
        st.plotly_chart(fig, key="compare_curves")

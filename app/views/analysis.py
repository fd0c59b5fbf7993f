"""How the search went and what mattered: hypervolume history, parallel coordinates and
parameter importance per objective (optuna.visualization figures)."""

from __future__ import annotations

import streamlit as st

from app import data, insight
from app.common import escape_markdown
from app.state import require_study
from app.widgets import kept, selection_key


def show(item: insight.Insight, key: str) -> None:
    if item.figure is None:
        st.info(escape_markdown(item.reason or "Not available yet."))
        return
    st.plotly_chart(item.figure, key=key)
    if item.note:
        st.caption(escape_markdown(item.note))


PARCOORDS_AUTO = 300  # trained trials up to which the parallel coordinates are drawn unasked

st.title("Search analysis")
sel = require_study()
if sel:
    rows = data.rows(sel.url, sel.study, sel.token)
    families = sorted({r.family for r in rows if r.family})
    chosen = kept(st.multiselect, "Families", f"families:{selection_key(sel)}", [], families,
                  placeholder="all families")
    fam = tuple(sorted(chosen)) if chosen else None
    done = sel.probe.finished_token  # recomputed when a trial finishes, not at every epoch
    st.caption("Only trials that trained and met every cap count here.")
    st.subheader("Hypervolume history")
    show(insight.hypervolume_history(sel.url, sel.study, done, fam), "hypervolume_chart")
    st.subheader("Parallel coordinates")
    # WebGL: drawing it costs a browser without graphics acceleration 2 s at every visit,
    # so a large study draws it on request (the choice is kept).
    trained = sum(r.state == "COMPLETE" and r.feasible and r.val_accuracy is not None
                  for r in rows)
    if kept(st.toggle, "Draw the parallel coordinates", f"parcoords:{selection_key(sel)}",
            trained <= PARCOORDS_AUTO, help=f"on by default up to {PARCOORDS_AUTO} trained "
                                            "trials; brushing works on the drawn chart"):
        show(insight.parallel_coordinates(sel.url, sel.study, done, fam), "parallel_chart")
    st.subheader("Parameter importance")
    for i, (name, item) in enumerate(insight.importances(sel.url, sel.study, done, fam)):
        st.markdown(f"**{escape_markdown(name)}**")
        show(item, f"importance_chart_{i}")

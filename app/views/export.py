"""Export a trial as a checkpoint that rebuilds its model, or as ONNX, offered as a download."""

from __future__ import annotations

import streamlit as st

from app import data, links
from app.exporting import export_panel
from app.state import require_study
from app.widgets import kept, ranked_choices, selection_key

st.title("Export a model")
sel = require_study()
if sel:
    rows = [r for r in data.rows(sel.url, sel.study, sel.token)
            if r.state == "COMPLETE" and r.feasible and r.val_accuracy is not None]
    if not rows:
        st.info("No feasible finished trial yet.")
    else:
        # Default: the best-accuracy Pareto point, as `engine export` chooses.
        rows = sorted(rows, key=lambda r: (not r.pareto, -(r.val_accuracy or 0.0)))
        asked = links.requested_trial()
        offered = set(ranked_choices(rows, keep=[] if asked is None else [asked]))
        labels = {r.number: f"trial {r.number}: {r.family}, val acc {r.val_accuracy:.4f}, "
                            f"{r.peak_memory_mb or 0:.1f} MB, {r.param_count or 0:,} params"
                            f"{' (Pareto)' if r.pareto else ''}" for r in rows
                  if r.number in offered}
        number = kept(st.selectbox, "Trial", f"export_trial:{selection_key(sel)}",
                      asked if asked in labels else rows[0].number, list(labels),
                      format_func=labels.get)
        export_panel(sel, number)

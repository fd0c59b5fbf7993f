"""Export a trial as a checkpoint that rebuilds its model, offered as a download.

A built checkpoint is kept with the (storage, study, trial) it was built for and dropped as
soon as any of them changes, so the download always holds the model the page names.
"""

from __future__ import annotations

import streamlit as st

from app import data
from app.common import escape_markdown, show_error
from app.state import require_study
from app.widgets import kept, selection_key
from engine.errors import WaveSearchError

EXPORT_KEY = "export"  # {"for": (url, study, trial), "blob": bytes, "metrics": dict}

st.title("Export a model")
sel = require_study()
if sel:
    rows = [r for r in data.rows(sel.url, sel.study, sel.token)
            if r.state == "COMPLETE" and r.feasible and r.val_accuracy is not None]
    if not rows:
        st.session_state.pop(EXPORT_KEY, None)
        st.info("No feasible finished trial yet.")
    else:
        # Default: the best-accuracy Pareto point, as `engine export` chooses.
        rows.sort(key=lambda r: (not r.pareto, -(r.val_accuracy or 0.0)))
        labels = {r.number: f"trial {r.number}: {r.family}, val acc {r.val_accuracy:.4f}, "
                            f"{r.peak_memory_mb or 0:.1f} MB, {r.param_count or 0:,} params"
                            f"{' (Pareto)' if r.pareto else ''}" for r in rows}
        number = kept(st.selectbox, "Trial", f"export_trial:{selection_key(sel)}",
                      rows[0].number, list(labels), format_func=labels.get)
        target = (sel.url, sel.study, number)
        if (st.session_state.get(EXPORT_KEY) or {}).get("for") != target:
            st.session_state.pop(EXPORT_KEY, None)  # built for another storage, study or trial
        with_test = st.checkbox("Measure test accuracy (the search never saw the test split)",
                                value=True, key="export_with_test")
        if st.button("Export checkpoint", key="export_button"):
            from engine.export import build_checkpoint, checkpoint_bytes  # torch only here

            try:
                with st.spinner(f"Rebuilding trial {number}…"):
                    ckpt = build_checkpoint(sel.url, sel.study, trial_number=number,
                                            test_accuracy=with_test)
            except WaveSearchError as e:
                show_error(str(e))
            else:
                st.session_state[EXPORT_KEY] = {"for": target, "blob": checkpoint_bytes(ckpt),
                                                "metrics": ckpt["metrics"]}
        built = st.session_state.get(EXPORT_KEY)
        if built and built["for"] == target:
            st.success(f"Checkpoint of trial {number} of study {escape_markdown(sel.study)} ready "
                       f"({len(built['blob']) / 1024:.0f} KiB).")
            st.json(built["metrics"])
            st.download_button("Download checkpoint", data=built["blob"], key="download",
                               file_name=f"{sel.study}-trial{number}.pt",
                               mime="application/octet-stream")
            st.caption("Load it with engine.load_model(path).")

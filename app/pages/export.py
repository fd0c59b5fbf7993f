"""Export a trial as a checkpoint that rebuilds its model, offered as a download."""

from __future__ import annotations

import streamlit as st

from app.common import cached_rows, pick_study
from engine.errors import WaveSearchError

st.title("Export a model")
picked = pick_study()
if picked:
    url, study = picked
    rows = [r for r in cached_rows(url, study) if r.state == "COMPLETE" and r.feasible]
    if not rows:
        st.info("No feasible finished trial yet.")
    else:
        # Default: the best-accuracy Pareto point, as `engine export` chooses.
        rows.sort(key=lambda r: (not r.pareto, -(r.val_accuracy or 0.0)))
        labels = {r.number: f"trial {r.number}: {r.family}, val acc {r.val_accuracy:.4f}, "
                            f"{r.peak_memory_mb:.1f} MB, {r.param_count:,} params"
                            f"{' (Pareto)' if r.pareto else ''}" for r in rows}
        number = st.selectbox("Trial", list(labels), format_func=labels.get, key="export_trial")
        with_test = st.checkbox("Measure test accuracy (the search never saw the test split)",
                                value=True)
        if st.button("Export checkpoint", key="export_button"):
            from engine.export import build_checkpoint, checkpoint_bytes  # torch only here

            try:
                ckpt = build_checkpoint(url, study, trial_number=number, test_accuracy=with_test)
            except WaveSearchError as e:
                st.error(str(e))
            else:
                st.session_state["export_blob"] = (number, checkpoint_bytes(ckpt))
                st.session_state["export_metrics"] = ckpt["metrics"]
        blob = st.session_state.get("export_blob")
        if blob and blob[0] == number:
            st.success(f"Checkpoint of trial {number} ready ({len(blob[1]) / 1024:.0f} KiB).")
            st.json(st.session_state.get("export_metrics", {}))
            st.download_button("Download checkpoint", data=blob[1], key="download",
                               file_name=f"{study}-trial{number}.pt",
                               mime="application/octet-stream")
            st.caption("Load it with `engine.load_model(path)`.")

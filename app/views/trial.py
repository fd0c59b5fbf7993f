"""One trial: its results, why it ended, its learning curve, every recorded attribute, its
parameters and config, and its model as a checkpoint or ONNX download.

The URL carries the trial (``/trial?study=NAME&trial=N``): a link opens this page on it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pandas as pd
import streamlit as st

from app import common, data, links
from app.exporting import export_panel
from app.figures import curves_figure
from app.formats import flatten, show_value
from app.state import require_study

# Shown elsewhere on the page, or not meant for reading.
_HIDDEN = {"params", "config", "intermediate", "probe_logits", "curve", "values", "constraints"}


def attributes(record) -> pd.DataFrame:
    """Every recorded field of the trial (Optuna's and ours) as ``field, value`` text."""
    out = []
    for f in dataclasses.fields(record):
        if f.name in _HIDDEN:
            continue
        value: Any = getattr(record, f.name)
        if f.name == "state":
            value = value.name
        elif f.name in ("datetime_start", "datetime_complete") and value is not None:
            value = common.when(value.timestamp())
        elif f.name == "run_started_at" and value is not None:
            value = common.when(value)
        elif isinstance(value, dict):
            value = json.dumps(value)
        out.append({"field": f.name, "value": show_value(value)})
    return pd.DataFrame(out, columns=["field", "value"])


st.title("Trial")
sel = require_study()
if sel:
    rows = {r.number: r for r in data.rows(sel.url, sel.study, sel.token)}
    records = {r.number: r for r in data.records(sel.url, sel.study, sel.token)}
    if not rows:
        st.info("No trial yet.")
        st.stop()
    asked = links.requested_trial()
    if asked is not None and asked not in rows:
        st.warning(f"Study {common.escape_markdown(sel.study)} has no trial {asked}; showing "
                   "another.")
    default = asked if asked in rows else max(
        rows, key=lambda n: (rows[n].pareto, rows[n].val_accuracy or -1.0))
    # A number box, not a list: a study may hold 10,000 trials.
    if st.session_state.get("trial_pick") not in rows or asked in rows and \
            st.session_state.get("_trial_asked") != (sel.study, asked):
        st.session_state["trial_pick"] = default
        st.session_state["_trial_asked"] = (sel.study, asked)
    number = int(st.number_input("Trial number", min_value=min(rows), max_value=max(rows),
                                 step=1, key="trial_pick"))
    if number not in rows:
        st.info(f"No trial {number} in this study.")
        st.stop()
    links.show_trial(number)
    row, rec = rows[number], records[number]
    st.header(f"Trial {number}: {row.family or '?'}, {row.category}")
    cols = st.columns(5)
    cols[0].metric("val accuracy", show_value(row.val_accuracy, ".4f"))
    cols[1].metric("peak memory (MB)", show_value(row.peak_memory_mb, ".1f"))
    cols[2].metric("parameters", show_value(row.param_count, ","))
    cols[3].metric("epochs", show_value(row.epochs_run))
    cols[4].metric("wall time (s)", show_value(row.wall_time_s, ".1f"))
    if row.reason:
        (st.error if row.state == "FAIL" and not row.interrupted else st.warning)(
            common.escape_markdown(f"Why it ended this way: {row.reason}"))
    if row.curve:
        st.subheader("Learning curve")
        fig = curves_figure([row])
        fig.update_layout(uirevision=f"{sel.study}:{number}")
        st.plotly_chart(fig, key="trial_curve")
    left, right = st.columns(2)
    with left:
        st.subheader("Parameters")
        st.dataframe(pd.DataFrame([{"parameter": k, "value": show_value(v)}
                                   for k, v in sorted(rec.params.items())],
                                  columns=["parameter", "value"]), hide_index=True)
        st.subheader("Config")
        st.dataframe(pd.DataFrame([{"setting": k, "value": show_value(v)}
                                   for k, v in flatten(rec.config or {}).items()],
                                  columns=["setting", "value"]), hide_index=True)
    with right:
        st.subheader("Recorded attributes")
        st.dataframe(attributes(rec), hide_index=True, height=560)
    st.subheader("Download the model")
    if row.state == "COMPLETE" and row.val_accuracy is not None and rec.weights_artifact_id:
        export_panel(sel, number, key="trial_export")
    else:
        st.info("Only a trial that finished training with saved weights can be exported.")

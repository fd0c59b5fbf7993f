"""The runs table: every trial as a row that sorts (click a header), filters (typed
conditions), shows the columns the user picks, and opens a trial's page when a row is chosen.

Numbers keep their type (so sorting is numeric) and are formatted by the table's column
settings: whole numbers without decimals, blanks empty (not ``None``).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Sequence
from urllib.parse import quote

import pandas as pd
import streamlit as st

from app.figures import progress_label
from app.state import Selection
from app.widgets import kept, selection_key
from storage import TrialRow

__all__ = ["apply_filter", "runs_table", "table"]

STYLE_LIMIT = 300  # above this, the trial column is not painted (Styler costs ~1 ms a row)
DEFAULT_COLUMNS = ["trial", "state", "family", "val_accuracy", "peak_memory_mb", "params",
                   "epochs", "time_s", "reason", "link"]


def table(rows: Sequence[TrialRow], epochs: dict[int, int | None], study: str = "") -> pd.DataFrame:
    """One line per trial; a running trial's epochs read ``epoch 2/3``; whole-number
    parameters stay whole numbers (nullable integers, not floats)."""
    lines = [{
        "trial": r.number, "state": r.category, "family": r.family,
        "val_accuracy": r.val_accuracy if r.state != "RUNNING" else (r.curve or [None])[-1],
        "peak_memory_mb": r.peak_memory_mb, "memory": r.memory_method, "params": r.param_count,
        # Text: "3", or "epoch 1/3" while running (one column type for Arrow).
        "epochs": progress_label(r, epochs.get(r.number)) if r.state == "RUNNING"
        else ("" if r.epochs_run is None else str(r.epochs_run)),
        "time_s": None if r.wall_time_s is None else round(r.wall_time_s, 1),
        "reason": r.reason or "",
        "link": f"./trial?study={quote(study)}&trial={r.number}",
        **r.params,
    } for r in rows]
    frame = pd.DataFrame(lines)
    for col in frame.columns:  # a blank turns an int column into floats (8.000000)
        values = [d[col] for d in lines if d.get(col) is not None]
        if col != "trial" and values and all(isinstance(v, int) and not isinstance(v, bool)
                                             for v in values):
            frame[col] = frame[col].astype("Int64")
    return frame


_OPS = {">=": operator.ge, "<=": operator.le, "!=": operator.ne, ">": operator.gt,
        "<": operator.lt, "=": operator.eq}
_TERM = re.compile(r"^\s*([\w.]+)\s*(>=|<=|!=|>|<|=)\s*(.+?)\s*$")


def apply_filter(frame: pd.DataFrame, text: str) -> tuple[pd.DataFrame, str | None]:
    """Keep the rows meeting every ``column op value`` condition of ``text`` (comma-separated;
    ``op`` one of ``= != > >= < <=``; text compares case-insensitively). Returns the rows and
    the problem with the text, if any (then the rows are unfiltered)."""
    mask = pd.Series(True, index=frame.index)
    for term in filter(None, (t.strip() for t in text.split(","))):
        m = _TERM.match(term)
        if not m:
            return frame, f"cannot read {term!r}: write column op value, e.g. val_accuracy > 0.8"
        col, op, raw = m.groups()
        if col not in frame.columns:
            return frame, (f"no column {col!r}; columns: {', '.join(map(str, frame.columns))}")
        values = frame[col]
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        if not math.isnan(number) and pd.api.types.is_numeric_dtype(values):
            mask &= _OPS[op](values.astype("Float64"), number).fillna(False).astype(bool)
        else:
            mask &= _OPS[op](values.astype(str).str.lower(), raw.strip("'\"").lower())
    return frame[mask], None


def _config(frame: pd.DataFrame) -> dict:
    cfg = {"trial": st.column_config.NumberColumn("trial", format="%d", pinned=True),
           "val_accuracy": st.column_config.NumberColumn(format="%.4f"),
           "peak_memory_mb": st.column_config.NumberColumn(format="%.2f"),
           "params": st.column_config.NumberColumn(format="localized"),
           "time_s": st.column_config.NumberColumn(format="%.1f"),
           "link": st.column_config.LinkColumn("page", display_text="open",
                                               help="the trial's own page (a link to share)")}
    for col in frame.columns:
        if col not in cfg and str(frame[col].dtype) == "float64":
            cfg[col] = st.column_config.NumberColumn(format="%.4g")
    return cfg


_FORMATS = {"val_accuracy": "{:.4f}", "peak_memory_mb": "{:.2f}", "params": "{:,}",
            "time_s": "{:.1f}"}


def _formats(frame: pd.DataFrame) -> dict[str, str]:
    """Styler formats (a Styler shows every float with six decimals otherwise)."""
    out = {}
    for col in frame.columns:
        kind = str(frame[col].dtype)
        if col in _FORMATS:
            out[col] = _FORMATS[col]
        elif kind == "float64":
            out[col] = "{:.4g}"
        elif kind == "Int64":
            out[col] = "{:d}"
    return out


@st.cache_resource(max_entries=16, show_spinner=False,
                   hash_funcs={list: lambda _: 0, dict: lambda _: 0})
def _table(url: str, study: str, token: tuple, numbers: tuple[int, ...],
           rows: Sequence[TrialRow], epochs: dict) -> pd.DataFrame:
    """:func:`table`, cached per data version and set of rows (the rows and epochs are
    determined by the others, so they are not hashed)."""
    return table(rows, epochs, study or "")


def runs_table(sel: Selection, rows: Sequence[TrialRow], epochs: dict[int, int | None]
               ) -> int | None:
    """Draw the table with its column picker and filter; the trial number of a chosen row."""
    from app.common import show_error, trial_colour

    frame = _table(sel.url, sel.study, sel.token, tuple(r.number for r in rows), rows, epochs)
    key = selection_key(sel)
    left, right = st.columns([2, 3])
    with left:
        cols = kept(st.multiselect, "Columns", f"runs_columns:{key}", [], list(frame.columns),
                    placeholder="the usual columns and every parameter")
    with right:
        text = kept(st.text_input, "Filter rows", f"runs_filter:{key}", "",
                    placeholder="e.g. val_accuracy > 0.8, family = cxv, state != pruned")
    shown, problem = apply_filter(frame, text or "")
    if problem:
        show_error(problem)
    order = list(cols) or [c for c in frame.columns
                           if c in DEFAULT_COLUMNS or c not in ("memory",)]
    shown = shown.reset_index(drop=True)
    data = shown
    if len(shown) <= STYLE_LIMIT:  # the trial column in each trial's colour
        data = (shown.style
                .map(lambda n: f"background-color: {trial_colour(int(n))}; color: white",
                     subset=["trial"])
                .format(_formats(shown), na_rep=""))
    st.caption(f"{len(shown)} of {len(frame)} trials. Click a header to sort; choose a row "
               "to open its trial.")
    height = min(36 * (len(shown) + 1) + 3, 640)  # up to ~17 rows before it scrolls
    event = st.dataframe(data, hide_index=True, column_order=order, column_config=_config(shown),
                         height=height,
                         placeholder="", on_select="rerun", selection_mode="single-row",
                         key=f"runs_table:{key}")
    picked = event.selection.rows if event is not None else []
    return int(shown["trial"].iloc[picked[0]]) if picked else None

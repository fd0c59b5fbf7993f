"""Two trials side by side: their metrics, the settings where their configs differ, and their
learning curves on one chart."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app import data
from app.figures import curves_figure
from app.state import require_study
from app.widgets import kept, selection_key


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"depth": 2}}`` -> ``{"model.depth": 2}``."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> pd.DataFrame:
    """Every setting of either config; those that differ first."""
    fa, fb = flatten(a), flatten(b)
    lines = [{"setting": k, "A": repr(fa.get(k, "-")), "B": repr(fb.get(k, "-")),
              "differs": fa.get(k, "-") != fb.get(k, "-")} for k in sorted(set(fa) | set(fb))]
    return pd.DataFrame(sorted(lines, key=lambda d: not d["differs"]),
                        columns=["setting", "A", "B", "differs"])


def metrics(row) -> dict[str, str]:
    """A trial's results as text, for a side-by-side table."""
    def fmt(v: Any, spec: str = "") -> str:
        return "-" if v is None else format(v, spec)

    return {"state": row.category, "family": fmt(row.family),
            "val_accuracy": fmt(row.val_accuracy, ".4f"),
            "peak_memory_mb": fmt(row.peak_memory_mb, ".2f"), "params": fmt(row.param_count, ","),
            "epochs": str(len(row.curve)), "switch to SGD at epoch": fmt(row.switched_at),
            "time_s": fmt(row.wall_time_s, ".1f"), "reason": fmt(row.reason)}


def label(row) -> str:
    acc = "" if row.val_accuracy is None else f", val acc {row.val_accuracy:.4f}"
    return f"trial {row.number} ({row.family or '?'}, {row.category}{acc})"


st.title("Compare two trials")
sel = require_study()
if sel:
    rows = {r.number: r for r in data.rows(sel.url, sel.study, sel.token)}
    cfgs = data.configs(sel.url, sel.study, sel.token)
    if len(rows) < 2:
        st.info("The study needs two trials to compare.")
    else:
        numbers = list(rows)
        # Default: the two most accurate trials that met the caps.
        ranked = sorted(numbers, key=lambda n: (not rows[n].feasible,
                                                -(rows[n].val_accuracy or -1.0)))
        key = selection_key(sel)
        left, right = st.columns(2)
        with left:
            a = kept(st.selectbox, "Trial A", f"compare_a:{key}", ranked[0], numbers,
                     format_func=lambda n: label(rows[n]))
        with right:
            b = kept(st.selectbox, "Trial B", f"compare_b:{key}", ranked[1], numbers,
                     format_func=lambda n: label(rows[n]))
        side = pd.DataFrame({f"trial {a} (A)": metrics(rows[a]), f"trial {b} (B)": metrics(rows[b])})
        st.dataframe(side, key="compare_metrics")
        st.subheader("Config")
        diff = config_diff(cfgs.get(a, {}), cfgs.get(b, {}))
        n_diff = int(diff["differs"].sum())
        st.caption(f"{n_diff} setting(s) differ." if a != b else "The same trial twice.")
        st.dataframe(diff.style.apply(lambda r: ["background-color: #fff3b0" if r["differs"]
                                                 else "" for _ in r], axis=1),
                     hide_index=True, key="config_diff")
        st.subheader("Learning curves")
        st.plotly_chart(curves_figure([rows[n] for n in dict.fromkeys((a, b)) if rows[n].curve]),
                        key="compare_curves")

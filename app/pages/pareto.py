"""Accuracy against peak memory: the feasible Pareto front, the rest, and the trial table."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app.common import REFRESH_S, cached_cap, cached_rows, pick_study

STYLE = {  # category -> (label, colour, marker)
    "pareto": ("Pareto front", "#d62728", "star"),
    "dominated": ("dominated", "#1f77b4", "circle"),
    "infeasible": ("infeasible (over a cap)", "#7f7f7f", "x"),
}


def pareto_figure(rows, cap_mb: float | None = None) -> go.Figure:
    """Scatter of validation accuracy vs peak memory, one trace per category; candidates
    rejected before training sit at accuracy 0; the memory cap is a dashed line."""
    fig = go.Figure()
    for cat, (label, colour, marker) in STYLE.items():
        pts = sorted((r for r in rows if r.category == cat and r.peak_memory_mb is not None
                      and (r.val_accuracy is not None or cat == "infeasible")),
                     key=lambda r: r.peak_memory_mb)
        fig.add_trace(go.Scatter(
            x=[r.peak_memory_mb for r in pts], y=[r.val_accuracy or 0.0 for r in pts],
            mode="lines+markers" if cat == "pareto" else "markers",
            line={"shape": "hv"} if cat == "pareto" else None,
            name=label, marker={"color": colour, "symbol": marker, "size": 11},
            customdata=[[r.number, r.family, r.param_count,
                         "not trained" if r.val_accuracy is None else f"val acc {r.val_accuracy:.4f}"]
                        for r in pts],
            hovertemplate="trial %{customdata[0]} (%{customdata[1]})<br>%{customdata[3]}<br>"
                          "peak %{x:.1f} MB<br>%{customdata[2]:,} params<extra></extra>",
        ))
    if cap_mb is not None:
        fig.add_vline(x=cap_mb, line_dash="dash", line_color="#7f7f7f",
                      annotation_text=f"cap {cap_mb:g} MB", annotation_position="top left")
    fig.update_layout(xaxis_title="peak training memory (MB)", yaxis_title="validation accuracy",
                      height=480, margin={"t": 30}, legend={"orientation": "h"})
    return fig


def table(rows):
    return [{
        "trial": r.number, "state": r.category, "family": r.family,
        "val_accuracy": r.val_accuracy, "peak_memory_mb": r.peak_memory_mb,
        "memory": r.memory_method, "params": r.param_count, "epochs": r.epochs_run,
        "time_s": None if r.wall_time_s is None else round(r.wall_time_s, 1),
        "reason": r.reason, **{k: v for k, v in r.params.items()},
    } for r in rows]


def render(url: str, study: str) -> None:
    rows = cached_rows(url, study)
    running = sum(r.state == "RUNNING" for r in rows)
    counts = {c: sum(r.category == c for r in rows) for c in ("pareto", "dominated", "infeasible",
                                                               "pruned", "fail", "running")}
    cols = st.columns(len(counts))
    for col, (name, n) in zip(cols, counts.items(), strict=True):
        col.metric(name, n)
    st.plotly_chart(pareto_figure(rows, cached_cap(url, study)), key="pareto_chart")
    st.subheader("Trials")
    st.dataframe(table(rows), hide_index=True)
    if running:
        st.caption(f"{running} trial(s) running: refreshing every {REFRESH_S} s")


st.title("Pareto front: accuracy vs memory")
picked = pick_study()
if picked:
    url, study = picked
    rows_now = cached_rows(url, study)
    if any(r.state == "RUNNING" for r in rows_now):
        st.fragment(run_every=REFRESH_S)(render)(url, study)
    else:
        render(url, study)

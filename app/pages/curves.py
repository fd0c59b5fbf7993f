"""Learning curves: validation accuracy per epoch, with the AdamW -> SGD switch marked."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app.common import cached_rows, pick_study


def curves_figure(rows) -> go.Figure:
    """One line per trial; a diamond marks the first SGD epoch under DualOpT."""
    fig = go.Figure()
    for r in rows:
        epochs = list(range(1, len(r.curve) + 1))
        fig.add_trace(go.Scatter(x=epochs, y=r.curve, mode="lines+markers",
                                 name=f"trial {r.number} ({r.family}, {r.state.lower()})"))
        if r.switched_at and r.switched_at <= len(r.curve):
            fig.add_trace(go.Scatter(
                x=[r.switched_at], y=[r.curve[r.switched_at - 1]], mode="markers",
                marker={"symbol": "diamond", "size": 13, "color": "black"}, showlegend=False,
                name=f"trial {r.number} switch", hovertemplate="switch to SGD at epoch %{x}"
                                                              "<extra></extra>"))
    fig.update_layout(xaxis_title="epoch", yaxis_title="validation accuracy", height=480,
                      margin={"t": 30})
    return fig


st.title("Learning curves")
picked = pick_study()
if picked:
    url, study = picked
    rows = [r for r in cached_rows(url, study) if r.curve]
    if not rows:
        st.info("No trial has finished an epoch yet.")
    else:
        default = [r.number for r in rows if r.pareto] or [rows[0].number]
        chosen = st.multiselect("Trials", [r.number for r in rows], default=default, key="curve_trials")
        st.plotly_chart(curves_figure([r for r in rows if r.number in chosen]), key="curves_chart")
        st.caption("Diamonds mark the first epoch trained with SGD (DualOpT's switch).")

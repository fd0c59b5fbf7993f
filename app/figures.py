"""Plotly figures drawn from trial rows: the Pareto scatter and the learning curves.

Every trial keeps one colour (:func:`app.common.trial_colour`) on every figure; the category of a
trial (Pareto, dominated, infeasible, running, pruned) is its marker's shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go

from app.common import trial_colour
from app.data import StudyInfo
from storage import TrialRow

__all__ = ["AXES", "CATEGORIES", "XAxis", "curves_figure", "pareto_figure", "progress_label"]


@dataclass(frozen=True)
class XAxis:
    """One choice of the Pareto chart's x axis."""

    field: str  # TrialRow attribute
    title: str
    unit: str


AXES = {
    "peak memory": XAxis("peak_memory_mb", "peak training memory (MB)", "MB"),
    "parameters": XAxis("param_count", "parameters", "params"),
    "wall time": XAxis("wall_time_s", "wall time (s)", "s"),
}
# category -> (legend label, marker symbol, size); the order is the legend's.
CATEGORIES = {
    "pareto": ("Pareto front", "star", 16),
    "dominated": ("dominated", "circle", 11),
    "infeasible": ("infeasible (over a cap)", "x", 11),
    "running": ("running (latest epoch)", "circle-open", 13),
    "pruned": ("stopped early", "triangle-down", 11),
}
_LEGEND_COLOUR = "#555555"


def progress_label(row: TrialRow, epochs: int | None) -> str:
    """``"epoch 2/3"`` for a trial that has reported epochs (``"epoch 2"`` without a total)."""
    done = len(row.curve)
    return f"epoch {done}/{epochs}" if epochs else f"epoch {done}"


def _accuracy(row: TrialRow) -> float | None:
    if row.state == "RUNNING":
        return row.curve[-1] if row.curve else None
    return row.val_accuracy


def pareto_figure(rows: Sequence[TrialRow], axis: XAxis, info: StudyInfo,
                  epochs: dict[int, int] | None = None) -> go.Figure:
    """Validation accuracy against ``axis``: one marker per trial in its colour, shaped by
    category; candidates rejected before training sit at accuracy 0; the cap of the axis (if
    the study has one) is a dashed line; the feasible front is a staircase when the axis is
    the study's second objective."""
    epochs = epochs or {}
    fig = go.Figure()
    for cat, (label, symbol, size) in CATEGORIES.items():
        pts = [r for r in rows if r.category == cat and getattr(r, axis.field) is not None
               and (_accuracy(r) is not None or cat == "infeasible")]
        pts.sort(key=lambda r: getattr(r, axis.field))
        # A grey legend entry per category; the points themselves carry their trial's colour.
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=label,
                                 legendgroup=cat, marker={"symbol": symbol, "size": size,
                                                          "color": _LEGEND_COLOUR}))
        if not pts:
            continue
        fig.add_trace(go.Scatter(
            x=[getattr(r, axis.field) for r in pts], y=[_accuracy(r) or 0.0 for r in pts],
            mode="markers", name=label, legendgroup=cat, showlegend=False,
            marker={"symbol": symbol, "size": size, "color": [trial_colour(r.number) for r in pts],
                    "line": {"width": 1 if "open" not in symbol else 2,
                             "color": "#222222" if "open" not in symbol
                             else [trial_colour(r.number) for r in pts]}},
            customdata=[[r.number, r.family or "?", r.param_count or 0, _status(r, epochs)]
                        for r in pts],
            hovertemplate=("trial %{customdata[0]} (%{customdata[1]})<br>%{customdata[3]}<br>"
                           f"{axis.title}: %{{x:,.4g}}<br>%{{customdata[2]:,}} params"
                           "<extra></extra>")))
    _front_line(fig, rows, axis, info)
    _cap_line(fig, rows, axis, info.cap_for(axis.field))
    fig.update_layout(xaxis_title=axis.title, yaxis_title="validation accuracy", height=500,
                      margin={"t": 30}, legend={"orientation": "h"})
    return fig


def _cap_line(fig: go.Figure, rows: Sequence[TrialRow], axis: XAxis, cap: float | None) -> None:
    """The cap as a dashed line; a cap far beyond every point is only named (drawing it would
    squeeze the points into a corner)."""
    if cap is None:
        return
    xs = [getattr(r, axis.field) for r in rows if getattr(r, axis.field) is not None]
    if xs and cap > 3 * max(xs):
        fig.add_annotation(text=f"cap {cap:,g} {axis.unit} (off the chart, right) →",
                           xref="paper", yref="paper", x=1, y=1.04, showarrow=False,
                           font={"color": "#7f7f7f"})
        return
    fig.add_vline(x=cap, line_dash="dash", line_color="#7f7f7f",
                  annotation_text=f"cap {cap:,g} {axis.unit}", annotation_position="top left")


def _status(r: TrialRow, epochs: dict[int, int]) -> str:
    if r.state == "RUNNING":
        return f"running, {progress_label(r, epochs.get(r.number))}"
    if r.val_accuracy is None:
        return "not trained" + (f": {r.reason}" if r.reason else "")
    return f"val acc {r.val_accuracy:.4f}"


def _front_line(fig: go.Figure, rows: Sequence[TrialRow], axis: XAxis, info: StudyInfo) -> None:
    """The staircase through the front, drawn when accuracy and ``axis`` are the objectives."""
    if set(info.objectives) != {"val_accuracy", axis.field}:
        return
    front = sorted((r for r in rows if r.pareto and getattr(r, axis.field) is not None
                    and r.val_accuracy is not None), key=lambda r: getattr(r, axis.field))
    if len(front) < 2:
        return
    fig.add_trace(go.Scatter(x=[getattr(r, axis.field) for r in front],
                             y=[r.val_accuracy for r in front], mode="lines",
                             line={"shape": "hv", "color": "#d62728", "width": 1.5},
                             name="front", legendgroup="pareto", showlegend=False,
                             hoverinfo="skip"))
    fig.data = (fig.data[-1],) + fig.data[:-1]  # under the markers


def curves_figure(rows: Sequence[TrialRow], epochs: dict[int, int] | None = None) -> go.Figure:
    """One line per trial in its colour (dotted while running); a diamond in the same colour
    marks the first SGD epoch under DualOpT, with the tooltip ``trial N: SGD from epoch E``."""
    epochs = epochs or {}
    fig = go.Figure()
    for r in rows:
        running = r.state == "RUNNING"
        colour = trial_colour(r.number)
        state = progress_label(r, epochs.get(r.number)) if running else r.category
        fig.add_trace(go.Scatter(
            x=list(range(1, len(r.curve) + 1)), y=r.curve, mode="lines+markers",
            name=f"trial {r.number} ({r.family or '?'}, {'running, ' if running else ''}{state})",
            legendgroup=f"t{r.number}",
            line={"color": colour, "dash": "dot" if running else "solid"},
            marker={"color": colour},
            hovertemplate=f"trial {r.number}<br>epoch %{{x}}: val acc %{{y:.4f}}<extra></extra>"))
        if r.switched_at and r.switched_at <= len(r.curve):
            fig.add_trace(go.Scatter(
                x=[r.switched_at], y=[r.curve[r.switched_at - 1]], mode="markers",
                name=f"trial {r.number} switch", legendgroup=f"t{r.number}", showlegend=False,
                marker={"symbol": "diamond", "size": 14, "color": colour,
                        "line": {"width": 1.5, "color": "#222222"}},
                hovertemplate=f"trial {r.number}: SGD from epoch {r.switched_at}<extra></extra>"))
    fig.update_layout(xaxis_title="epoch", yaxis_title="validation accuracy", height=500,
                      margin={"t": 30}, xaxis={"dtick": 1})
    return fig

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
from storage import TrialRow, front_2d

__all__ = ["AXES", "CATEGORIES", "XAxis", "axis_front", "curves_figure", "param_axes", "pareto_figure",
           "progress_label"]


@dataclass(frozen=True)
class XAxis:
    """One choice of the Pareto chart's x axis: a metric of the row or a searched parameter.

    Attributes:
        field: The TrialRow attribute, or the parameter's name when ``param``.
        title: The axis title.
        unit: The unit for the cap's label.
        param: The axis is a searched parameter (``TrialRow.params``).
        cost: Lower is better (a front of accuracy against it is drawn).
    """

    field: str
    title: str
    unit: str
    param: bool = False
    cost: bool = True

    def value(self, row: TrialRow) -> float | None:
        """The row's value on this axis (None: none, or not a number)."""
        v = row.params.get(self.field) if self.param else getattr(row, self.field)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


AXES = {
    "peak memory": XAxis("peak_memory_mb", "peak training memory (MB)", "MB"),
    "parameters": XAxis("param_count", "parameters", "params"),
    "wall time": XAxis("wall_time_s", "wall time (s)", "s"),
}


def param_axes(rows: Sequence[TrialRow]) -> dict[str, XAxis]:
    """A choice per numeric searched parameter (its name is its label)."""
    names = sorted({k for r in rows for k, v in r.params.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return {n: XAxis(n, n, "", param=True, cost=False) for n in names}


# category -> (legend label, marker symbol, size); drawn in reverse order, so the front is
# on top of everything else; the legend lists them in this order.
CATEGORIES = {
    "pareto": ("Pareto front", "star", 16),
    "dominated": ("dominated", "circle", 11),
    "infeasible": ("infeasible (over a cap)", "x", 11),
    "running": ("running (latest epoch)", "circle-open", 13),
    "pruned": ("stopped early", "triangle-down", 11),
}
_LEGEND_COLOUR = "#555555"
CROWD = 300  # above this many points, the rest is drawn small and faded under the front
WEBGL = 2000  # above this many points, WebGL (SVG slows the browser down)


FADED = "#7d8597"


def _short(v: float | None) -> float | None:
    """Six significant digits: the chart cannot show more, and 10,000 points of 17 digits
    make a spec of megabytes."""
    return None if v is None else float(f"{v:.6g}")


def progress_label(row: TrialRow, epochs: int | None) -> str:
    """``"epoch 2/3"`` for a trial that has reported epochs (``"epoch 2"`` without a total)."""
    done = len(row.curve)
    return f"epoch {done}/{epochs}" if epochs else f"epoch {done}"


def _accuracy(row: TrialRow) -> float | None:
    if row.state == "RUNNING":
        return row.curve[-1] if row.curve else None
    return row.val_accuracy


def axis_front(rows: Sequence[TrialRow], axis: XAxis, info: StudyInfo) -> tuple[set[int], str]:
    """The trials the stars mark on ``axis``, and the legend's name for them: the study's
    front when the axis is its second objective (or a parameter), else the front of
    accuracy against the axis among the feasible finished trials."""
    if axis.param or set(info.objectives) == {"val_accuracy", axis.field}:
        return {r.number for r in rows if r.pareto}, "Pareto front"
    pairs = [(r.number, r.val_accuracy, axis.value(r)) for r in rows
             if r.state == "COMPLETE" and r.feasible and r.val_accuracy is not None
             and axis.value(r) is not None]
    return front_2d(pairs), f"front on {axis.title.split(' (')[0]}"


def _category(r: TrialRow, front: set[int]) -> str:
    if r.category in ("pareto", "dominated"):
        return "pareto" if r.number in front else "dominated"
    return r.category


def pareto_figure(rows: Sequence[TrialRow], axis: XAxis, info: StudyInfo,
                  epochs: dict[int, int] | None = None, *, log_x: bool = False,
                  revision: str = "") -> go.Figure | None:
    """Validation accuracy against ``axis``: one marker per trial in its colour, shaped by
    category; candidates rejected before training sit at accuracy 0; the cap of the axis (if
    the study has one) is a dashed line; the front is a staircase. None when no trial has a
    point yet (an empty chart would show a meaningless -1..4 axis).

    Above :data:`CROWD` points the trials off the front are drawn small and faded under it,
    so the front stays readable. ``revision`` keeps the user's zoom across live refreshes
    (plotly's ``uirevision``): pass what identifies the chart (study, axis).
    """
    epochs = epochs or {}
    front, front_label = axis_front(rows, axis, info)
    by_cat: dict[str, list[TrialRow]] = {}
    for r in rows:
        cat = _category(r, front)
        if cat in CATEGORIES and axis.value(r) is not None \
                and (_accuracy(r) is not None or cat == "infeasible"):
            by_cat.setdefault(cat, []).append(r)
    n = sum(map(len, by_cat.values()))
    if n == 0:
        return None
    crowded, scatter = n > CROWD, (go.Scattergl if n > WEBGL else go.Scatter)
    fig = go.Figure()
    for cat in CATEGORIES:  # legend entries, grey, for the categories present only
        if cat in by_cat:
            label, symbol, size = CATEGORIES[cat]
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", legendgroup=cat,
                                     name=front_label if cat == "pareto" else label,
                                     marker={"symbol": symbol, "size": size,
                                             "color": _LEGEND_COLOUR}))
    _front_line(fig, [r for r in by_cat.get("pareto", [])], axis)
    for cat in reversed(CATEGORIES):  # the front last: on top
        pts = sorted(by_cat.get(cat, []), key=axis.value)
        if not pts:
            continue
        label, symbol, size = CATEGORIES[cat]
        faded = crowded and cat != "pareto" and cat != "running"
        # In a crowd, one colour: trial colours are unreadable there, and the spec shrinks.
        colours = FADED if faded else [trial_colour(r.number) for r in pts]
        fig.add_trace(scatter(
            x=[_short(axis.value(r)) for r in pts], y=[_short(_accuracy(r) or 0.0) for r in pts],
            mode="markers", name=label, legendgroup=cat, showlegend=False,
            opacity=0.35 if faded else 1.0,
            marker={"symbol": symbol, "size": 6 if faded else size, "color": colours,
                    "line": {"width": 0 if faded else (1 if "open" not in symbol else 2),
                             "color": "#222222" if "open" not in symbol else colours}},
            customdata=[[r.number, r.family or "?", r.param_count or 0, _status(r, epochs)]
                        for r in pts],
            hovertemplate=("trial %{customdata[0]} (%{customdata[1]})<br>%{customdata[3]}<br>"
                           f"{axis.title}: %{{x:,.4g}}<br>%{{customdata[2]:,}} params"
                           "<extra></extra>")))
    if not axis.param:
        _cap_line(fig, rows, axis, info.cap_for(axis.field))
    # The legend above the plot: below it, it covered the x axis's title.
    fig.update_layout(xaxis_title=axis.title, yaxis_title="validation accuracy", height=520,
                      margin={"t": 60}, uirevision=revision or None,
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    if log_x:
        fig.update_xaxes(type="log")
    return fig


def _cap_line(fig: go.Figure, rows: Sequence[TrialRow], axis: XAxis, cap: float | None) -> None:
    """The cap as a dashed line; a cap far beyond every point is only named (drawing it would
    squeeze the points into a corner)."""
    if cap is None:
        return
    xs = [x for r in rows if (x := axis.value(r)) is not None]
    if xs and cap > 3 * max(xs):
        fig.add_annotation(text=f"cap {cap:,g} {axis.unit} (off the chart, right) →",
                           xref="paper", yref="paper", x=1, y=0.02, showarrow=False,
                           xanchor="right", font={"color": "#7f7f7f"})
        return
    fig.add_vline(x=cap, line_dash="dash", line_color="#7f7f7f",
                  annotation_text=f"cap {cap:,g} {axis.unit}", annotation_position="top left")


def _status(r: TrialRow, epochs: dict[int, int]) -> str:
    if r.state == "RUNNING":
        return f"running, {progress_label(r, epochs.get(r.number))}"
    if r.val_accuracy is None:
        return "not trained" + (f": {r.reason}" if r.reason else "")
    return f"val acc {r.val_accuracy:.4f}"


def _front_line(fig: go.Figure, front: Sequence[TrialRow], axis: XAxis) -> None:
    """The staircase through the front of a cost axis (drawn first: under the markers)."""
    if axis.param:
        return
    pts = sorted((r for r in front if r.val_accuracy is not None), key=axis.value)
    if len(pts) < 2:
        return
    fig.add_trace(go.Scatter(x=[axis.value(r) for r in pts], y=[r.val_accuracy for r in pts],
                             mode="lines", line={"shape": "hv", "color": "#d62728", "width": 1.5},
                             name="front", legendgroup="pareto", showlegend=False,
                             hoverinfo="skip"))


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

"""Figures that explain a search, built with ``optuna.visualization`` (cached per data version).

Each figure reads only trials that trained and met every cap: a candidate rejected before
training carries placeholder objective values for the sampler, which would distort every
statistic here.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import optuna
import plotly.graph_objects as go
import streamlit as st
from optuna.trial import FrozenTrial, TrialState

from storage import StudyRecord, TrialRecord, load_study

__all__ = ["Insight", "hypervolume_history", "importances", "parallel_coordinates"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Insight:
    """A figure, or why there is none yet."""

    figure: go.Figure | None = None
    reason: str | None = None
    note: str | None = None


def _trained(url: str, study: str, families: tuple[str, ...] | None) -> tuple[optuna.Study,
                                                                               list[FrozenTrial]]:
    s = load_study(url, study)
    keep = []
    for t in s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        r = TrialRecord.read(t)
        if not r.screened_out and r.feasible and (families is None or r.family in families):
            keep.append(t)
    return s, keep


def _subset(s: optuna.Study, trials: list[FrozenTrial]) -> optuna.Study:
    """An in-memory study holding ``trials`` (optuna's plots take a study; it renumbers them
    from 0, see :func:`_renumber`)."""
    sub = optuna.create_study(directions=s.directions)
    sub.add_trials(trials)
    return sub


def _renumber(fig: go.Figure, trials: list[FrozenTrial]) -> go.Figure:
    """Put the real trial numbers back on a figure whose x axis is the subset's numbering."""
    numbers = [t.number for t in trials]
    for trace in fig.data:
        if getattr(trace, "x", None) is not None:
            trace.x = [numbers[int(x)] if 0 <= int(x) < len(numbers) else x for x in trace.x]
    step = max(1, math.ceil((numbers[-1] - numbers[0] + 1) / 12)) if numbers else 1
    fig.update_xaxes(tick0=0, dtick=step)  # whole trial numbers only
    return fig


def _objectives(s: optuna.Study) -> list[str]:
    return list(StudyRecord.read(s).objectives)


def reference_point(s: optuna.Study, trials: list[FrozenTrial]) -> list[tuple[str, float, str]]:
    """Per objective ``(name, value, why)``: accuracy 0; a capped metric at its cap; any other
    metric 10% beyond the worst value of the feasible trials."""
    record = StudyRecord.read(s)
    out = []
    for i, (name, d) in enumerate(zip(record.objectives, s.directions, strict=True)):
        values = [t.values[i] for t in trials]
        if d == optuna.study.StudyDirection.MAXIMIZE:
            out.append((name, 0.0, "zero") if name == "val_accuracy" else
                       (name, min(values) - 0.1 * abs(min(values)), "10% below the worst"))
        elif record.cap_for(name) is not None:
            out.append((name, record.cap_for(name), "the cap"))
        else:
            out.append((name, max(values) * 1.1 if max(values) > 0 else 1.0, "10% above the worst"))
    return out


@st.cache_data(max_entries=32, show_spinner=False)
def hypervolume_history(url: str, study: str, token: tuple,
                        families: tuple[str, ...] | None = None) -> Insight:
    """Hypervolume of the feasible front after each trial, with its reference point stated."""
    s, trials = _trained(url, study, families)
    if len(s.directions) < 2:
        if not trials:
            return Insight(reason="No trained feasible trial yet.")
        fig = _renumber(optuna.visualization.plot_optimization_history(
            _subset(s, trials), target_name=_objectives(s)[0]), trials)
        return Insight(fig, note="One objective: the best value so far after each trial.")
    if not trials:
        return Insight(reason="No trained feasible trial yet: the hypervolume starts with the "
                              "first one.")
    ref = reference_point(s, trials)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fig = optuna.visualization.plot_hypervolume_history(
            _subset(s, trials), reference_point=[v for _, v, _ in ref])
    _renumber(fig, trials)
    stated = ", ".join(f"{name} = {value:,.4g} ({why})" for name, value, why in ref)
    fig.update_layout(title={"text": f"Hypervolume of the feasible front<br><sup>reference "
                                     f"point: {stated}</sup>"},
                      height=420, xaxis_title="trial", yaxis_title="hypervolume")
    return Insight(fig, note=f"Reference point: {stated}.")


def _accuracy_index(s: optuna.Study) -> int:
    names = _objectives(s)
    return names.index("val_accuracy") if "val_accuracy" in names else 0


@st.cache_data(max_entries=32, show_spinner=False)
def parallel_coordinates(url: str, study: str, token: tuple,
                         families: tuple[str, ...] | None = None) -> Insight:
    """Every searched parameter on its own axis, the lines coloured by validation accuracy."""
    s, trials = _trained(url, study, families)
    if len(trials) < 2:
        return Insight(reason="Needs two trained feasible trials.")
    i = _accuracy_index(s)
    name = _objectives(s)[i]
    fig = optuna.visualization.plot_parallel_coordinate(
        _subset(s, trials), target=lambda t: t.values[i], target_name=name)
    _viridis(fig)
    fig.update_layout(height=460, title={"text": f"Parameters and {name}"})
    return Insight(fig)


def _viridis(fig: go.Figure) -> None:
    """Recolour optuna's parallel coordinates with viridis: its default scale fades the best
    lines to near white. Each line's first point is the target, scaled to 0..1."""
    from plotly.colors import sample_colorscale

    for trace in fig.data:
        if trace.mode == "lines" and trace.customdata is not None and trace.y \
                and isinstance(trace.y[0], (int, float)):  # one trial's line
            trace.line.color = sample_colorscale("Viridis", [float(trace.y[0])])[0]
            trace.opacity = 0.8
        elif trace.mode == "markers" and trace.marker.colorscale is not None:
            trace.marker.colorscale, trace.marker.reversescale = "Viridis", False


@st.cache_data(max_entries=32, show_spinner=False)
def importances(url: str, study: str, token: tuple,
                families: tuple[str, ...] | None = None) -> list[tuple[str, Insight]]:
    """Per objective: how much each parameter explains of it (fANOVA, fixed seed)."""
    s, trials = _trained(url, study, families)
    names = _objectives(s)
    if len(trials) < 3:
        return [(n, Insight(reason="Needs three trained feasible trials.")) for n in names]
    sub = _subset(s, trials)
    out = []
    for i, name in enumerate(names):
        if len({t.values[i] for t in trials if math.isfinite(t.values[i])}) < 2:
            out.append((name, Insight(reason=f"Every trial has the same {name}.")))
            continue
        try:
            fig = optuna.visualization.plot_param_importances(
                sub, target=lambda t, i=i: t.values[i], target_name=name,
                evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        except (ValueError, RuntimeError) as e:  # e.g. no parameter varies across the trials
            out.append((name, Insight(reason=f"Not computable yet: {e}")))
            continue
        fig.update_layout(height=360, title={"text": f"Importance for {name}"})
        out.append((name, Insight(fig, note="Parameters shared by all these trials; filter one "
                                            "family to see its own parameters.")))
    return out

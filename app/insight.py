"""Figures that explain a search, built with ``optuna.visualization`` (cached per data version).

Each figure reads only trials that trained and met every cap: a candidate rejected before
training carries placeholder objective values for the sampler, which would distort every
statistic here.
"""

from __future__ import annotations

import math
import random
import warnings
from dataclasses import dataclass

import optuna
import plotly.graph_objects as go
import streamlit as st
from optuna.trial import FrozenTrial, TrialState

from storage import StudyRecord, snapshot

__all__ = ["Insight", "hypervolume_history", "importances", "nice_step", "parallel_coordinates"]

IMPORTANCE_SAMPLE = 300  # fANOVA fits a forest per objective: 729 trials took 12 s, 300 take 1
IMPORTANCE_TREES = 16
PARCOORDS_LINES = 1000  # lines drawn at most (WebGL in software slows past this; unreadable)
PARCOORDS_TOP = 200  # of which the best by the target, always

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Insight:
    """A figure, or why there is none yet."""

    figure: go.Figure | None = None
    reason: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class _Trained:
    """The study's record and its trained feasible trials (what every figure here reads)."""

    record: StudyRecord
    trials: list[FrozenTrial]

    @property
    def directions(self) -> list[optuna.study.StudyDirection]:
        return [optuna.study.StudyDirection[d.upper()] for d in self.record.directions]


def _trained(url: str, study: str, families: tuple[str, ...] | None) -> _Trained:
    """Read through the app's incremental reader (no full reload of the study)."""
    snap = snapshot(url, study)
    keep = [t for t, r in zip(snap.trials, snap.records, strict=True)
            if r.state == TrialState.COMPLETE and not r.screened_out and r.feasible
            and (families is None or r.family in families)]
    return _Trained(snap.record, keep)


def _subset(s: _Trained, trials: list[FrozenTrial]) -> optuna.Study:
    """An in-memory study holding ``trials`` (optuna's plots take a study; it renumbers them
    from 0, see :func:`_renumber`)."""
    sub = optuna.create_study(directions=s.directions)
    sub.add_trials(trials)
    return sub


def nice_step(span: float, ticks: int = 10) -> int:
    """A whole tick step of 1, 2 or 5 times a power of ten giving at most about ``ticks``
    ticks over ``span`` (trial numbers read 0, 200, 400, not 0, 84, 168)."""
    raw = max(1.0, span / ticks)
    power = 10 ** math.floor(math.log10(raw))
    return int(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def _renumber(fig: go.Figure, trials: list[FrozenTrial]) -> go.Figure:
    """Put the real trial numbers back on a figure whose x axis is the subset's numbering."""
    numbers = [t.number for t in trials]
    for trace in fig.data:
        if getattr(trace, "x", None) is not None:
            trace.x = [numbers[int(x)] if 0 <= int(x) < len(numbers) else x for x in trace.x]
    step = nice_step(numbers[-1] - numbers[0] + 1) if numbers else 1
    fig.update_xaxes(tick0=0, dtick=step)  # whole trial numbers only
    return fig


def _objectives(s: _Trained) -> list[str]:
    return list(s.record.objectives)


def reference_point(s: _Trained, trials: list[FrozenTrial]) -> list[tuple[str, float, str]]:
    """Per objective ``(name, value, why)``: accuracy 0; a capped metric at its cap; any other
    metric 10% beyond the worst value of the feasible trials."""
    record = s.record
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
    s = _trained(url, study, families)
    trials = s.trials
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
    if len(trials) > 200:  # a marker per trial is a smear at this size, and slow to draw
        fig.update_traces(mode="lines")
    stated = ", ".join(f"{name} = {value:,.4g} ({why})" for name, value, why in ref)
    fig.update_layout(title={"text": f"Hypervolume of the feasible front<br><sup>reference "
                                     f"point: {stated}</sup>"},
                      height=420, xaxis_title="trial", yaxis_title="hypervolume")
    return Insight(fig, note=f"Reference point: {stated}.")


def _accuracy_index(s: _Trained) -> int:
    names = _objectives(s)
    return names.index("val_accuracy") if "val_accuracy" in names else 0


@st.cache_data(max_entries=32, show_spinner=False)
def parallel_coordinates(url: str, study: str, token: tuple,
                         families: tuple[str, ...] | None = None) -> Insight:
    """Every searched parameter on its own axis, the lines coloured by validation accuracy.

    One ``Parcoords`` trace however many trials (optuna's figure draws a trace per trial,
    which a browser cannot hold at 1,000); drag along an axis to keep only the lines in
    that range (several axes combine).
    """
    s = _trained(url, study, families)
    trials = s.trials
    if len(trials) < 2:
        return Insight(reason="Needs two trained feasible trials.")
    i = _accuracy_index(s)
    name = _objectives(s)[i]
    drawn, sampled = _lines(trials, i, s.directions[i]), ""
    if len(drawn) < len(trials):
        sampled = (f" {len(drawn)} of them drawn: the {PARCOORDS_TOP} best by {name} and a "
                   "fixed random sample of the rest (more lines are an unreadable block, and "
                   "slow to draw).")
    return Insight(parcoords(drawn, i, name),
                   note=f"{len(trials)} trials.{sampled} Drag along an axis to keep the trials in a "
                        "range (brushing); click outside the range to clear it. Log-scaled "
                        "parameters are shown as log10.")


def _lines(trials: list[FrozenTrial], target: int, direction) -> list[FrozenTrial]:
    """At most :data:`PARCOORDS_LINES` trials: the best :data:`PARCOORDS_TOP` by the target
    and a fixed random sample of the others, in trial order."""
    if len(trials) <= PARCOORDS_LINES:
        return trials
    best_first = sorted(trials, key=lambda t: t.values[target],
                        reverse=direction == optuna.study.StudyDirection.MAXIMIZE)
    top, rest = best_first[:PARCOORDS_TOP], best_first[PARCOORDS_TOP:]
    keep = top + random.Random(0).sample(rest, PARCOORDS_LINES - PARCOORDS_TOP)
    return sorted(keep, key=lambda t: t.number)


def _axis(name: str, values: list, dist) -> dict:
    """One parcoords dimension: numbers as they are (log10 for log-scaled ones), choices as
    their index with their labels."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        choices = list(dist.choices)
        idx = [choices.index(v) if v in choices else None for v in values]
        return {"label": name, "values": idx, "tickvals": list(range(len(choices))),
                "ticktext": [str(c) for c in choices]}
    if getattr(dist, "log", False):
        return {"label": f"log10 {name}",
                "values": [None if v is None else math.log10(v) for v in values]}
    return {"label": name, "values": values}


def parcoords(trials: list[FrozenTrial], target: int, target_name: str) -> go.Figure:
    """The parameters of ``trials`` as one parcoords trace, the last axis ``target_name``."""
    dists: dict = {}
    for t in trials:
        dists.update(t.distributions)
    names = sorted(dists)
    dims = [_axis(n, [t.params.get(n) for t in trials], dists[n]) for n in names]
    y = [t.values[target] for t in trials]
    dims.append({"label": target_name, "values": y})
    fig = go.Figure(go.Parcoords(
        dimensions=dims, labelangle=-25, labelside="top",
        labelfont={"size": 12}, rangefont={"size": 10}, tickfont={"size": 11},
        line={"color": y, "colorscale": "Viridis", "showscale": True,
              "colorbar": {"title": {"text": target_name}}}))
    # Room above for the angled labels and each axis's top value, at both ends for the tick
    # labels (they were clipped); the count goes in the page's caption, not over the labels.
    fig.update_layout(height=500, margin={"l": 90, "r": 90, "t": 120, "b": 40})
    return fig


@st.cache_data(max_entries=32, show_spinner=False)
def importances(url: str, study: str, token: tuple,
                families: tuple[str, ...] | None = None) -> list[tuple[str, Insight]]:
    """Per objective: how much each parameter explains of it (fANOVA, fixed seed)."""
    s = _trained(url, study, families)
    trials = s.trials
    names = _objectives(s)
    if len(trials) < 3:
        return [(n, Insight(reason="Needs three trained feasible trials.")) for n in names]
    sampled = ""
    if len(trials) > IMPORTANCE_SAMPLE:  # fixed seed: the same sample for the same trials
        sampled = f" Fitted on a random sample of {IMPORTANCE_SAMPLE} of {len(trials)} trials."
        trials = random.Random(0).sample(trials, IMPORTANCE_SAMPLE)
    sub = _subset(s, trials)
    out = []
    for i, name in enumerate(names):
        if len({t.values[i] for t in trials if math.isfinite(t.values[i])}) < 2:
            out.append((name, Insight(reason=f"Every trial has the same {name}.")))
            continue
        try:
            fig = optuna.visualization.plot_param_importances(
                sub, target=lambda t, i=i: t.values[i], target_name=name,
                evaluator=optuna.importance.FanovaImportanceEvaluator(
                    n_trees=IMPORTANCE_TREES, seed=0))
        except (ValueError, RuntimeError) as e:  # e.g. no parameter varies across the trials
            out.append((name, Insight(reason=f"Not computable yet: {e}")))
            continue
        fig.update_layout(height=360, title={"text": f"Importance for {name}"})
        out.append((name, Insight(fig, note="Parameters shared by all these trials; filter one "
                                            "family to see its own parameters." + sampled)))
    return out

"""Widgets whose values outlive page switches, and the trial filters several pages share."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from app.state import Selection
from storage import TrialRow

__all__ = ["STATES", "kept", "ranked_choices", "selection_key", "trial_filters"]

CHOICES = 400  # trials a picker lists at most (each option travels to the browser every run)

# Trial categories in the order the filters list them.
STATES = ("pareto", "dominated", "infeasible", "running", "pruned", "fail", "interrupted",
          "waiting")


def selection_key(sel: Selection) -> str:
    """A short name for (storage, study): widgets and results keyed by it belong to one study."""
    return hashlib.sha1(f"{sel.url}\n{sel.study}".encode()).hexdigest()[:10]


def kept(widget: Callable[..., Any], label: str, name: str, default: Any,
         options: Sequence[Any] | None = None, **kwargs: Any) -> Any:
    """Render ``widget`` with a value kept in plain session state under ``name``.

    Streamlit drops the state of a widget that a run does not draw (another page), and a
    page switch may carry the old page's state under the same key to a new widget; the value
    kept here seeds the widget on every run, so the choice survives page switches. Values no
    longer among ``options`` are dropped. Text widgets are seeded only when their value
    differs (seeding one on every run would overwrite what the user is typing at a refresh).
    """
    store: dict[str, Any] = st.session_state.setdefault("_kept", {})
    wkey = f"_w_{name}"
    value = store.get(name, default)
    if options is not None:
        opts = list(options)
        if isinstance(value, list):
            value = [v for v in value if v in opts]
        elif value not in opts:
            value = default if default in opts else (opts[0] if opts else None)
        kwargs["options"] = opts
    text = widget in (st.text_area, st.text_input)
    if not text or st.session_state.get(wkey) != value:
        st.session_state[wkey] = value
    store[name] = value

    def commit() -> None:
        store[name] = st.session_state[wkey]

    return widget(label, key=wkey, on_change=commit, **kwargs)


def trial_filters(sel: Selection, rows: Sequence[TrialRow]) -> list[TrialRow]:
    """Family and state filters (kept per study, shared by the pages; empty means all, so
    families and states that appear later are shown); the rows they keep."""
    families = sorted({r.family or "?" for r in rows})
    states = [s for s in STATES if any(r.category == s for r in rows)]
    key = selection_key(sel)
    left, right = st.columns(2)
    with left:
        fam = kept(st.multiselect, "Families", f"families:{key}", [], families,
                   placeholder="all families")
    with right:
        stt = kept(st.multiselect, "States", f"states:{key}", [], states,
                   placeholder="all states")
    fam, stt = set(fam or families), set(stt or states)
    return [r for r in rows if (r.family or "?") in fam and r.category in stt]


def ranked_choices(rows: Sequence[TrialRow], keep: Sequence[int] = (),
                   limit: int = CHOICES) -> list[int]:
    """Trial numbers a picker offers, best first: the front, then by validation accuracy,
    then the rest by number; at most ``limit`` of them plus ``keep`` (the current choice)."""
    ranked = sorted(rows, key=lambda r: (not r.pareto, not r.feasible,
                                         -(r.val_accuracy if r.val_accuracy is not None
                                           else -1.0), r.number))
    out = [r.number for r in ranked[:limit]]
    return out + [n for n in keep if n not in out and any(r.number == n for r in rows)]

"""The spec checked as you type: a component that watches the editor's text area.

A Streamlit text area sends its text only when it loses focus (or on Ctrl+Enter), so a spec
was checked on blur. This component (a static page, ``index.html``, in an iframe of the same
origin) reads the text area it is given by label while the user types and sends its text
400 ms after the last keystroke; the page checks that text. It also shows the cursor's line
and column, so "line 12" in a message can be found in the editor. Where no browser runs the
component (Streamlit's AppTest), it returns None and the page checks the text area's value.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

__all__ = ["typed_text"]


@st.cache_resource(show_spinner=False)
def _component():
    return components.declare_component("wavesearch_spec_watch",
                                        path=str(Path(__file__).resolve().parent))


def typed_text(label: str, *, key: str) -> str | None:
    """The text the user has typed into the text area labelled ``label`` (None: unknown)."""
    value = _component()(label=label, key=key, default=None)
    return value.get("text") if isinstance(value, dict) else None

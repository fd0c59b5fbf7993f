"""Shared pieces of the app's pages: the storage URL, the study picker, cached reads."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import streamlit as st

# `streamlit run app/main.py` puts app/ on sys.path, not the project root.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from engine.errors import WaveSearchError  # noqa: E402
from storage import TrialRow, list_studies, load_study, memory_cap_mb, trial_rows  # noqa: E402
from storage.schema import DEFAULT_STORAGE_URL  # noqa: E402

REFRESH_S = 3  # seconds between refreshes while trials are running


def storage_url() -> str:
    """The storage URL: the sidebar's value, initialised from ``WAVESEARCH_STORAGE``."""
    if "storage_url" not in st.session_state:
        st.session_state["storage_url"] = os.environ.get("WAVESEARCH_STORAGE", DEFAULT_STORAGE_URL)
    return st.sidebar.text_input("Storage URL", key="storage_url")


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def cached_studies(url: str) -> list[tuple[str, int, tuple[str, ...]]]:
    return [(s.name, s.n_trials, s.objectives) for s in list_studies(url)]


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def cached_rows(url: str, study: str) -> list[TrialRow]:
    return trial_rows(load_study(url, study))


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def cached_cap(url: str, study: str) -> float | None:
    return memory_cap_mb(load_study(url, study))


def pick_study() -> tuple[str, str] | None:
    """Sidebar study selector; returns ``(url, study)`` or None after showing why not."""
    url = storage_url()
    try:
        studies = cached_studies(url)
    except WaveSearchError as e:
        st.error(str(e))
        return None
    if not studies:
        st.info(f"No studies in {url} yet. Start one with `engine search SPEC`.")
        return None
    names = [s[0] for s in studies]
    if st.session_state.get("study") not in names:
        st.session_state["study"] = names[0]
    st.sidebar.selectbox("Study", names, key="study")
    return url, st.session_state["study"]

"""Links that carry the study, the page and the trial: the browser's URL is
``/<page>?study=NAME&trial=N``, so a reload, a bookmark or a shared link opens the same view.

The page is the URL's path (``st.navigation`` gives each page one); the sidebar writes the
chosen study into the query string on every run and reads it when a session starts; the
trial page writes and reads ``trial``. The storage URL is never put in a link (it may hold a
password): a link opens on the storage the app was started with.
"""

from __future__ import annotations

import streamlit as st

__all__ = ["STUDY", "TRIAL", "TRIAL_PAGE", "open_trial", "requested_study", "requested_trial",
           "show_study", "show_trial"]

STUDY, TRIAL = "study", "trial"
TRIAL_PAGE = "views/trial.py"


def requested_study() -> str | None:
    """The study the URL names (None: none)."""
    return st.query_params.get(STUDY) or None


def requested_trial() -> int | None:
    """The trial number the URL names (None: none, or not a number)."""
    raw = st.query_params.get(TRIAL)
    try:
        return None if raw is None else int(raw)
    except ValueError:
        return None


def show_study(study: str | None) -> None:
    """Put ``study`` in the URL (only when it differs: each write is a message to the
    browser)."""
    if study and st.query_params.get(STUDY) != study:
        st.query_params[STUDY] = study


def show_trial(number: int | None) -> None:
    """Put trial ``number`` in the URL (None: take it out)."""
    if number is None:
        if TRIAL in st.query_params:
            del st.query_params[TRIAL]
    elif st.query_params.get(TRIAL) != str(number):
        st.query_params[TRIAL] = str(number)


def open_trial(number: int) -> None:
    """Go to the page of trial ``number`` of the chosen study."""
    params = {TRIAL: str(number)}
    if requested_study():
        params[STUDY] = requested_study()
    st.switch_page(TRIAL_PAGE, query_params=params)

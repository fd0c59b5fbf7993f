"""Entry point of the app: the sidebar every page shares, then the navigation.

The sidebar (storage URL, study, progress) is drawn here, before ``nav.run()``, so its
choices hold across pages (see ``app/state.py``).
"""

import sys
from pathlib import Path

import streamlit as st

# `streamlit run app/main.py` puts app/ on sys.path, not the project root.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from app.state import sidebar  # noqa: E402

st.set_page_config(page_title="WaveSearch", layout="wide")
nav = st.navigation([
    st.Page("views/pareto.py", title="Pareto front", default=True),
    st.Page("views/curves.py", title="Learning curves"),
    st.Page("views/analysis.py", title="Search analysis"),
    st.Page("views/compare.py", title="Compare trials"),
    st.Page("views/trial.py", title="Trial"),
    st.Page("views/export.py", title="Export"),
    st.Page("views/new_search.py", title="New search"),
])
sidebar()
nav.run()

"""Entry point of the app: builds the navigation, nothing else."""

import streamlit as st

st.set_page_config(page_title="WaveSearch", layout="wide")
st.navigation([
    st.Page("pages/pareto.py", title="Pareto front", default=True),
    st.Page("pages/curves.py", title="Learning curves"),
    st.Page("pages/export.py", title="Export"),
]).run()

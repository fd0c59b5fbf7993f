"""A Plotly chart that keeps the user's zoom while the page refreshes itself.

``st.plotly_chart`` gives a chart a new identity whenever its figure changes (the figure is
part of the element's id), so the browser draws a new chart at every live refresh and a zoom
the user set is lost. This component keeps one chart per key: each new figure reaches the
same element, which redraws it with ``Plotly.react``; with ``layout.uirevision`` unchanged,
Plotly keeps the user's zoom, pan and hidden legend entries.

The component is a static page (``index.html`` here) and the ``plotly.min.js`` of the
installed plotly package, copied beside it once into a folder Streamlit serves. A click on a
point returns its trial number (its ``customdata[0]``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import plotly
import plotly.graph_objects as go
import streamlit as st
import streamlit.components.v1 as components

__all__ = ["figure_json", "live_chart"]

_HERE = Path(__file__).resolve().parent


@st.cache_resource(show_spinner=False)
def _component():
    """Declare the component once per server, from a folder holding its page and plotly.js."""
    folder = Path(tempfile.gettempdir()) / f"wavesearch-live-chart-{plotly.__version__}"
    folder.mkdir(parents=True, exist_ok=True)
    page = (_HERE / "index.html").read_text()
    if not (folder / "index.html").exists() or (folder / "index.html").read_text() != page:
        (folder / "index.html").write_text(page)
    js = folder / "plotly.min.js"
    if not js.exists():
        src = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
        tmp = folder / f".plotly.min.js.{id(folder)}"
        shutil.copyfile(src, tmp)
        tmp.replace(js)  # atomic: another server may copy at the same time
    return components.declare_component("wavesearch_live_chart", path=str(folder))


def figure_json(fig: go.Figure) -> str:
    """The spec :func:`live_chart` draws (worth caching: at 10,000 points plotly takes a
    second to validate and serialise a figure)."""
    fig.update_layout(template="plotly_white")  # st.plotly_chart's theme is not applied here
    return fig.to_json()


def live_chart(fig: go.Figure | str, *, key: str) -> int | None:
    """Draw ``fig`` (a figure, or :func:`figure_json` of one; give it a ``layout.uirevision``
    to keep the zoom); the trial number of a point the user clicked since the last call with
    this key, else None."""
    spec = fig if isinstance(fig, str) else figure_json(fig)
    clicked = _component()(spec=spec, key=key, default=None)
    seen = st.session_state.setdefault("_live_chart_clicks", {})
    if not clicked or seen.get(key) == clicked.get("at"):
        return None
    seen[key] = clicked.get("at")
    trial = clicked.get("trial")
    return int(trial) if isinstance(trial, (int, float)) else None

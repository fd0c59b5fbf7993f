"""Building a trial's model as a download: a safetensors checkpoint or a verified ONNX graph.

A built file is kept with the (storage, study, trial, format) it was built for and dropped as
soon as any of them changes, so the download always holds the model the page names. torch is
imported only here, inside the build, through ``engine.export``.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from app.common import escape_markdown, show_error
from app.state import Selection
from engine.errors import WaveSearchError

__all__ = ["FORMATS", "Format", "export_panel"]

EXPORT_KEY = "export"  # {"for": (url, study, trial, format), "blob": bytes, "metrics": dict}


@dataclass(frozen=True)
class Format:
    """One download format: its label, file suffix and MIME type."""

    label: str
    suffix: str
    mime: str
    loads_with: str


FORMATS = {
    "checkpoint": Format("checkpoint (.safetensors: weights + the config that rebuilds them)",
                         ".safetensors", "application/octet-stream",
                         "Load it with engine.load_model(path)."),
    "onnx": Format("ONNX (.onnx: the verified graph, for onnxruntime and other runtimes)",
                   ".onnx", "application/octet-stream",
                   "Run it with onnxruntime: input images (B, C, H, W) float32, output logits."),
}


def _build(url: str, study: str, number: int, fmt: str, with_test: bool) -> tuple[bytes, dict]:
    from engine.export import build_checkpoint, checkpoint_bytes, onnx_bytes  # torch only here

    ckpt = build_checkpoint(url, study, trial_number=number, test_accuracy=with_test)
    blob = onnx_bytes(ckpt, where=f"trial {number}") if fmt == "onnx" else checkpoint_bytes(ckpt)
    return blob, dict(ckpt["metrics"])


def export_panel(sel: Selection, number: int, *, key: str = "export") -> None:
    """Format choice, the build button and, once built, the download of trial ``number``."""
    fmt = st.radio("Format", list(FORMATS), format_func=lambda f: FORMATS[f].label,
                   key=f"{key}_format")
    target = (sel.url, sel.study, number, fmt)
    if (st.session_state.get(EXPORT_KEY) or {}).get("for") != target:
        st.session_state.pop(EXPORT_KEY, None)  # built for another storage, study, trial, format
    with_test = st.checkbox("Measure test accuracy (the search never saw the test split)",
                            value=True, key=f"{key}_with_test")
    if st.button("Export checkpoint" if fmt == "checkpoint" else "Export ONNX",
                 key=f"{key}_button"):
        try:
            with st.spinner(f"Rebuilding trial {number}…"):
                blob, metrics = _build(sel.url, sel.study, number, fmt, with_test)
        except WaveSearchError as e:
            show_error(str(e))
        else:
            st.session_state[EXPORT_KEY] = {"for": target, "blob": blob, "metrics": metrics}
    built = st.session_state.get(EXPORT_KEY)
    if built and built["for"] == target:
        f = FORMATS[fmt]
        st.success(f"{'Checkpoint' if fmt == 'checkpoint' else 'ONNX model'} of trial {number} "
                   f"of study {escape_markdown(sel.study or '')} ready "
                   f"({len(built['blob']) / 1024:.0f} KiB).")
        st.json(built["metrics"])
        st.download_button("Download checkpoint" if fmt == "checkpoint" else "Download ONNX", data=built["blob"], key=f"{key}_download",
                           file_name=f"{sel.study}-trial{number}{f.suffix}", mime=f.mime)
        st.caption(f.loads_with)

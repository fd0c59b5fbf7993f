"""Shared presentation helpers of the pages: trial colours, safe error text, formats."""

from __future__ import annotations

import re
import time

import streamlit as st

__all__ = ["escape_markdown", "show_error", "trial_colour", "when"]

# Backslash-escaping every ASCII punctuation mark Streamlit's markdown reacts to (CommonMark
# allows escaping any of them): `**`, `_`, `[x](y)`, `$math$`, `:red[...]`, `:emoji:`, HTML.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>$:~=^&\"'])")


def escape_markdown(text: str) -> str:
    """``text`` shown literally by Streamlit's markdown (line breaks kept)."""
    return _MARKDOWN.sub(r"\\\1", text).replace("\n", "  \n")


def show_error(text: str) -> None:
    """A red error box that shows ``text`` exactly: paths, URLs and messages from the engine
    often contain ``__`` or ``*``, which markdown would turn into formatting."""
    st.error(escape_markdown(text))


def trial_colour(number: int) -> str:
    """The colour of trial ``number``, the same on every page and distinct for every trial.

    Hues step by the golden angle, so consecutive trials are far apart; the lightness changes
    every 13 trials, so trials whose hues come close again (21, 34 apart) still differ.
    """
    hue = (number * 137.508) % 360.0
    light = (45, 62, 32)[(number // 13) % 3]
    return f"hsl({hue:.1f}, 70%, {light}%)"


def when(unix_s: float | None) -> str:
    """A Unix time as local ``HH:MM:SS`` (today) or ``YYYY-MM-DD HH:MM``."""
    if unix_s is None:
        return "-"
    t = time.localtime(unix_s)
    if time.strftime("%Y-%m-%d", t) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M:%S", t)
    return time.strftime("%Y-%m-%d %H:%M", t)

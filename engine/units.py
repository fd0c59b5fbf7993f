"""Durations in words, the one way the CLI and the app write them."""

from __future__ import annotations

__all__ = ["format_duration"]


def format_duration(seconds: float | None, *, precise: bool = False) -> str:
    """``seconds`` in words; None -> ``"unknown"``.

    Args:
        seconds: The duration.
        precise: Two units, for a clock the user watches (the app): ``95`` -> ``"1 min 35 s"``,
            ``3700`` -> ``"1 h 01 min"``. Otherwise one rounded unit, for estimates (the CLI):
            ``"0.4 s"``, ``"45 s"``, ``"12 min"``, ``"3.5 h"``, ``"2.1 days"``.
    """
    if seconds is None:
        return "unknown"
    if precise:
        s = max(0, int(round(seconds)))
        if s < 60:
            return f"{s} s"
        if s < 3600:
            return f"{s // 60} min {s % 60:02d} s"
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"

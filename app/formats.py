"""Values as people read them: whole numbers without decimals, short floats, no quotes, a dash
for nothing; and trial configs flattened and set side by side (the Compare and Trial pages)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

__all__ = ["config_table", "flatten", "metrics", "show_value", "side_by_side"]


def show_value(v: Any, spec: str = "") -> str:
    """``v`` as text: ``-`` for None, floats to 4 significant digits (or ``spec``), whole
    floats as whole numbers, strings without quotes, lists as ``a, b``."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if spec and isinstance(v, (int, float)):
        return format(v, spec)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else format(v, ".4g")
    if isinstance(v, (list, tuple)):
        return ", ".join(show_value(x) for x in v)
    return str(v)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"depth": 2}}`` -> ``{"model.depth": 2}``."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_table(configs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Every setting of any of ``configs`` (column name -> config), one column per config,
    plus ``differs``; the settings that differ first."""
    flat = {name: flatten(c) for name, c in configs.items()}
    keys = sorted({k for f in flat.values() for k in f})
    lines = []
    for k in keys:
        values = [f.get(k) for f in flat.values()]
        line = {"setting": k, **{name: show_value(v) for name, v in zip(flat, values, strict=True)}}
        line["differs"] = len({repr(v) for v in values}) > 1
        lines.append(line)
    lines.sort(key=lambda d: not d["differs"])
    return pd.DataFrame(lines, columns=["setting", *flat, "differs"])


def side_by_side(rows: Sequence[Any]) -> pd.DataFrame:
    """The results of several trials as text, one column per trial."""
    return pd.DataFrame({f"trial {r.number}": metrics(r) for r in rows})


def metrics(row: Any) -> dict[str, str]:
    """A trial's results as text, for a side-by-side table."""
    return {"state": row.category, "family": show_value(row.family),
            "val_accuracy": show_value(row.val_accuracy, ".4f"),
            "peak_memory_mb": show_value(row.peak_memory_mb, ".2f"),
            "params": show_value(row.param_count, ","),
            "epochs": str(len(row.curve)), "switch to SGD at epoch": show_value(row.switched_at),
            "time_s": show_value(row.wall_time_s, ".1f"), "reason": show_value(row.reason)}

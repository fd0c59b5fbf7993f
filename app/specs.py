"""Specs in the app: templates, validation with located errors, and the spec of a resume.

Validation goes through :func:`engine.spec.load_spec`, the code path of ``engine validate``,
so the editor reports exactly what the command would (plus the line of the broken key).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st
import yaml

__all__ = ["Checked", "excerpt", "key_line", "resume_text", "templates", "validate"]

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
EDITOR_LABEL = "spec"  # the file name errors name for the editor's text


def templates() -> dict[str, str]:
    """``search_spaces/*.yaml`` by file name -> its text."""
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(SPACES.glob("*.yaml"))}


@dataclass(frozen=True)
class Checked:
    """The verdict on a spec text.

    Attributes:
        error: The message ``engine validate`` would print (None: valid).
        key: The dotted key the error is about, when known.
        line: The line of that key (or of the YAML error) in the text, when known.
        study: The study name of a valid spec.
        spec_hash: Its search-space hash (a resume must keep it).
        summary: One line: families, budget, objectives.
    """

    error: str | None = None
    key: str | None = None
    line: int | None = None
    study: str | None = None
    spec_hash: str | None = None
    summary: str | None = None


def key_line(text: str, key: str | None) -> int | None:
    """The 1-based line of dotted ``key`` in YAML ``text`` (its deepest existing part)."""
    if not key:
        return None
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in key.split("."):
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
    return line


@st.cache_data(max_entries=64, show_spinner="Checking the spec…")
def validate(text: str) -> Checked:
    """Check ``text`` as ``engine validate`` would (cached per text)."""
    import re

    from engine.errors import SpecError
    from engine.spec import load_spec, spec_hash

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / EDITOR_LABEL
        path.write_text(text, encoding="utf-8")
        try:
            spec = load_spec(path)
        except SpecError as e:
            message = str(e).replace(str(path), EDITOR_LABEL)
            found = re.search(r"at line (\d+)", message)
            line = int(found.group(1)) if found else key_line(text, e.key)
            return Checked(error=message, key=e.key, line=line)
    s = spec.search
    budget = " or ".join(([f"{s.n_trials} trials"] if s.n_trials is not None else [])
                         + ([f"{s.budget_epochs} epochs"] if s.budget_epochs is not None else []))
    summary = (f"study {spec.study.name}: {', '.join(spec.model)}; {budget}; "
               f"{spec.train.epochs} epochs a trial; objectives {', '.join(spec.objective_names)}")
    return Checked(study=spec.study.name, spec_hash=spec_hash(spec), summary=summary)


def resume_text(spec: dict[str, Any], n_trials: int | None, budget_epochs: int | None,
                study: str | None = None) -> str:
    """The YAML of a study's stored spec with a new budget (the search space unchanged).

    Args:
        study: The study to resume: its name replaces the stored ``study.name`` (a study
            copied under another name stores its original's name; resuming must train the
            study the user chose, not the original).
    """
    search = dict(spec.get("search") or {})
    search["n_trials"] = n_trials
    if budget_epochs is not None or "budget_epochs" in search:
        search["budget_epochs"] = budget_epochs
    out = {**spec, "search": search}
    if study is not None:
        out["study"] = {**(spec.get("study") or {}), "name": study}
    return yaml.safe_dump(out, sort_keys=False)


def excerpt(text: str, line: int, around: int = 3) -> str:
    """The lines of ``text`` around 1-based ``line``, numbered, the line itself marked."""
    lines = text.splitlines()
    lo, hi = max(1, line - around), min(len(lines), line + around)
    width = len(str(hi))
    return "\n".join(f"{'>' if n == line else ' '} {n:>{width}} | {lines[n - 1]}"
                     for n in range(lo, hi + 1))

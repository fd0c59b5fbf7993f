"""Counts and change marks of studies, by SQL over Optuna's tables (no trial is loaded).

The app polls these every few seconds per open tab, so each is one or two indexed queries
whose cost does not grow with the finished trials: the study list with its trial counts,
each study's latest activity, and a study's :class:`ChangeMark` (what changed since the
last look). The table and column names are Optuna's RDB schema (``optuna/storages/_rdb/
models.py``, stable since Optuna 2); tests/test_live.py runs every query against a real
storage. It lives in the record package because the drivers' heartbeats are study
attributes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy
from sqlalchemy import text

from storage import schema
from storage.record.study import DriverInfo

__all__ = ["ChangeMark", "change_mark", "study_activity", "study_listing"]

_UNFINISHED = "('RUNNING', 'WAITING')"


@dataclass(frozen=True)
class ChangeMark:
    """What a study looks like from its tables: any change a reader shows changes the mark.

    Attributes:
        states: ``(state, count, largest trial id)`` per trial state.
        unfinished: Intermediate values and attribute rows of trials still running or
            waiting (an epoch reported, a size predicted).
        drivers: ``(id, state, live now)`` of every driver (a heartbeat alone changes
            nothing shown; a driver going quiet does).
        driver_info: The drivers themselves (heartbeats, ETAs), oldest first.
    """

    states: tuple[tuple[str, int, int], ...]
    unfinished: tuple[int, int]
    drivers: tuple[tuple[str, str, bool], ...]
    driver_info: tuple[DriverInfo, ...] = ()

    @property
    def token(self) -> tuple:
        """The hashable part: equal tokens, equal study."""
        return self.states, self.unfinished, self.drivers

    @property
    def n_trials(self) -> int:
        """Trials in the study, every state."""
        return sum(n for _, n, _ in self.states)


def _stamp(value: Any) -> float | None:
    """A DATETIME column as Unix time (SQLite returns text, PostgreSQL a datetime; Optuna
    stores local naive times, as ``FrozenTrial.datetime_start.timestamp()`` reads them)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.timestamp()


def _drivers(rows: Any) -> list[DriverInfo]:
    out = []
    for key, value_json in rows:
        try:
            value = json.loads(value_json)
        except (TypeError, ValueError):
            continue
        if isinstance(value, dict):
            out.append(DriverInfo.from_json(key[len(schema.DRIVER_PREFIX):], value))
    return sorted(out, key=lambda d: d.started_at)


def study_listing(engine: sqlalchemy.Engine) -> list[tuple[str, int]]:
    """``(name, number of trials)`` of every study, by name (one query)."""
    with engine.connect() as db:
        rows = db.execute(text(
            "SELECT s.study_name, COUNT(t.trial_id) FROM studies s "
            "LEFT JOIN trials t ON t.study_id = s.study_id "
            "GROUP BY s.study_id, s.study_name ORDER BY s.study_name")).all()
    return [(name, int(n)) for name, n in rows]


def study_activity(engine: sqlalchemy.Engine) -> dict[str, float]:
    """Study -> Unix time of its latest activity: a trial asked or finished, a heartbeat."""
    with engine.connect() as db:
        times = db.execute(text(
            "SELECT s.study_name, MAX(t.datetime_start), MAX(t.datetime_complete) "
            "FROM studies s LEFT JOIN trials t ON t.study_id = s.study_id "
            "GROUP BY s.study_id, s.study_name")).all()
        beats = db.execute(text(
            "SELECT s.study_name, a.key, a.value_json FROM study_user_attributes a "
            "JOIN studies s ON s.study_id = a.study_id WHERE a.key LIKE :prefix"),
            {"prefix": schema.DRIVER_PREFIX + "%"}).all()
    out = {name: max((x for x in (_stamp(a), _stamp(b)) if x is not None), default=0.0)
           for name, a, b in times}
    for name, key, value_json in beats:
        for d in _drivers([(key, value_json)]):
            out[name] = max(out.get(name, 0.0), d.heartbeat_at)
    return out


def change_mark(engine: sqlalchemy.Engine, study: str, now: float | None = None
                ) -> ChangeMark | None:
    """The :class:`ChangeMark` of ``study`` (None: no such study). Three small queries."""
    now = time.time() if now is None else now
    with engine.connect() as db:
        sid = db.execute(text("SELECT study_id FROM studies WHERE study_name = :n"),
                         {"n": study}).scalar()
        if sid is None:
            return None
        states = db.execute(text(
            "SELECT state, COUNT(*), MAX(trial_id) FROM trials WHERE study_id = :s "
            "GROUP BY state ORDER BY state"), {"s": sid}).all()
        unfinished = db.execute(text(
            "SELECT (SELECT COUNT(*) FROM trial_intermediate_values v JOIN trials t "
            f"ON t.trial_id = v.trial_id WHERE t.study_id = :s AND t.state IN {_UNFINISHED}), "
            "(SELECT COUNT(*) FROM trial_user_attributes a JOIN trials t "
            f"ON t.trial_id = a.trial_id WHERE t.study_id = :s AND t.state IN {_UNFINISHED})"),
            {"s": sid}).one()
        beats = db.execute(text(
            "SELECT key, value_json FROM study_user_attributes WHERE study_id = :s "
            "AND key LIKE :prefix"), {"s": sid, "prefix": schema.DRIVER_PREFIX + "%"}).all()
    drivers = _drivers(beats)
    return ChangeMark(states=tuple((str(s), int(n), int(m)) for s, n, m in states),
                      unfinished=(int(unfinished[0]), int(unfinished[1])),
                      drivers=tuple((d.id, d.state, d.live(now)) for d in drivers),
                      driver_info=tuple(drivers))

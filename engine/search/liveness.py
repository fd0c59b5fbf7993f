"""Liveness of the drivers sharing a study: heartbeats, and what a dead driver leaves behind.

While ``engine search`` runs, one :class:`DriverHeartbeat` thread

- records an Optuna heartbeat for each trial this driver runs (Optuna's own heartbeats run only
  inside ``Study.optimize``, which the driver does not use);
- refreshes the driver's record on the study (``schema.DRIVER_PREFIX`` + id: host, pid,
  heartbeat, deadline, ETA), which the app reads;
- fails the trials of dead drivers: a RUNNING trial whose heartbeat is older than the grace
  period is FAIL "interrupted" and its parameters are queued again, once
  (:func:`interrupt_trial`). A driver never fails a trial a live peer owns.

:func:`fail_orphans` does the same at start-up without waiting for the grace period where it
can tell for sure: a trial whose driver ran on this machine under a pid that no longer exists.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from storage import (
    DriverInfo,
    StudyRecord,
    optuna_api,
    read_trials,
    schema,
    write_study,
    write_trial,
)
from storage.backend import HEARTBEAT_S

__all__ = ["DriverHeartbeat", "fail_orphans", "fail_stale", "interrupt_trial"]

log = logging.getLogger(__name__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def interrupt_trial(study: optuna.Study, trial_id: int, params: dict[str, Any]) -> bool:
    """Fail a RUNNING trial as interrupted and queue its parameters again; True if this call
    did it (when several drivers try at once, exactly one re-queues)."""
    try:
        # The reason first: Optuna refuses attributes on a finished trial.
        write_trial(study, trial_id, fail_reason=schema.INTERRUPTED_REASON)
        if not optuna_api.fail_running(study, trial_id):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # another driver (or its own owner) finished it first
    study.enqueue_trial(params, skip_if_exists=False)
    return True


def fail_stale(study: optuna.Study) -> list[int]:
    """Interrupt the RUNNING trials whose heartbeat is older than the grace period (their
    process died, wherever it ran); returns the trial ids this call interrupted."""
    out = []
    for trial_id in optuna_api.stale_trial_ids(study):
        if interrupt_trial(study, trial_id, optuna_api.get_frozen(study, trial_id).params):
            out.append(trial_id)
    return out


def fail_orphans(study: optuna.Study, *, this_host: str | None = None) -> list[int]:
    """Fail (interrupted) and re-queue RUNNING trials whose driver is certainly dead; returns
    their numbers. Certain: the driver ran on this host and its pid is gone, or its record's
    heartbeat is stale, or the trial names no driver and has been running longer than the
    grace period with no heartbeat of its own (a study written before heartbeats existed)."""
    host = this_host or platform.node()
    now = time.time()
    dead = {d.id for d in StudyRecord.read(study).drivers
            if (d.host == host and not _pid_alive(d.pid)) or not d.live(now)}
    out = []
    for r in read_trials(study, states=(TrialState.RUNNING,)):
        owner = r.driver_id
        if (owner in dead or (owner is None and r.datetime_start is not None and
                              now - r.datetime_start.timestamp() > schema.DRIVER_STALE_S)) \
                and interrupt_trial(study, r.trial_id, r.params):
            out.append(r.number)
    return out


class DriverHeartbeat:
    """The driver's heartbeat thread (see the module docstring).

    Args:
        study: The study the driver works on.
        running_trials: Optuna trial ids this driver runs now.
        status: Extra fields for the driver's record (``eta_s``, ``deadline``, ...).
        interval_s: Seconds between beats.
    """

    def __init__(self, study: optuna.Study, *, running_trials: Callable[[], list[int]],
                 status: Callable[[], dict[str, Any]] = dict, interval_s: float = HEARTBEAT_S):
        self.study = study
        self.id = uuid.uuid4().hex[:12]
        self.running_trials = running_trials
        self.status = status
        self.interval_s = interval_s
        self.started_at = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, state: str = "running") -> None:
        """Write this driver's record now."""
        running = self.running_trials()
        write_study(self.study, driver=DriverInfo(
            id=self.id, host=platform.node(), pid=os.getpid(), started_at=self.started_at,
            heartbeat_at=time.time(), state=state, running_trials=len(running),
            **self.status()))

    def beat(self) -> None:
        """One heartbeat: this driver's trials, its record, and the trials of dead peers
        (at once for a peer on this host whose process is gone; after the grace period for
        any other)."""
        for trial_id in self.running_trials():
            optuna_api.record_heartbeat(self.study, trial_id)
        self.record()
        fail_orphans(self.study)
        fail_stale(self.study)

    def start(self) -> None:
        """Record the driver and start beating in a daemon thread."""
        self.record()
        self._thread = threading.Thread(target=self._run, name="wavesearch-heartbeat",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except Exception as e:  # a missed beat is retried; the search must go on
                log.warning("heartbeat failed (%s: %s); retrying", type(e).__name__, e)

    def stop(self, state: str) -> None:
        """Stop beating and record how the driver ended (``finished`` or ``stopped``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            self.record(state)
        except Exception as e:  # the study may be unreachable at the very end
            log.warning("could not record the driver's end (%s: %s)", type(e).__name__, e)

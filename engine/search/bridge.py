"""The driver-side bridge between Ray Tune and an Optuna study (ask/tell owned by the driver).

Ray Tune only executes trials. This bridge asks Optuna for each candidate, screens it, hands it
to Tune as an :class:`~engine.protocol.Assignment`, writes every epoch's validation
accuracy as an intermediate value (single- and multi-objective alike), and tells the final
state: COMPLETE with all objectives, PRUNED when a scheduler stopped the trial before its
budget, FAIL with a reason. Ray's stock ``OptunaSearch`` records early-stopped trials as
COMPLETE, drops the last epoch's value and keeps no curves for multi-objective studies
(docs/ARCHITECTURE.md, "Why the driver owns ask/tell"), hence this class.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from ray.tune import Callback
from ray.tune.search import Searcher

from engine.protocol import (
    METRIC,
    Assignment,
    Complete,
    Failed,
    Infeasible,
    Prediction,
    Progress,
    Pruned,
    Report,
    Screening,
)
from engine.search.budget import BudgetState, SearchBudget
from engine.search.gate import BudgetGate
from engine.search.liveness import interrupt_trial
from engine.search.recorder import TrialRecorder
from engine.space import SearchSpace
from engine.trial import TrialConfig
from engine.units import format_duration
from storage import optuna_api

__all__ = ["ErrorRecorder", "OptunaBridge"]

LONG_EPOCH_S = 30.0  # epochs at least this long get lines from inside them


class OptunaBridge(Searcher):
    """A Ray Tune searcher that asks and tells an Optuna study.

    The bridge decides; :class:`~engine.search.gate.BudgetGate` says whether a trial may
    start and how long the rest will take, :class:`~engine.search.recorder.TrialRecorder`
    writes each trial to the study.

    Args:
        study: The study to fill.
        space: The compiled search space.
        objectives: Metric names, in the study's direction order.
        budget: The limits of the search, counted in the study (engine.search.budget); a trial
            starts only while the budget allows it and, with a time budget, while it can finish
            by the deadline at the measured pace.
        progress: Called with one human-readable line per event.
        screen: Checks each candidate before it is scheduled (size, memory, caps).
        lock: The database lock (storage.locks.database_lock bound to the study's URL): the
            budget is read and the trial asked under it, so concurrent drivers never overshoot.
        driver_id: This driver's id, recorded on each trial it runs.
        max_concurrent: Trials this driver runs at once (for the time estimate).
    """

    def __init__(self, study: optuna.Study, space: SearchSpace, objectives: list[str], *,
                 budget: SearchBudget, progress: Callable[[str], None] = print,
                 screen: Callable[[TrialConfig], Screening] | None = None,
                 lock: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                 driver_id: str = "", max_concurrent: int = 1):
        super().__init__(metric=METRIC, mode="max")
        self.study = study
        self.space = space
        self.gate = BudgetGate(study, budget, max_concurrent=max_concurrent)
        self.record = TrialRecorder(study, objectives, budget.epochs_per_trial, progress)
        self.epochs = budget.epochs_per_trial
        self.progress = progress
        self.screen = screen
        self.lock = lock
        self.driver_id = driver_id
        self.live: dict[str, optuna.Trial] = {}
        self.predicted: dict[str, Prediction] = {}
        self.last: dict[str, Report] = {}
        self.errored: dict[str, optuna.Trial] = {}
        self.stopped_reason: str | None = None  # why this driver stopped starting trials
        # (config, rejection) of the smallest candidate screened out over a cap
        self.smallest_rejected: tuple[TrialConfig, Infeasible] | None = None
        self.estimate_shown = False
        self.probe_shown = False  # an estimate from the first steps, before any epoch ended
        self._said_finished = False
        self.finished = False  # the budget, not a stop, ended this driver's run
        self.interrupted = 0  # trials the run stopped mid-way (queued again by `sweep`)
        self.waiting_for_peers = False  # budget taken, but a peer's trial may still free some
        self._live_lock = threading.Lock()  # the heartbeat thread reads `live`

    # -- Searcher API --------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        # Candidates that cannot run (bad build, over a cap) are recorded here and do not
        # count towards n_trials (max_rejected bounds them), without ever occupying a worker.
        while True:
            if self.stopped_reason is not None:
                return self._finish_or_wait(None)
            with self.lock():
                state = self.gate.read()
                why = self._why_not(state)
                if why is not None:
                    return self._finish_or_wait(why, peers_running=state.running - len(self.live))
                trial = self.record.ask(self.driver_id)
            cfg = self.space.suggest(trial)
            verdict = self.screen(cfg) if self.screen else Screening()
            pred = verdict.prediction
            self.record.candidate(trial, cfg, pred)
            if verdict.rejection is not None:
                self.record.screened_out(trial)
                self.record.tell(trial, verdict.rejection)
                rej = verdict.rejection
                if isinstance(rej, Infeasible) and (
                        self.smallest_rejected is None
                        or rej.peak_memory_mb < self.smallest_rejected[1].peak_memory_mb):
                    self.smallest_rejected = (cfg, rej)
                continue
            pred = pred or Prediction(0, 0.0)
            late = self.gate.would_miss_deadline(pred)
            if late is not None:
                self.record.requeue(trial, late)
                self.stopped_reason = late
                continue
            self.record.scheduled(trial, trial_id)
            with self._live_lock:
                self.live[trial_id] = trial
            self.predicted[trial_id] = pred
            shown = ", ".join(f"{k.split('.', 1)[-1]}={_fmt(v)}" for k, v in trial.params.items())
            self.progress(f"trial {trial.number} scheduled: {cfg.family} {shown} "
                          f"({pred.param_count:,} params, {pred.peak_memory_mb:.1f} MB predicted)")
            return Assignment(optuna_api.trial_id(trial), trial.number, cfg, pred).to_tune()

    def _why_not(self, state: BudgetState) -> str | None:
        """Why no new trial may start: the budget, or the deadline (which stops this driver
        for good, so it never waits for peers)."""
        why = self.gate.budget.why_not(state)
        if why is None:
            why = self.gate.deadline_reached()
            if why is not None:
                self.stopped_reason = why
        return why

    def _finish_or_wait(self, why: str | None, peers_running: int = 0) -> str | None:
        """FINISHED once nothing can change the verdict; None (ask again later) while this
        driver's or a peer's running trial may still stop early, fail or die and free budget."""
        if self.live:
            return None
        if why is not None and peers_running > 0 and self.stopped_reason is None:
            # End this round of Tune and wait outside it (wait_for_peers). With none of its
            # trials left, Tune asks the searcher in a blocking loop and handles no other
            # event meanwhile, so the last trial's process and CPUs would stay held while the
            # peer's trial waits for them (3 drivers on a 2-CPU cluster never finished).
            self.waiting_for_peers = True
            return Searcher.FINISHED
        reason = why or self.stopped_reason
        if reason and not self._said_finished:
            self._said_finished = True
            self.progress(reason)
        self.finished = True
        return Searcher.FINISHED

    def wait_for_peers(self, poll_s: float = 2.0) -> bool:
        """Wait, holding no Ray resources, while peers' trials hold the rest of the budget.

        Returns:
            True when budget was freed (a peer's trial failed, was pruned early or its driver
            died): the driver starts another round. False when nothing is left to run: this
            driver is finished (and says why).
        """
        while True:
            with self.lock():
                state = self.gate.read()
                why = self._why_not(state)
            if why is None:
                self.waiting_for_peers = False
                return True
            if state.running == 0 or self.stopped_reason is not None:
                self.waiting_for_peers = False
                self._finish_or_wait(why)
                return False
            time.sleep(poll_s)

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its searcher with the experiment state (which we never restore from:
        # the study is the record); a lock and the estimator process cannot travel.
        return {k: v for k, v in self.__dict__.items() if k not in ("_live_lock", "screen")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._live_lock = threading.Lock()
        self.screen = None

    def running_trial_ids(self) -> list[int]:
        """Optuna ids of the trials this driver runs (read by the heartbeat thread)."""
        with self._live_lock:
            return [optuna_api.trial_id(t) for t in self.live.values()]

    def eta_s(self) -> float | None:
        """Seconds until this driver's search ends at the measured pace (None: unknown)."""
        return self.gate.eta_s()

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        trial = self.live.get(trial_id)
        progress = Progress.from_tune(result)
        if progress is not None and trial is not None:
            self._show_step(trial, trial_id, progress)
            return
        report = Report.from_tune(result)
        if trial is None or report is None:
            return
        if trial_id not in self.last:  # first report: where the trial runs, for the app
            self.record.run(trial, report)
        self.last[trial_id] = report
        self.record.epoch(trial, report)
        if report.has_epoch and report.epoch_s is not None and report.outcome is None:
            self.gate.pace.add(self.predicted.get(trial_id, Prediction(0, 0.0)).peak_memory_mb,
                               report.epoch_s)
            if not self.estimate_shown:
                self.estimate_shown = True
                line = self.gate.estimate_line()
                if line is not None:
                    self.progress(line)

    def _show_step(self, trial: optuna.Trial, trial_id: str, p: Progress) -> None:
        """A line from inside a long epoch; the first report, from a few steps, also estimates
        the whole search while no epoch has ended yet."""
        left = max(0.0, p.epoch_train_s - p.seconds)
        if p.epoch_train_s >= LONG_EPOCH_S:  # short epochs speak for themselves soon enough
            self.progress(f"trial {trial.number} epoch {p.epoch}/{self.epochs}: {p.step}/"
                          f"{p.steps} steps ({100 * p.step / p.steps:.0f}%), "
                          f"{p.images_per_s:,.0f} images/s, ~{format_duration(left)} left in "
                          "this epoch")
        if not self.gate.pace.measured and not self.probe_shown:
            self.probe_shown = True
            memory = self.predicted.get(trial_id, Prediction(0, 0.0)).peak_memory_mb
            self.gate.pace.guess(memory, p.epoch_train_s)
            line = self.gate.estimate_line()
            if line is not None:
                self.progress(f"{line} (from the first {p.step} steps: no epoch has ended yet)")

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        with self._live_lock:
            trial = self.live.pop(trial_id, None)
        if trial is None:
            return
        report = Report.from_tune(result) or self.last.pop(trial_id, None)
        if error:
            # The reason arrives with Tune's on_trial_error callback, just after this call.
            self.errored[trial_id] = trial
            return
        if report is not None:
            self.record.epoch(trial, report)  # no-op unless Tune skipped this last result
            self.record.run(trial, report)
        outcome = report.outcome if report is not None else None
        if outcome is None or (isinstance(outcome, Complete) and report.epoch < self.epochs):
            epoch = report.epoch if report is not None else 0
            outcome = Pruned(f"stopped by the scheduler after epoch {epoch} of {self.epochs}")
        self.record.tell(trial, outcome)
        self.progress(self.gate.progress_line())

    def fail(self, trial_id: str, reason: str) -> None:
        """Tell an errored trial FAIL with ``reason`` (called by :class:`ErrorRecorder`)."""
        trial = self.errored.pop(trial_id, None)
        if trial is not None:
            self.record.tell(trial, Failed(reason))

    def sweep(self) -> None:
        """Close what the run left open: crashed trials whose error never arrived are FAIL;
        trials still running when the run stopped are interrupted and queued again."""
        for tid in list(self.errored):
            self.fail(tid, "worker lost: the trial process ended without a final report")
        for tid, trial in list(self.live.items()):
            with self._live_lock:
                self.live.pop(tid)
            if interrupt_trial(self.study, optuna_api.trial_id(trial), trial.params):
                self.interrupted += 1
                self.progress(f"trial {trial.number} interrupted: its parameters are queued again")


class ErrorRecorder(Callback):
    """Passes the error text of a crashed Tune trial to the bridge, which records it."""

    def __init__(self, bridge: OptunaBridge):
        self.bridge = bridge

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.bridge.fail(trial.trial_id, _error_text(trial))


def _error_text(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    text = ""
    if path and Path(path).exists():
        lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
        text = lines[-1] if lines else ""
    return f"worker error: {text or 'the trial process died (killed, or out of host memory)'}"


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)

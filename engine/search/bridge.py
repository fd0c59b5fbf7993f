"""The driver-side bridge between Ray Tune and an Optuna study (ask/tell owned by the driver).

Ray Tune only executes trials. This bridge asks Optuna for each candidate, screens it, hands it
to Tune as an :class:`~engine.search.protocol.Assignment`, writes every epoch's validation
accuracy as an intermediate value (single- and multi-objective alike), and tells the final
state: COMPLETE with all objectives, PRUNED when a scheduler stopped the trial before its
budget, FAIL with a reason. Ray's stock ``OptunaSearch`` records early-stopped trials as
COMPLETE, drops the last epoch's value and keeps no curves for multi-objective studies
(docs/ARCHITECTURE.md, "Why the driver owns ask/tell"), hence this class.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.search import Searcher

from engine.search.budget import SearchBudget
from engine.search.liveness import TRIAL_DRIVER, interrupt_trial
from engine.search.pace import Pace, format_duration
from engine.search.protocol import (
    METRIC,
    Assignment,
    Complete,
    Failed,
    Infeasible,
    Outcome,
    Prediction,
    Pruned,
    Report,
    TrialConfig,
)
from engine.search.screen import Screening
from engine.search.space import SearchSpace
from storage import schema

__all__ = ["ErrorRecorder", "OptunaBridge"]


class OptunaBridge(Searcher):
    """A Ray Tune searcher that asks and tells an Optuna study.

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
        self.objectives = objectives
        self.budget = budget
        self.epochs = budget.epochs_per_trial
        self.progress = progress
        self.screen = screen
        self.lock = lock
        self.driver_id = driver_id
        self.max_concurrent = max_concurrent
        self.pace = Pace()
        self.live: dict[str, optuna.Trial] = {}
        self.predicted: dict[str, Prediction] = {}
        self.last: dict[str, Report] = {}
        self.errored: dict[str, optuna.Trial] = {}
        self.stopped_reason: str | None = None  # why this driver stopped starting trials
        # (config, rejection) of the smallest candidate screened out over a cap
        self.smallest_rejected: tuple[TrialConfig, Infeasible] | None = None
        self.estimate_shown = False
        self._said_finished = False
        self.finished = False  # the budget, not a stop, ended this driver's run
        self.interrupted = 0  # trials the run stopped mid-way (queued again by `sweep`)
        self.waiting_for_peers = False  # budget taken, but a peer's trial may still free some
        self._steps: dict[int, int] = {}  # last epoch recorded per trial number
        self._live_lock = threading.Lock()  # the heartbeat thread reads `live`

    # -- Searcher API --------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        # Candidates that cannot run (bad build, over a cap) are recorded here and do not
        # count towards n_trials (max_rejected bounds them), without ever occupying a worker.
        while True:
            if self.stopped_reason is not None:
                return self._finish_or_wait(None)
            with self.lock():
                state = self.budget.read(self.study)
                why = self.budget.why_not(state) or self._deadline_reached()
                if why is not None:
                    return self._finish_or_wait(why, peers_running=state.running - len(self.live))
                trial = self._ask()
            cfg = self.space.suggest(trial)
            trial.set_user_attr(schema.TRIAL_CONFIG, cfg.to_dict())
            verdict = self.screen(cfg) if self.screen else Screening()
            pred = verdict.prediction
            if pred is not None:
                trial.set_user_attr(schema.TRIAL_PARAM_COUNT, pred.param_count)
                trial.set_user_attr(schema.TRIAL_PEAK_MEMORY_MB, pred.peak_memory_mb)
                trial.set_user_attr(schema.TRIAL_MEMORY_METHOD, pred.memory_method)
            if verdict.rejection is not None:
                trial.set_user_attr(schema.TRIAL_TRAINED, False)
                self._tell(trial, verdict.rejection)
                rej = verdict.rejection
                if isinstance(rej, Infeasible) and (
                        self.smallest_rejected is None
                        or rej.peak_memory_mb < self.smallest_rejected[1].peak_memory_mb):
                    self.smallest_rejected = (cfg, rej)
                continue
            pred = pred or Prediction(0, 0.0)
            late = self._would_miss_deadline(pred)
            if late is not None:
                self._requeue(trial, late)
                self.stopped_reason = late
                continue
            trial.set_user_attr(schema.TRIAL_TUNE_ID, trial_id)
            with self._live_lock:
                self.live[trial_id] = trial
            self.predicted[trial_id] = pred
            shown = ", ".join(f"{k.split('.', 1)[-1]}={_fmt(v)}" for k, v in trial.params.items())
            self.progress(f"trial {trial.number} scheduled: {cfg.family} {shown} "
                          f"({pred.param_count:,} params, {pred.peak_memory_mb:.1f} MB predicted)")
            return Assignment(trial._trial_id, trial.number, cfg, pred).to_tune()

    def _ask(self) -> optuna.Trial:
        with warnings.catch_warnings():
            # The driver records heartbeats itself (engine.search.liveness), not Study.optimize.
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            trial = self.study.ask()
        self.study._storage.record_heartbeat(trial._trial_id)
        trial.set_user_attr(TRIAL_DRIVER, self.driver_id)
        return trial

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
                state = self.budget.read(self.study)
                why = self.budget.why_not(state) or self._deadline_reached()
            if why is None:
                self.waiting_for_peers = False
                return True
            if state.running == 0 or self.stopped_reason is not None:
                self.waiting_for_peers = False
                self._finish_or_wait(why)
                return False
            time.sleep(poll_s)

    def _deadline_reached(self) -> str | None:
        deadline = self.budget.deadline
        if deadline is None:
            return None
        smallest = min((m for m, _ in self.pace.samples), default=None)
        fastest = None if smallest is None else self.pace.epoch_seconds(smallest)
        if time.time() >= deadline or (fastest is not None
                                       and time.time() + self.epochs * fastest > deadline):
            self.stopped_reason = "time budget reached: no new trial could finish by the deadline"
            return self.stopped_reason
        return None

    def _would_miss_deadline(self, pred: Prediction) -> str | None:
        if self.budget.deadline is None:
            return None
        epoch_s = self.pace.epoch_seconds(pred.peak_memory_mb)
        if epoch_s is None or time.time() + self.epochs * epoch_s <= self.budget.deadline:
            return None
        return (f"time budget reached: a {pred.peak_memory_mb:.0f} MB candidate needs "
                f"~{format_duration(self.epochs * epoch_s)} at this pace, beyond the deadline")

    def _requeue(self, trial: optuna.Trial, reason: str) -> None:
        """Give an asked trial back: FAIL "interrupted" (it does not count) and its
        parameters queued for a later run."""
        trial.set_user_attr(schema.TRIAL_FAIL_REASON, schema.INTERRUPTED_REASON)
        trial.set_user_attr(schema.TRIAL_STATE_REASON, reason)
        self.study.tell(trial, state=TrialState.FAIL)
        self.study.enqueue_trial(trial.params, skip_if_exists=False)

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
            return [t._trial_id for t in self.live.values()]

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        trial = self.live.get(trial_id)
        report = Report.from_tune(result)
        if trial is None or report is None:
            return
        if trial_id not in self.last:  # first report: where the trial runs, for the app
            self._record_run(trial, report)
        self.last[trial_id] = report
        self._record_epoch(trial, report)
        if report.has_epoch and report.epoch_s is not None and report.outcome is None:
            self.pace.add(self.predicted.get(trial_id, Prediction(0, 0.0)).peak_memory_mb,
                          report.epoch_s)
            if not self.estimate_shown:
                self.estimate_shown = True
                self._show_estimate()

    def _record_epoch(self, trial: optuna.Trial, report: Report) -> None:
        epoch = report.epoch
        if report.has_epoch and self._steps.get(trial.number) != epoch:
            self._steps[trial.number] = epoch
            # Trial.report is single-objective only; the storage call works for both.
            self.study._storage.set_trial_intermediate_value(trial._trial_id, epoch,
                                                             report.val_accuracy)
            if report.phase == "sgd" and schema.TRIAL_SWITCHED_AT not in trial.user_attrs:
                trial.set_user_attr(schema.TRIAL_SWITCHED_AT, epoch)
            self.progress(f"trial {trial.number} epoch {epoch}/{self.epochs} "
                          f"val_accuracy={report.val_accuracy:.4f} ({report.phase})")

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
            self._record_epoch(trial, report)  # no-op unless Tune skipped this last result
            self._record_run(trial, report)
        outcome = report.outcome if report is not None else None
        if outcome is None or (isinstance(outcome, Complete) and report.epoch < self.epochs):
            epoch = report.epoch if report is not None else 0
            outcome = Pruned(f"stopped by the scheduler after epoch {epoch} of {self.epochs}")
        self._tell(trial, outcome)
        self._show_progress()

    # -- recording -----------------------------------------------------------------------
    @staticmethod
    def _record_run(trial: optuna.Trial, report: Report) -> None:
        trial.set_user_attr(schema.TRIAL_DEVICE, report.run.device)
        trial.set_user_attr(schema.TRIAL_HOST, report.run.host)
        if report.run.node:
            trial.set_user_attr(schema.TRIAL_NODE, report.run.node)
        trial.set_user_attr(schema.TRIAL_RUN_STARTED_AT, report.run.started_at)
        if report.has_epoch:
            trial.set_user_attr(schema.TRIAL_VAL_ACCURACY, report.val_accuracy)
        if report.epoch:
            trial.set_user_attr(schema.TRIAL_EPOCHS_RUN, report.epoch)

    def _tell(self, trial: optuna.Trial, outcome: Outcome) -> None:
        try:
            self._record_outcome(trial, outcome)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Only if this driver stalled past the grace period: a peer took it for dead,
            # failed the trial as interrupted and queued its parameters again.
            self.progress(f"trial {trial.number} was already ended by another driver (this "
                          "driver's heartbeat went stale); its result is not recorded")

    def _record_outcome(self, trial: optuna.Trial, outcome: Outcome) -> None:
        curve = [v for _, v in sorted(self.study._storage.get_trial(trial._trial_id)
                                      .intermediate_values.items())]
        trial.set_user_attr(schema.TRIAL_CURVE, curve)
        if isinstance(outcome, Failed):
            trial.set_user_attr(schema.TRIAL_FAIL_REASON, outcome.reason)
            self.study.tell(trial, state=TrialState.FAIL)
            self.progress(f"trial {trial.number} FAIL: {outcome.reason}")
        elif isinstance(outcome, Infeasible):
            # Recorded with its violation (not FAIL) so constrained samplers learn from it.
            trial.set_user_attr(schema.TRIAL_PARAM_COUNT, outcome.param_count)
            trial.set_user_attr(schema.TRIAL_PEAK_MEMORY_MB, outcome.peak_memory_mb)
            trial.set_user_attr(schema.TRIAL_MEMORY_METHOD, outcome.memory_method)
            trial.set_user_attr(schema.TRIAL_TRAINED, False)
            trial.set_user_attr(schema.TRIAL_STATE_REASON, outcome.reason)
            self._set_constraints(trial, outcome.violations or {"infeasible": 1.0})
            metrics = {"val_accuracy": 0.0, "param_count": outcome.param_count,
                       "peak_memory_mb": outcome.peak_memory_mb}
            self.study.tell(trial, values=[float(metrics[m]) for m in self.objectives])
            self.progress(f"trial {trial.number} INFEASIBLE: {outcome.reason}")
        elif isinstance(outcome, Pruned):
            trial.set_user_attr(schema.TRIAL_STATE_REASON, outcome.reason)
            self.study.tell(trial, state=TrialState.PRUNED)
            self.progress(f"trial {trial.number} PRUNED after epoch "
                          f"{self._steps.get(trial.number, 0)}")
        else:
            m = outcome.metrics
            for key, value in ((schema.TRIAL_VAL_ACCURACY, m.val_accuracy),
                               (schema.TRIAL_PARAM_COUNT, m.param_count),
                               (schema.TRIAL_PEAK_MEMORY_MB, m.peak_memory_mb),
                               (schema.TRIAL_MEMORY_METHOD, m.memory_method),
                               (schema.TRIAL_WALL_TIME_S, m.wall_time_s),
                               (schema.TRIAL_WEIGHTS, m.weights_artifact_id),
                               (schema.TRIAL_PROBE_LOGITS, m.probe_logits),
                               (schema.TRIAL_SWITCHED_AT, m.switched_at)):
                if value is not None:
                    trial.set_user_attr(key, value)
            trial.set_user_attr(schema.TRIAL_TRAINED, True)
            self._set_constraints(trial, m.violations)
            metrics = {"val_accuracy": m.val_accuracy, "param_count": m.param_count,
                       "peak_memory_mb": m.peak_memory_mb}
            self.study.tell(trial, values=[float(metrics[name]) for name in self.objectives])
            self.progress(f"trial {trial.number} COMPLETE: val_accuracy={m.val_accuracy:.4f} "
                          f"peak_memory={m.peak_memory_mb:.1f} MB ({m.memory_method}) "
                          f"params={m.param_count:,}")

    @staticmethod
    def _set_constraints(trial: optuna.Trial, violations: dict[str, float]) -> None:
        # Samplers and study.best_trials read these: an over-cap trial teaches the sampler
        # where the feasible region ends, and never reaches the Pareto front.
        trial.set_user_attr(schema.TRIAL_CONSTRAINT_VIOLATIONS, dict(violations))
        for key, value in violations.items():
            trial.set_constraint(key, value)

    # -- time -----------------------------------------------------------------------------
    def eta_s(self, *, until_deadline: bool = True) -> float | None:
        """Seconds until the budget is spent at the measured pace, or until the deadline if
        that comes first (None: not measured yet, or no budget at all)."""
        epoch_s = self.pace.epoch_seconds()
        if epoch_s is None:
            return None
        state = self.budget.read(self.study)
        left = [self.budget.trials_left(state) * self.epochs,
                self.budget.epoch_room(state)]
        epochs_left = min(left) + state.promised_epochs
        eta = epochs_left * epoch_s / max(1, min(self.max_concurrent, max(1, state.running)))
        if until_deadline and self.budget.deadline is not None:
            eta = min(eta, max(0.0, self.budget.deadline - time.time()))
        return eta if math.isfinite(eta) else None

    def _show_estimate(self) -> None:
        """After the first measured epoch: what the whole search will take at this pace."""
        eta = self.eta_s(until_deadline=False)
        epoch_s = self.pace.epoch_seconds()
        state = self.budget.read(self.study)
        if eta is None or epoch_s is None:
            return
        what = (f"{self.budget.n_trials} trials" if self.budget.n_trials is not None
                else f"{self.budget.budget_epochs} epochs")
        if self.budget.deadline is None:
            hint = (f"; --set search.budget_minutes={max(1, round(eta / 60 / 4))} bounds it"
                    if eta > 600 else "")
        else:
            left = max(0.0, self.budget.deadline - time.time())
            hint = f"; the time budget ends it in {format_duration(left)}" if left < eta else ""
        self.progress(f"estimate: ~{format_duration(eta)} for {what} at this pace "
                      f"({format_duration(epoch_s)} an epoch, {max(1, state.running)} at a time)"
                      f"{hint}")

    def _show_progress(self) -> None:
        state = self.budget.read(self.study)
        parts = [f"{state.finished}" + (f"/{self.budget.n_trials}" if self.budget.n_trials
                                        else "") + " trials trained"]
        if self.budget.budget_epochs is not None:
            parts.append(f"{state.spent_epochs}/{self.budget.budget_epochs} epochs")
        if state.running:
            parts.append(f"{state.running} running")
        eta = self.eta_s()
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        self.progress("progress: " + ", ".join(parts))

    def fail(self, trial_id: str, reason: str) -> None:
        """Tell an errored trial FAIL with ``reason`` (called by :class:`ErrorRecorder`)."""
        trial = self.errored.pop(trial_id, None)
        if trial is not None:
            self._tell(trial, Failed(reason))

    def sweep(self) -> None:
        """Close what the run left open: crashed trials whose error never arrived are FAIL;
        trials still running when the run stopped are interrupted and queued again."""
        for tid in list(self.errored):
            self.fail(tid, "worker lost: the trial process ended without a final report")
        for tid, trial in list(self.live.items()):
            with self._live_lock:
                self.live.pop(tid)
            if interrupt_trial(self.study, trial._trial_id, trial.params):
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

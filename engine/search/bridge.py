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

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.search import Searcher

from engine.search.budget import SearchBudget
from engine.search.protocol import (
    METRIC,
    Assignment,
    Complete,
    Failed,
    Infeasible,
    Outcome,
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
        budget: What the search may still spend; a trial starts only while its full
            training still fits beside the epochs running trials may yet train.
        progress: Called with one human-readable line per event.
        screen: Checks each candidate before it is scheduled (size, memory, caps).
    """

    def __init__(self, study: optuna.Study, space: SearchSpace, objectives: list[str], *,
                 budget: SearchBudget, progress: Callable[[str], None] = print,
                 screen: Callable[[TrialConfig], Screening] | None = None):
        super().__init__(metric=METRIC, mode="max")
        self.study = study
        self.space = space
        self.objectives = objectives
        self.budget = budget
        self.epochs = budget.epochs_per_trial
        self.progress = progress
        self.screen = screen
        self.live: dict[str, optuna.Trial] = {}
        self.last: dict[str, Report] = {}
        self.errored: dict[str, optuna.Trial] = {}
        self._steps: dict[int, int] = {}  # last epoch recorded per trial number

    # -- Searcher API --------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        # Candidates that cannot run (bad build, over a cap) are recorded here and count
        # towards the budget, without ever occupying a worker.
        while self.budget.trials_left > 0:
            if not self.budget.trial_fits(self._promised()):
                if not self.live:  # nothing running can free epochs: the budget is spent
                    self.progress(f"epoch budget reached: {self.budget.spent_epochs} of "
                                  f"{self.budget.budget_epochs} epochs trained")
                    return Searcher.FINISHED
                return None  # a running trial may stop early and leave room; ask again later
            self.budget.start_trial()
            trial = self.study.ask()
            cfg = self.space.suggest(trial)
            trial.set_user_attr(schema.TRIAL_CONFIG, cfg.to_dict())
            verdict = self.screen(cfg) if self.screen else Screening()
            if verdict.prediction is not None:
                trial.set_user_attr(schema.TRIAL_PARAM_COUNT, verdict.prediction.param_count)
                trial.set_user_attr(schema.TRIAL_PEAK_MEMORY_MB, verdict.prediction.peak_memory_mb)
                trial.set_user_attr(schema.TRIAL_MEMORY_METHOD, verdict.prediction.memory_method)
            if verdict.rejection is not None:
                self._tell(trial, verdict.rejection)
                continue
            pred = verdict.prediction
            trial.set_user_attr(schema.TRIAL_TUNE_ID, trial_id)
            self.live[trial_id] = trial
            shown = ", ".join(f"{k.split('.', 1)[-1]}={_fmt(v)}" for k, v in trial.params.items())
            self.progress(f"trial {trial.number} scheduled: {cfg.family} {shown} "
                          f"({pred.param_count:,} params, {pred.peak_memory_mb:.1f} MB predicted)")
            return Assignment(trial._trial_id, trial.number, cfg, pred).to_tune()
        return Searcher.FINISHED

    def _promised(self) -> int:
        """Epochs the running trials may still train."""
        return sum(self.epochs - self._steps.get(t.number, 0) for t in self.live.values())

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        trial = self.live.get(trial_id)
        report = Report.from_tune(result)
        if trial is None or report is None:
            return
        self.last[trial_id] = report
        self._record_epoch(trial, report)

    def _record_epoch(self, trial: optuna.Trial, report: Report) -> None:
        epoch = report.epoch
        if report.has_epoch and self._steps.get(trial.number) != epoch:
            self.budget.add_epochs(epoch - self._steps.get(trial.number, 0))
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

    # -- recording -----------------------------------------------------------------------
    @staticmethod
    def _record_run(trial: optuna.Trial, report: Report) -> None:
        trial.set_user_attr(schema.TRIAL_DEVICE, report.run.device)
        trial.set_user_attr(schema.TRIAL_HOST, report.run.host)
        trial.set_user_attr(schema.TRIAL_RUN_STARTED_AT, report.run.started_at)
        if report.has_epoch:
            trial.set_user_attr(schema.TRIAL_VAL_ACCURACY, report.val_accuracy)
        if report.epoch:
            trial.set_user_attr(schema.TRIAL_EPOCHS_RUN, report.epoch)

    def _tell(self, trial: optuna.Trial, outcome: Outcome) -> None:
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
            self.live.pop(tid)
            trial.set_user_attr(schema.TRIAL_FAIL_REASON, schema.INTERRUPTED_REASON)
            self.study.tell(trial, state=TrialState.FAIL)
            self.study.enqueue_trial(trial.params, skip_if_exists=False)
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

"""The driver's writes to the study: each trial from ask to tell, through the typed record.

The bridge decides; this class writes what it decided (storage/record/ holds the fields):
the asked trial and its driver, the candidate's config and predicted size, where it runs,
each epoch's validation accuracy (an intermediate value, for single- and multi-objective
studies alike), and the final state: COMPLETE with all objectives, INFEASIBLE (COMPLETE with
violated constraints, so samplers learn where the caps are), PRUNED or FAIL with a reason.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from engine.protocol import (
    Complete,
    Failed,
    Infeasible,
    Outcome,
    Prediction,
    Pruned,
    Report,
)
from engine.train.schedule import SGD
from engine.trial import TrialConfig
from storage import optuna_api, schema, write_trial

__all__ = ["TrialRecorder"]


class TrialRecorder:
    """Writes one driver's trials to its study.

    Args:
        study: The study.
        objectives: Metric names, in the study's direction order.
        epochs: Epochs of a full trial (for the progress lines).
        progress: Called with one human-readable line per event.
    """

    def __init__(self, study: optuna.Study, objectives: list[str], epochs: int,
                 progress: Callable[[str], None]):
        self.study = study
        self.objectives = objectives
        self.epochs = epochs
        self.progress = progress
        self.steps: dict[int, int] = {}  # last epoch recorded per trial number
        self._switched: set[int] = set()  # trial numbers whose SGD switch is recorded

    def ask(self, driver_id: str) -> optuna.Trial:
        """A new trial, owned by ``driver_id`` and beating from the start."""
        with warnings.catch_warnings():
            # The driver records heartbeats itself (engine.search.liveness), not Study.optimize.
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            trial = self.study.ask()
        tid = optuna_api.trial_id(trial)
        optuna_api.record_heartbeat(self.study, tid)
        write_trial(self.study, tid, driver_id=driver_id)
        return trial

    def candidate(self, trial: optuna.Trial, cfg: TrialConfig,
                  prediction: Prediction | None) -> None:
        """The candidate's config and, when screened, its predicted size and memory."""
        write_trial(self.study, optuna_api.trial_id(trial), config=cfg.to_dict())
        if prediction is not None:
            self._size(trial, prediction.param_count, prediction.peak_memory_mb,
                       prediction.memory_method)

    def screened_out(self, trial: optuna.Trial) -> None:
        """The candidate will not be trained (over a cap, or its model cannot be built)."""
        write_trial(self.study, optuna_api.trial_id(trial), trained=False)

    def scheduled(self, trial: optuna.Trial, tune_trial_id: str) -> None:
        """The trial is handed to Ray Tune under ``tune_trial_id``."""
        write_trial(self.study, optuna_api.trial_id(trial), tune_trial_id=tune_trial_id)

    def run(self, trial: optuna.Trial, report: Report) -> None:
        """Where the trial runs and how far it got (first and last report)."""
        write_trial(self.study, optuna_api.trial_id(trial), device=report.run.device,
                    host=report.run.host, node=report.run.node or None,
                    run_started_at=report.run.started_at,
                    val_accuracy=report.val_accuracy if report.has_epoch else None,
                    epochs_run=report.epoch or None)

    def epoch(self, trial: optuna.Trial, report: Report) -> None:
        """One epoch's validation accuracy (once per epoch) and the SGD switch."""
        epoch = report.epoch
        if not report.has_epoch or self.steps.get(trial.number) == epoch:
            return
        self.steps[trial.number] = epoch
        tid = optuna_api.trial_id(trial)
        optuna_api.set_intermediate(self.study, tid, epoch, report.val_accuracy)
        if report.phase == SGD and trial.number not in self._switched:
            self._switched.add(trial.number)
            write_trial(self.study, tid, switched_at=epoch)
        self.progress(f"trial {trial.number} epoch {epoch}/{self.epochs} "
                      f"val_accuracy={report.val_accuracy:.4f} ({report.phase})")

    def requeue(self, trial: optuna.Trial, reason: str) -> None:
        """Give an asked trial back: FAIL "interrupted" (it does not count) and its
        parameters queued for a later run."""
        write_trial(self.study, optuna_api.trial_id(trial),
                    fail_reason=schema.INTERRUPTED_REASON, state_reason=reason)
        self.study.tell(trial, state=TrialState.FAIL)
        self.study.enqueue_trial(trial.params, skip_if_exists=False)

    def tell(self, trial: optuna.Trial, outcome: Outcome) -> None:
        """Record the outcome and tell Optuna the final state."""
        try:
            self._tell(trial, outcome)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Only if this driver stalled past the grace period: a peer took it for dead,
            # failed the trial as interrupted and queued its parameters again.
            self.progress(f"trial {trial.number} was already ended by another driver (this "
                          "driver's heartbeat went stale); its result is not recorded")

    def _size(self, trial: optuna.Trial, param_count: int, peak_memory_mb: float,
              memory_method: str) -> None:
        write_trial(self.study, optuna_api.trial_id(trial), param_count=param_count,
                    peak_memory_mb=peak_memory_mb, memory_method=memory_method)

    def _tell(self, trial: optuna.Trial, outcome: Outcome) -> None:
        tid = optuna_api.trial_id(trial)
        curve = [v for _, v in sorted(optuna_api.intermediate_values(self.study, tid).items())]
        write_trial(self.study, tid, curve=curve)
        if isinstance(outcome, Failed):
            write_trial(self.study, tid, fail_reason=outcome.reason)
            self.study.tell(trial, state=TrialState.FAIL)
            self.progress(f"trial {trial.number} FAIL: {outcome.reason}")
        elif isinstance(outcome, Infeasible):
            # Recorded with its violation (not FAIL) so constrained samplers learn from it.
            self._size(trial, outcome.param_count, outcome.peak_memory_mb, outcome.memory_method)
            write_trial(self.study, tid, trained=False, state_reason=outcome.reason)
            self._constraints(trial, outcome.violations or {"infeasible": 1.0})
            self.study.tell(trial, values=self._values(0.0, outcome.param_count,
                                                       outcome.peak_memory_mb))
            self.progress(f"trial {trial.number} INFEASIBLE: {outcome.reason}")
        elif isinstance(outcome, Pruned):
            write_trial(self.study, tid, state_reason=outcome.reason)
            self.study.tell(trial, state=TrialState.PRUNED)
            self.progress(f"trial {trial.number} PRUNED after epoch "
                          f"{self.steps.get(trial.number, 0)}")
        else:
            self._complete(trial, outcome)

    def _complete(self, trial: optuna.Trial, outcome: Complete) -> None:
        m = outcome.metrics
        write_trial(self.study, optuna_api.trial_id(trial), val_accuracy=m.val_accuracy,
                    param_count=m.param_count, peak_memory_mb=m.peak_memory_mb,
                    memory_method=m.memory_method, wall_time_s=m.wall_time_s,
                    weights_artifact_id=m.weights_artifact_id, probe_logits=m.probe_logits,
                    switched_at=m.switched_at, trained=True)
        self._constraints(trial, m.violations)
        self.study.tell(trial, values=self._values(m.val_accuracy, m.param_count,
                                                   m.peak_memory_mb))
        self.progress(f"trial {trial.number} COMPLETE: val_accuracy={m.val_accuracy:.4f} "
                      f"peak_memory={m.peak_memory_mb:.1f} MB ({m.memory_method}) "
                      f"params={m.param_count:,}")

    def _values(self, val_accuracy: float, param_count: int, peak_memory_mb: float
                ) -> list[float]:
        """The objective values in the study's order."""
        metrics = {"val_accuracy": val_accuracy, "param_count": param_count,
                   "peak_memory_mb": peak_memory_mb}
        return [float(metrics[name]) for name in self.objectives]

    def _constraints(self, trial: optuna.Trial, violations: dict[str, float]) -> None:
        # Samplers and study.best_trials read these: an over-cap trial teaches the sampler
        # where the feasible region ends, and never reaches the Pareto front.
        write_trial(self.study, optuna_api.trial_id(trial),
                    constraint_violations=dict(violations))
        for key, value in violations.items():
            trial.set_constraint(key, value)

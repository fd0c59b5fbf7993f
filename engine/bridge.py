"""The driver-side bridge between Ray Tune and an Optuna study (ask/tell owned by the driver).

Ray Tune only executes trials. This bridge asks Optuna for each candidate, writes every
epoch's validation accuracy as an intermediate value (single- and multi-objective alike),
and tells the final state: COMPLETE with all objectives, PRUNED when a trial stopped before
its budget, FAIL with a reason. Stock ``OptunaSearch`` gets several of these wrong
(REFERENCE.md section 5), hence this class.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.search import Searcher

from engine.screen import Screening
from engine.space import SearchSpace, TrialConfig
from storage import schema

__all__ = ["OptunaBridge"]


class OptunaBridge(Searcher):
    """A Ray Tune searcher that asks and tells an Optuna study.

    Args:
        study: The study to fill.
        space: The compiled search space.
        objectives: Metric names, in the study's direction order.
        n_trials: How many new trials to start (None: as many as the epoch budget allows).
        epochs: The training budget; a trial reporting fewer epochs is PRUNED.
        budget_epochs: Epochs all trials together may train, those of earlier runs
            (``spent_epochs``) included. A trial starts only while its full ``epochs`` still
            fit beside the epochs running trials may yet train, so the total never exceeds it.
        progress: Called with one human-readable line per event.
        screen: Checks each candidate before it is scheduled (size, memory, caps).
    """

    def __init__(self, study: optuna.Study, space: SearchSpace, objectives: list[str], *,
                 n_trials: int | None, epochs: int, budget_epochs: int | None = None,
                 spent_epochs: int = 0, progress: Callable[[str], None] = print,
                 screen: Callable[[TrialConfig], Screening] | None = None):
        super().__init__(metric="val_accuracy", mode="max")
        self.study = study
        self.space = space
        self.objectives = objectives
        self.remaining = n_trials if n_trials is not None else math.inf
        self.epochs = epochs
        self.budget_epochs = budget_epochs
        self.spent_epochs = spent_epochs
        self.progress = progress
        self.screen = screen
        self.live: dict[str, optuna.Trial] = {}
        self.last: dict[str, dict[str, Any]] = {}
        self.errored: dict[str, optuna.Trial] = {}
        self._steps: dict[int, int] = {}  # last epoch recorded per trial number

    # -- Searcher API --------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        # Candidates that cannot run (bad build, over a cap) are recorded here and count
        # towards the budget, without ever occupying a worker.
        while self.remaining > 0:
            room = self._epoch_room()
            if room is not None and room < self.epochs:
                if not self.live:  # nothing running can free epochs: the budget is spent
                    self.progress(f"epoch budget reached: {self.spent_epochs} of "
                                  f"{self.budget_epochs} epochs trained")
                    return Searcher.FINISHED
                return None  # a running trial may stop early and leave room; ask again later
            self.remaining -= 1
            trial = self.study.ask()
            cfg = self.space.suggest(trial)
            trial.set_user_attr(schema.TRIAL_CONFIG, cfg.to_dict())
            shown = ", ".join(f"{k.split('.', 1)[-1]}={_fmt(v)}" for k, v in trial.params.items())
            verdict = self.screen(cfg) if self.screen else Screening()
            if verdict.error:
                self._tell(trial, {"failed": True, "fail_reason": verdict.error})
                continue
            if verdict.param_count:
                trial.set_user_attr(schema.TRIAL_PARAM_COUNT, verdict.param_count)
            if verdict.infeasible:
                self._tell(trial, {"infeasible": True, "state_reason": verdict.reason,
                                   "param_count": verdict.param_count,
                                   "peak_memory_mb": verdict.peak_memory_mb,
                                   "memory_method": verdict.memory_method,
                                   "constraint_violations": verdict.violations})
                continue
            trial.set_user_attr(schema.TRIAL_TUNE_ID, trial_id)
            self.live[trial_id] = trial
            self.progress(f"trial {trial.number} scheduled: {cfg.family} {shown} "
                          f"({verdict.param_count:,} params, {verdict.peak_memory_mb:.1f} MB predicted)")
            return {"trial": cfg.to_dict(), "optuna_trial_id": trial._trial_id,
                    "screen": {"param_count": verdict.param_count,
                               "peak_memory_mb": verdict.peak_memory_mb,
                               "memory_method": verdict.memory_method}}
        return Searcher.FINISHED

    def _epoch_room(self) -> int | None:
        """Epochs of the budget not yet trained nor promised to running trials (None: no budget)."""
        if self.budget_epochs is None:
            return None
        promised = sum(self.epochs - self._steps.get(t.number, 0) for t in self.live.values())
        return self.budget_epochs - self.spent_epochs - promised

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        trial = self.live.get(trial_id)
        if trial is None:
            return
        self.last[trial_id] = result
        self._record_epoch(trial, result)

    def _record_epoch(self, trial: optuna.Trial, result: dict[str, Any]) -> None:
        acc = result.get("val_accuracy")
        epoch = int(result.get("epoch", 0))
        if epoch >= 1 and isinstance(acc, float) and math.isfinite(acc) and \
                self._steps.get(trial.number) != epoch:
            self.spent_epochs += epoch - self._steps.get(trial.number, 0)
            self._steps[trial.number] = epoch
            # Trial.report is single-objective only; the storage call works for both.
            self.study._storage.set_trial_intermediate_value(trial._trial_id, epoch, acc)
            if result.get("phase") == "sgd" and schema.TRIAL_SWITCHED_AT not in trial.user_attrs:
                trial.set_user_attr(schema.TRIAL_SWITCHED_AT, epoch)
            self.progress(f"trial {trial.number} epoch {epoch}/{self.epochs} "
                          f"val_accuracy={acc:.4f} ({result.get('phase')})")

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        trial = self.live.pop(trial_id, None)
        if trial is None:
            return
        result = result or self.last.pop(trial_id, None) or {}
        if error:
            # The reason arrives with Tune's on_trial_error callback, just after this call.
            self.errored[trial_id] = trial
            return
        self._tell(trial, result)

    # -- recording -----------------------------------------------------------------------
    def _tell(self, trial: optuna.Trial, result: dict[str, Any]) -> None:
        self._record_epoch(trial, result)  # no-op unless Tune skipped this last result
        ua = _user_attrs(result)
        for key, value in ua.items():
            trial.set_user_attr(key, value)
        curve = [v for _, v in sorted(self.study._storage.get_trial(trial._trial_id)
                                      .intermediate_values.items())]
        trial.set_user_attr(schema.TRIAL_CURVE, curve)
        if result.get("failed"):
            trial.set_user_attr(schema.TRIAL_FAIL_REASON, result.get("fail_reason", "unknown"))
            self.study.tell(trial, state=TrialState.FAIL)
            self.progress(f"trial {trial.number} FAIL: {result.get('fail_reason')}")
            return
        violations = _violations(result)
        if result.get("infeasible"):
            # Recorded with its violation (not FAIL) so constrained samplers learn from it.
            trial.set_user_attr(schema.TRIAL_TRAINED, False)
            trial.set_user_attr(schema.TRIAL_STATE_REASON, result.get("state_reason", "infeasible"))
            self._set_constraints(trial, violations or {"infeasible": 1.0})
            values = self._values({**result, "val_accuracy": 0.0})
            self.study.tell(trial, values=values)
            self.progress(f"trial {trial.number} INFEASIBLE: {result.get('state_reason')}")
            return
        epoch = int(result.get("epoch", 0))
        if not result.get("completed") or epoch < self.epochs:
            trial.set_user_attr(schema.TRIAL_STATE_REASON,
                                f"stopped by the scheduler after epoch {epoch} of {self.epochs}")
            self.study.tell(trial, state=TrialState.PRUNED)
            self.progress(f"trial {trial.number} PRUNED after epoch {epoch}")
            return
        trial.set_user_attr(schema.TRIAL_TRAINED, True)
        self._set_constraints(trial, violations)
        self.study.tell(trial, values=self._values(result))
        self.progress(f"trial {trial.number} COMPLETE: val_accuracy={result['val_accuracy']:.4f} "
                      f"peak_memory={result.get('peak_memory_mb', float('nan')):.1f} MB "
                      f"({result.get('memory_method')}) params={result.get('param_count', 0):,}")

    @staticmethod
    def _set_constraints(trial: optuna.Trial, violations: dict[str, float]) -> None:
        # Samplers and study.best_trials read these: an over-cap trial teaches the sampler
        # where the feasible region ends, and never reaches the Pareto front.
        trial.set_user_attr(schema.TRIAL_CONSTRAINT_VIOLATIONS, dict(violations))
        for key, value in violations.items():
            trial.set_constraint(key, value)

    def _values(self, result: dict[str, Any]) -> list[float]:
        return [float(result[name]) for name in self.objectives]

    def fail(self, trial_id: str, reason: str) -> None:
        """Tell an errored trial FAIL with ``reason`` (called by :class:`ErrorRecorder`)."""
        trial = self.errored.pop(trial_id, None)
        if trial is None:
            return
        trial.set_user_attr(schema.TRIAL_FAIL_REASON, reason)
        self.study.tell(trial, state=TrialState.FAIL)
        self.progress(f"trial {trial.number} FAIL: {reason}")

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


def _violations(result: dict[str, Any]) -> dict[str, float]:
    """Constraint values of a result; Tune flattens nested dicts into ``a/b`` keys."""
    nested = result.get("constraint_violations")
    if isinstance(nested, dict):
        return {k: float(v) for k, v in nested.items()}
    prefix = "constraint_violations/"
    return {k[len(prefix):]: float(v) for k, v in result.items() if k.startswith(prefix)}


def _user_attrs(result: dict[str, Any]) -> dict[str, Any]:
    keys = {
        "val_accuracy": schema.TRIAL_VAL_ACCURACY,
        "param_count": schema.TRIAL_PARAM_COUNT,
        "peak_memory_mb": schema.TRIAL_PEAK_MEMORY_MB,
        "memory_method": schema.TRIAL_MEMORY_METHOD,
        "wall_time_s": schema.TRIAL_WALL_TIME_S,
        "device": schema.TRIAL_DEVICE,
        "weights_artifact_id": schema.TRIAL_WEIGHTS,
        "epoch": schema.TRIAL_EPOCHS_RUN,
        "probe_logits": schema.TRIAL_PROBE_LOGITS,
        "run_started_at": schema.TRIAL_RUN_STARTED_AT,
    }
    out = {attr: result[k] for k, attr in keys.items() if result.get(k) is not None}
    if "host" in result:
        out["host"] = result["host"]
    return out


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)

"""Samplers: TPE keeps working on multi-objective studies that hold PRUNED trials."""

from __future__ import annotations

import optuna
import pytest

from engine.sampling import CurveAwareTPESampler


def _fill(study: optuna.Study) -> None:
    for i in range(12):
        t = study.ask()
        x = t.suggest_float("x", 0.0, 1.0)
        study._storage.set_trial_intermediate_value(t._trial_id, 1, x)  # as the bridge writes
        if i % 3 == 0:
            study.tell(t, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(t, values=[x, 1.0 - x])


def test_stock_tpe_fails_on_pruned_multi_objective_trials():
    """The upstream limitation this sampler exists for (if this starts passing, drop ours)."""
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=2))
    with pytest.raises(RuntimeError, match="single direction"):
        _fill(study)


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_curve_aware_tpe_samples_and_prefers_good_curves(direction):
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=CurveAwareTPESampler(seed=0, n_startup_trials=2,
                                                             curve_direction=direction))
    _fill(study)
    assert len(study.trials) == 12
    # Single-objective studies keep stock behaviour.
    single = optuna.create_study(direction="maximize",
                                 sampler=CurveAwareTPESampler(seed=0, n_startup_trials=2))
    single.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=5)
    assert len(single.trials) == 5

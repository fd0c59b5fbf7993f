"""Samplers: TPE keeps working on multi-objective studies that hold PRUNED trials."""

from __future__ import annotations

import optuna
import pytest

from engine.samplers.registry import CurveAwareTPESampler


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


class _Trial:
    """What the scheduler reads of a Tune trial: its id and its config (an Assignment)."""

    def __init__(self, tid: str, peak_mb: float):
        from engine.protocol import Assignment, Prediction
        from engine.train import TrainConfig
        from engine.trial import TrialConfig

        self.trial_id = tid
        cfg = TrialConfig("wavemix", {}, TrainConfig(epochs=4))
        self.config = Assignment(0, 0, cfg, Prediction(param_count=0, peak_memory_mb=peak_mb)).to_tune()


def _result(epoch: int, acc: float) -> dict:
    from engine.protocol import Report, RunInfo

    return Report(epoch=epoch, val_accuracy=acc, run=RunInfo("cpu", "h", 0.0)).to_tune()


def test_pareto_asha_keeps_small_slow_starters_that_asha_would_stop():
    from ray.tune.schedulers import TrialScheduler

    from engine.samplers.pareto_asha import ParetoASHAScheduler

    pareto = ParetoASHAScheduler(max_t=4, grace_period=1, reduction_factor=2,
                                 static_objectives=[("peak_memory_mb", "minimize")])
    plain = ParetoASHAScheduler(max_t=4, grace_period=1, reduction_factor=2)  # accuracy only
    assert pareto.rungs == [1, 2]
    big, small, worse = _Trial("big", 10.0), _Trial("small", 1.0), _Trial("worse", 12.0)
    for s in (pareto, plain):
        assert s.on_trial_result(None, big, _result(1, 0.9)) == TrialScheduler.CONTINUE
    # The small model starts slower: accuracy alone stops it; memory makes it non-dominated.
    assert plain.on_trial_result(None, small, _result(1, 0.5)) == TrialScheduler.STOP
    assert pareto.on_trial_result(None, small, _result(1, 0.5)) == TrialScheduler.CONTINUE
    # Bigger and less accurate than both others: dominated by 2 of 3 (>= 3/rf), stopped.
    assert pareto.on_trial_result(None, worse, _result(1, 0.3)) == TrialScheduler.STOP
    # A trial is judged once per rung; later epochs before the next rung continue.
    assert pareto.on_trial_result(None, small, _result(1, 0.1)) == TrialScheduler.CONTINUE
    assert pareto.on_trial_result(None, big, _result(3, float("nan"))) == TrialScheduler.CONTINUE


def test_dominance():
    from engine.samplers.pareto_asha import dominates

    assert dominates((1.0, -1.0), (0.5, -2.0))
    assert not dominates((1.0, -3.0), (0.5, -2.0))
    assert not dominates((1.0, -1.0), (1.0, -1.0))


def test_spec_builds_pareto_asha_with_its_static_objectives():
    from engine.samplers.pareto_asha import ParetoASHAScheduler
    from engine.samplers.registry import make_scheduler
    from engine.spec import SearchSpec
    from tests.conftest import tiny_spec_dict

    raw = tiny_spec_dict(search={"scheduler": "pareto_asha", "n_trials": 4,
                                 "asha": {"grace_period": 1, "reduction_factor": 3}},
                         train={"epochs": 9},
                         objectives=[{"metric": "val_accuracy", "direction": "maximize"},
                                     {"metric": "param_count", "direction": "minimize"}])
    sched = make_scheduler(SearchSpec.model_validate(raw))
    assert isinstance(sched, ParetoASHAScheduler)
    assert sched.rungs == [1, 3] and sched.rf == 3
    assert sched.static == [("param_count", "minimize")]


def test_each_driver_of_a_study_draws_from_its_own_stream(tmp_path):
    """The first driver of a study samples from the spec's seed (a lone search is
    reproducible); every later one, together or on resume, from a stream of its own."""
    from engine.data import load_data
    from engine.samplers.registry import stream_seed
    from engine.search import prepare_study
    from engine.spec import SearchSpec
    from storage import schema
    from tests.conftest import tiny_spec_dict

    spec = SearchSpec.model_validate(tiny_spec_dict("streams", search={"sampler": "random",
                                                                      "seed": 3}))
    url = f"sqlite:///{tmp_path / 's.db'}"
    data = load_data(spec.data)

    def first_draws(study: optuna.Study) -> list[float]:
        x = optuna.distributions.FloatDistribution(0.0, 1.0)
        return [study.sampler.sample_independent(study, None, "x", x) for _ in range(3)]

    opened = [prepare_study(spec, url, data) for _ in range(3)]
    draws = [first_draws(s) for s in opened]
    assert draws[0] == first_draws(optuna.create_study(sampler=optuna.samplers.RandomSampler(3)))
    assert len({tuple(d) for d in draws}) == 3, draws
    assert opened[-1].user_attrs[schema.STUDY_DRIVERS] == 3
    assert stream_seed(3, 0) == 3 and len({stream_seed(3, k) for k in range(50)}) == 50


def test_a_learning_rate_the_run_never_uses_is_folded():
    # DualOpT that never switches never uses sgd_lr; one that starts with SGD never uses lr.
    from engine.space import canonical
    from engine.spec import SearchSpec
    from tests.conftest import tiny_spec_dict

    raw = tiny_spec_dict("synthetic", train={
        "epochs": 4, "optimizer": "dualopt",
        "switch_epoch": {"type": "int", "low": 0, "high": 4},
        "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "sgd_lr": {"type": "categorical", "choices": [0.05, 0.01]}})
    spec = SearchSpec.model_validate(raw)
    p = {"train.switch_epoch": 4, "train.lr": 3e-3, "train.sgd_lr": 0.01}
    assert canonical(spec, p) == {**p, "train.sgd_lr": 0.05}
    assert canonical(spec, {**p, "train.switch_epoch": 0}) == {**p, "train.switch_epoch": 0,
                                                                "train.lr": 1e-4}
    mid = {**p, "train.switch_epoch": 2}
    assert canonical(spec, mid) == mid  # both phases train: nothing is inert

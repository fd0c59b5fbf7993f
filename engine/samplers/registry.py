"""Registries of samplers (Optuna) and trial schedulers (Ray Tune) a spec can name."""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.study import StudyDirection

from engine.protocol import EPOCH
from engine.registry import Registry
from engine.spec import SearchSpec

__all__ = ["SAMPLERS", "SCHEDULERS", "CurveAwareTPESampler", "make_sampler", "make_scheduler",
           "startup_trials", "stream_seed"]

SAMPLERS: Registry[Any] = Registry("sampler")
SCHEDULERS: Registry[Any] = Registry("scheduler")


class _CurveDirectionView:
    """A study seen through the direction of its learning curve (validation accuracy)."""

    def __init__(self, study: optuna.Study, direction: StudyDirection):
        self._study = study
        self.direction = direction

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


class CurveAwareTPESampler(optuna.samplers.TPESampler):
    """TPE that also works on multi-objective studies with PRUNED trials.

    Optuna 5.0's TPE ranks pruned trials by their last intermediate value and asks
    ``study.direction`` for its sense, which a multi-objective study refuses (RuntimeError), so
    ASHA-pruned trials crash the sampler. Our intermediate values are always validation
    accuracy: the sampler sees the study through that metric's direction.
    """

    def __init__(self, *, curve_direction: str = "maximize", **kwargs: Any):
        super().__init__(**kwargs)
        self._curve_direction = (StudyDirection.MAXIMIZE if curve_direction == "maximize"
                                 else StudyDirection.MINIMIZE)

    def _view(self, study: optuna.Study) -> Any:
        return _CurveDirectionView(study, self._curve_direction) if len(study.directions) > 1 else study

    def sample_relative(self, study, trial, search_space):
        return super().sample_relative(self._view(study), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return super().sample_independent(self._view(study), trial, param_name, param_distribution)


def _accuracy_direction(spec: SearchSpec) -> str:
    return next((o.direction for o in spec.objectives if o.metric == "val_accuracy"), "maximize")


def startup_trials(spec: SearchSpec) -> int:
    """Trials drawn before TPE models anything (and the size of the start-up design the
    driver enqueues for tpe and nsga2: engine.samplers.startup)."""
    return max(2, min(10, spec.planned_trials // 3))


@SAMPLERS.register("tpe")
def _tpe(spec: SearchSpec, seed: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():  # multivariate/group: "experimental" in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return CurveAwareTPESampler(seed=seed, multivariate=True, group=len(spec.model) > 1,
                                    n_startup_trials=startup_trials(spec),
                                    curve_direction=_accuracy_direction(spec))


@SAMPLERS.register("nsga2")
def _nsga2(spec: SearchSpec, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, spec.planned_trials // 2)))


@SAMPLERS.register("gp")
def _gp(spec: SearchSpec, seed: int) -> optuna.samplers.BaseSampler:
    # Optuna's Gaussian-process sampler: multi-objective, and it reads the caps through
    # Trial.set_constraint like tpe and nsga2 (the strongest sampler a user gets for free).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials(spec))


@SAMPLERS.register("random")
def _random(spec: SearchSpec, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


@SAMPLERS.register("cost_aware")
def _cost_aware(spec: SearchSpec, seed: int) -> optuna.samplers.BaseSampler:
    # Needs the search's screen to know costs: the driver calls its ``attach`` once the screen
    # exists (engine.samplers.cost_aware).
    from engine.samplers.cost_aware import CostAwareSampler

    # Its draws are seeded by (seed, trial number), distinct across drivers: the stream seed
    # is not needed.
    return CostAwareSampler.from_spec(spec)


@SCHEDULERS.register("fifo")
def _fifo(spec: SearchSpec) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


@SCHEDULERS.register("asha")
def _asha(spec: SearchSpec) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    a, epochs = spec.search.asha, spec.train.epochs
    return ASHAScheduler(time_attr=EPOCH, max_t=epochs, grace_period=min(a.grace_period, epochs),
                         reduction_factor=a.reduction_factor)


@SCHEDULERS.register("pareto_asha")
def _pareto_asha(spec: SearchSpec) -> Any:
    from engine.samplers.pareto_asha import ParetoASHAScheduler

    a, epochs = spec.search.asha, spec.train.epochs
    static = [(o.metric, o.direction) for o in spec.objectives if o.metric != "val_accuracy"]
    return ParetoASHAScheduler(max_t=epochs, grace_period=min(a.grace_period, epochs),
                               reduction_factor=a.reduction_factor, static_objectives=static)


def make_sampler(spec: SearchSpec, stream: int = 0) -> optuna.samplers.BaseSampler:
    """The Optuna sampler a spec names. Constraints reach TPE and NSGA-II through
    ``Trial.set_constraint`` (see engine.search.bridge), not through a constraints function.

    Args:
        spec: The validated spec; ``search.seed`` seeds the sampler.
        stream: Which driver of the study this is (0 for the one that created it). Drivers
            sharing a study, or resuming it, each draw from their own random stream: with one
            seed for all, every driver would propose the same parameters in the same order.
    """
    return SAMPLERS.get(spec.search.sampler)(spec, stream_seed(spec.search.seed, stream))


def stream_seed(seed: int, stream: int) -> int:
    """``seed`` itself for stream 0 (a lone search is reproducible from its spec), and an
    independent seed derived from (seed, stream) for every other."""
    if stream == 0:
        return seed
    import numpy as np

    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def make_scheduler(spec: SearchSpec) -> Any:
    """The Ray Tune trial scheduler a spec names."""
    return SCHEDULERS.get(spec.search.scheduler)(spec)

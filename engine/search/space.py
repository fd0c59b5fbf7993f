"""The search space compiled from a spec: the only place that calls ``trial.suggest_*``."""

from __future__ import annotations

from typing import Any

from engine.config import CategoricalParam, FloatParam, IntParam, is_distribution, resolve
from engine.search.protocol import TrialConfig
from engine.spec import SearchSpec
from engine.train.config import TrainConfig

__all__ = ["SearchSpace"]


class SearchSpace:
    """A spec's search space in Optuna terms.

    Parameter names are ``family`` (only with several families), ``<family>.<param>`` and
    ``train.<param>``, so several families never collide in one study.
    """

    def __init__(self, spec: SearchSpec):
        self.spec = spec
        self.families = list(spec.model)

    def suggest(self, trial: Any) -> TrialConfig:
        """Draw one candidate from ``trial`` (an ``optuna.Trial``)."""
        if len(self.families) == 1:
            family = self.families[0]
        else:
            family = trial.suggest_categorical("family", self.families)

        def draw(name: str, p: Any) -> Any:
            return _draw(trial, name, p)

        model = {name: draw(f"{family}.{name}", p) if is_distribution(p) else p
                 for name, p in self.spec.model[family].items()}
        train = resolve(TrainConfig, self.spec.train, draw, "train")
        return TrialConfig(family=family, model=model, train=train)


def _draw(trial: Any, name: str, p: Any) -> Any:
    if isinstance(p, IntParam):
        return trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
    if isinstance(p, FloatParam):
        return trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)
    if isinstance(p, CategoricalParam):
        return trial.suggest_categorical(name, p.choices)
    raise TypeError(f"not a distribution: {p!r}")

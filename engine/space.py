"""The search space compiled from a spec: the only place that calls ``trial.suggest_*``."""

from __future__ import annotations

from typing import Any

from engine.config import CategoricalParam, FloatParam, IntParam, is_distribution, resolve
from engine.spec import SearchSpec
from engine.train.config import TrainConfig
from engine.train.schedule import ADAMW, SGD, OptimizerSchedule
from engine.trial import TrialConfig

__all__ = ["SearchSpace", "corner_candidates", "training_params"]

TRAIN = "train"  # training parameters are named train.<param> (the rest: family and model)


class SearchSpace:
    """A spec's search space in Optuna terms.

    Parameter names are ``family`` (only with several families), ``<family>.<param>`` and
    ``train.<param>``, so several families never collide in one study.
    """

    def __init__(self, spec: SearchSpec):
        self.spec = spec
        self.families = list(spec.model)

    def canonical(self, params: dict[str, Any]) -> dict[str, Any]:
        """See :func:`canonical`."""
        return canonical(self.spec, params)

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
        train = resolve(TrainConfig, self.spec.train, draw, TRAIN)
        return TrialConfig(family=family, model=model, train=train)


# The searched training parameters each optimiser phase alone uses.
_PHASE_PARAMS = {ADAMW: (f"{TRAIN}.lr",), SGD: (f"{TRAIN}.sgd_lr",)}


def canonical(spec: SearchSpec, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with every searched training parameter its run never uses set to one fixed
    value (its low end, or first choice): SGD's learning rate when DualOpT never switches,
    AdamW's when it starts with SGD. Candidates that differ only there train identically, so a
    sampler must see them as one (to model them, and to never train one twice)."""
    train = spec.train
    switch = params.get(f"{TRAIN}.switch_epoch", train.switch_epoch)
    if is_distribution(switch):
        return dict(params)
    used = OptimizerSchedule(train.optimizer, train.epochs, switch,
                             train.switch_patience).phases_trained
    out = dict(params)
    for phase, names in _PHASE_PARAMS.items():
        for name in names if phase not in used else ():
            p = getattr(train, name.split(".", 1)[1], None)
            if name in out and is_distribution(p):
                out[name] = p.choices[0] if isinstance(p, CategoricalParam) else p.low
    return out


def training_params(params: dict[str, Any]) -> dict[str, Any]:
    """The training part of a candidate's parameters (``train.*``: learning rates, switch
    epoch, ...); what is left is the architecture."""
    return {n: v for n, v in params.items() if n.startswith(f"{TRAIN}.")}


def _draw(trial: Any, name: str, p: Any) -> Any:
    if isinstance(p, IntParam):
        return trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
    if isinstance(p, FloatParam):
        return trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)
    if isinstance(p, CategoricalParam):
        return trial.suggest_categorical(name, p.choices)
    raise TypeError(f"not a distribution: {p!r}")


def _low(p: Any) -> Any:
    """The smallest value a parameter takes (numbers: their low end; numeric choices: the
    least; other choices: None, to be tried one by one)."""
    if isinstance(p, (IntParam, FloatParam)):
        return p.low
    if isinstance(p, CategoricalParam):
        nums = [c for c in p.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
        return min(nums) if len(nums) == len(p.choices) else None
    return p


def corner_candidates(space: SearchSpace) -> list[TrialConfig]:
    """The space's smallest corner, per family: every numeric parameter at its low end (model
    and training alike: smallest batch), and each non-numeric choice (wavelet, attention, ...)
    tried in turn with the rest at their first choice. If none of these fits the caps, no
    candidate of the space is likely to."""
    def at(params: dict[str, Any], name: str, p: Any) -> Any:
        return params.get(name, _low(p) if _low(p) is not None else p.choices[0])

    out = []
    for family in space.families:
        spec_params = space.spec.model[family]
        variants: list[dict[str, Any]] = [{}]
        for name, p in spec_params.items():
            if isinstance(p, CategoricalParam) and _low(p) is None:
                variants += [{name: c} for c in p.choices[1:]]
        for fixed in variants:
            model = {name: at(fixed, name, p) for name, p in spec_params.items()}

            def draw(name: str, p: Any) -> Any:
                return _low(p) if _low(p) is not None else p.choices[0]

            train = resolve(TrainConfig, space.spec.train, draw, TRAIN)
            out.append(TrialConfig(family=family, model=model, train=train))
    return out

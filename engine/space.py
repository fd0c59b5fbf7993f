"""The search space compiled from a spec: the only place that calls ``trial.suggest_*``.

:func:`check_space` validates every model and training parameter of a spec against the
registered family configs (so a bad range fails at ``engine validate``, not mid-search), and
:class:`SearchSpace.suggest` turns an Optuna trial into a :class:`TrialConfig`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import annotated_types
from pydantic import ValidationError

from engine.errors import SpecError
from engine.spec import CategoricalParam, FloatParam, IntParam, SearchSpec

__all__ = ["SearchSpace", "TrainConfig", "TrialConfig", "check_space"]


@dataclass(frozen=True)
class TrainConfig:
    """Resolved training settings of one trial (no distributions left)."""

    epochs: int
    batch_size: int = 64
    optimizer: str = "dualopt"
    switch_epoch: int = 1
    switch_patience: int | None = None
    lr: float = 1e-3
    sgd_lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.01
    label_smoothing: float = 0.0
    lr_schedule: str = "constant"
    augment: dict[str, Any] = field(default_factory=dict)
    amp: str = "none"
    channels_last: bool = False
    seed: int = 0


@dataclass(frozen=True)
class TrialConfig:
    """Everything that defines one candidate: family, model keyword arguments, training."""

    family: str
    model: dict[str, Any]
    train: TrainConfig

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialConfig:
        return cls(family=d["family"], model=dict(d["model"]), train=TrainConfig(**d["train"]))


# Searchable training settings and the rule each value must satisfy.
_TRAIN_RULES: dict[str, tuple[type, float, str]] = {
    "batch_size": (int, 1, "an integer >= 1"),
    "switch_epoch": (int, 0, "an integer >= 0 (AdamW epochs before the switch to SGD)"),
    "lr": (float, 1e-12, "a float > 0"),
    "sgd_lr": (float, 1e-12, "a float > 0"),
    "weight_decay": (float, 0.0, "a float >= 0"),
}


def _values(param: Any) -> list[Any]:
    if isinstance(param, (IntParam, FloatParam, CategoricalParam)):
        return param.values_to_check()
    return [param]


def _check_model_param(spec_path: str, family: str, name: str, param: Any) -> None:
    from engine.models import DATA_FIELDS, FAMILIES

    cfg_cls = FAMILIES.get(family).config_cls
    key = f"model.{family}.{name}"
    if name in DATA_FIELDS:
        raise SpecError(f"{name!r} is set from the data set and cannot be given in a spec; remove it",
                        path=spec_path, key=key)
    fields = cfg_cls.model_fields
    if name not in fields:
        allowed = ", ".join(f for f in fields if f not in DATA_FIELDS)
        raise SpecError(f"unknown parameter {name!r} of family {family!r}; allowed: {allowed}",
                        path=spec_path, key=key)
    info = fields[name]
    if isinstance(param, FloatParam) and info.annotation in (int, int | None):
        raise SpecError(f"{name} takes integers but a float range was given; use type: int",
                        path=spec_path, key=key)
    if isinstance(param, IntParam):
        for meta in info.metadata:
            if isinstance(meta, annotated_types.MultipleOf) and param.step % meta.multiple_of:
                raise SpecError(
                    f"{name} must be a multiple of {meta.multiple_of}, but step {param.step} "
                    f"would sample other values; use a step that is a multiple of "
                    f"{meta.multiple_of}", path=spec_path, key=key)
    for value in _values(param):
        try:
            cfg_cls(**{name: value})
        except ValidationError as e:
            first = e.errors()[0]
            raise SpecError(f"{first['msg'].removeprefix('Value error, ')} (got {value!r})",
                            path=spec_path, key=key) from None


def _check_train_param(spec_path: str, name: str, param: Any) -> None:
    kind, minimum, rule = _TRAIN_RULES[name]
    key = f"train.{name}"
    if isinstance(param, FloatParam) and kind is int:
        raise SpecError(f"{name} takes integers but a float range was given; use type: int",
                        path=spec_path, key=key)
    for value in _values(param):
        ok_type = isinstance(value, int) if kind is int else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or value < minimum:
            raise SpecError(f"{name} must be {rule} (got {value!r})", path=spec_path, key=key)


def check_space(spec: SearchSpec, spec_path: str = "<spec>") -> None:
    """Check names and every value a spec can produce against the registries.

    Raises:
        SpecError: naming the key path, the value and what is allowed.
    """
    from engine.data import DATASETS
    from engine.models import FAMILIES

    if spec.data.dataset not in DATASETS:
        raise SpecError(f"unknown dataset {spec.data.dataset!r}; allowed: {', '.join(DATASETS.names())}",
                        path=spec_path, key="data.dataset")
    for family, params in spec.model.items():
        if family not in FAMILIES:
            raise SpecError(f"unknown model family {family!r}; allowed: {', '.join(FAMILIES.names())}",
                            path=spec_path, key=f"model.{family}")
        for name, param in params.items():
            _check_model_param(spec_path, family, name, param)
    for name in _TRAIN_RULES:
        _check_train_param(spec_path, name, getattr(spec.train, name))
    if spec.train.optimizer != "dualopt" and not isinstance(spec.train.switch_epoch, int):
        raise SpecError("switch_epoch is searched but optimizer is not 'dualopt'; set optimizer: "
                        "dualopt or make switch_epoch a fixed number", path=spec_path,
                        key="train.switch_epoch")


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
        model = {name: self._draw(trial, f"{family}.{name}", p)
                 for name, p in self.spec.model[family].items()}
        t = self.spec.train
        train = TrainConfig(
            epochs=t.epochs,
            batch_size=self._draw(trial, "train.batch_size", t.batch_size),
            optimizer=t.optimizer,
            switch_epoch=self._draw(trial, "train.switch_epoch", t.switch_epoch),
            switch_patience=t.switch_patience,
            lr=self._draw(trial, "train.lr", t.lr),
            sgd_lr=self._draw(trial, "train.sgd_lr", t.sgd_lr),
            momentum=t.momentum,
            weight_decay=self._draw(trial, "train.weight_decay", t.weight_decay),
            label_smoothing=t.label_smoothing,
            lr_schedule=t.lr_schedule,
            augment=t.augment.model_dump(),
            amp=t.amp,
            channels_last=t.channels_last,
            seed=t.seed,
        )
        return TrialConfig(family=family, model=model, train=train)

    @staticmethod
    def _draw(trial: Any, name: str, p: Any) -> Any:
        if isinstance(p, IntParam):
            return trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
        if isinstance(p, FloatParam):
            return trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)
        if isinstance(p, CategoricalParam):
            return trial.suggest_categorical(name, p.choices)
        return p

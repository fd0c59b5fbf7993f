"""The search-space file: YAML loaded once into frozen, validated models.

Everything a user can write is declared here or in the runtime config it configures; nothing
deeper in the engine sees a raw dict. The ``data``, ``train`` and ``constraints`` sections are
the runtime configs themselves (:class:`~engine.data.DataConfig`,
:class:`~engine.train.TrainConfig`, :class:`~engine.caps.CapsConfig`) in their spec
form, where searchable fields may hold distributions (see :mod:`engine.config`); model
parameters are checked against each family's own config class.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.caps import CapsConfig
from engine.config import (
    CategoricalParam,
    Distribution,
    FloatParam,
    IntParam,
    Scalar,
    check_param,
    is_distribution,
)
from engine.data.base import DataConfig
from engine.errors import SpecError
from engine.spec_yaml import (
    Override,
    SpecLoader,
    apply_overrides,
    blame_override,
    parse_override,
    short_repr,
    shorten,
)
from engine.train.config import TrainConfig
from storage.schema import DEFAULT_STORAGE_URL, METRICS

__all__ = [
    "apply_overrides",
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "Override",
    "Param",
    "SearchSpec",
    "SpecLoader",
    "load_spec",
    "parse_override",
    "parse_spec",
    "spec_hash",
]

Param = Distribution | Scalar


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StudySpec(_Frozen):
    """Where the study lives. ``storage`` is a SQLAlchemy URL (sqlite:///..., postgresql+psycopg2://...)."""

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")
    storage: str = DEFAULT_STORAGE_URL


Metric = Literal[METRICS]
# The registries (engine/samplers/registry.py) hold one builder per name; a test checks they agree.
SAMPLERS = ("tpe", "nsga2", "gp", "random", "cost_aware")
SCHEDULERS = ("fifo", "asha", "pareto_asha")


class ObjectiveSpec(_Frozen):
    """One objective: a recorded metric and whether to maximize or minimize it."""

    metric: Metric
    direction: Literal["maximize", "minimize"]


class AshaSpec(_Frozen):
    grace_period: int = Field(1, ge=1)
    reduction_factor: int = Field(2, ge=2)


class CostAwareSpec(_Frozen):
    """Settings of the cost_aware sampler; each off by default (docs/BENCHMARKS.md 6.1: what
    they did, 3 seeds; the failure they aim at is seed 0 of the default arm there)."""

    # After the start-up, every k-th trial is a random feasible candidate in the least-tried
    # memory stratum instead of the model's choice: a hedge against a model that learnt the
    # wrong thing early.
    explore_every: int = Field(0, ge=0, description="every k-th trial after the start-up explores (0: never)")
    # The start-up's training parameters (train.*) form a Latin hypercube, not random draws.
    stratified_recipes: bool = False
    # The training parameters of the k most accurate trials are also tried on the front's
    # architectures and on fresh ones (the model scores them like any candidate).
    transfer_recipes: int = Field(0, ge=0, le=8, description="best recipes carried to other architectures")
    # Warm start: the accuracy model also learns from a finished study of the same space in the
    # same storage (run at another cap or data size); that study's trials never join this
    # one's front, and the start-up is skipped once the two together have enough trials.
    warm_start: str | None = Field(None, min_length=1, max_length=200,
                                   pattern=r"^[A-Za-z0-9_.\-]+$",
                                   description="study whose trials seed the accuracy model")


class SearchSettings(_Frozen):
    """How candidates are proposed and scheduled."""

    # cost_aware by default: at equal epochs (192, CIFAR slice) ahead of random in 5 of 5 seeds,
    # by a median 5% at the (cap, 0) reference (docs/BENCHMARKS.md 6.1; the tabulated benchmark
    # of 6.2 is to decide it with 50 seeds and Optuna's samplers as rivals).
    sampler: Literal[SAMPLERS] = "cost_aware"
    # The budget: the search stops at whichever is reached first; at least one is required.
    n_trials: int | None = Field(None, ge=1, le=100_000, description="trained trials")
    budget_epochs: int | None = Field(None, ge=1, description="training epochs, all trials together")
    budget_minutes: float | None = Field(None, gt=0, description="wall clock of one engine search run")
    # Candidates screened out before training (over a cap) cost a prediction, not a trial; this
    # bounds how many a study may record, so a space that barely fits cannot loop forever.
    max_rejected: int = Field(200, ge=0, description="screened-out candidates, per study")
    max_concurrent: int = Field(1, ge=1, le=1024)
    seed: int = 0
    # pareto_asha: successive halving that keeps trials not dominated in (accuracy, memory/size)
    scheduler: Literal[SCHEDULERS] = "fifo"
    asha: AshaSpec = AshaSpec()
    cost_aware: CostAwareSpec = CostAwareSpec()

    @model_validator(mode="after")
    def _cost_aware_settings_need_that_sampler(self) -> SearchSettings:
        # Defaults are allowed (a dumped spec holds them for every sampler), changes are not.
        if self.cost_aware != CostAwareSpec() and self.sampler != "cost_aware":
            raise ValueError(f"search.cost_aware is set but search.sampler is {self.sampler!r}: "
                             "these settings apply to the cost_aware sampler only; remove them "
                             "or set sampler: cost_aware")
        return self

    @model_validator(mode="after")
    def _has_budget(self) -> SearchSettings:
        if self.n_trials is None and self.budget_epochs is None and self.budget_minutes is None:
            raise ValueError("no budget: set n_trials (how many trials), budget_epochs "
                             "(training epochs of all trials together), budget_minutes (wall "
                             "clock), or any of them together")
        return self


class ResourceSpec(_Frozen):
    """Resources one trial asks of the Ray cluster.

    ``gpus: auto`` (the default): where the cluster has GPUs, each trial takes a share of one
    sized by its predicted memory and trains on CUDA; without GPUs, trials train on the CPU.
    A number asks for that many GPUs per trial, 0 for none.
    """

    cpus: float = Field(1.0, gt=0)
    gpus: float | Literal["auto"] = Field("auto")

    @field_validator("gpus")
    @classmethod
    def _non_negative(cls, v: float | str) -> float | str:
        if not isinstance(v, str) and v < 0:
            raise ValueError(f"must be 'auto' or a number >= 0 (got {v})")
        return v


TrainSpec = TrainConfig.spec_form()


class SearchSpec(_Frozen):
    """A whole search-space file."""

    study: StudySpec
    data: DataConfig
    model: dict[str, dict[str, Param]] = Field(min_length=1)
    train: TrainSpec  # type: ignore[valid-type]
    objectives: list[ObjectiveSpec] = Field(min_length=1, max_length=3)
    constraints: CapsConfig = CapsConfig()
    search: SearchSettings
    resources: ResourceSpec = ResourceSpec()

    @field_validator("objectives")
    @classmethod
    def _distinct(cls, v: list[ObjectiveSpec]) -> list[ObjectiveSpec]:
        seen = [o.metric for o in v]
        dup = {m for m in seen if seen.count(m) > 1}
        if dup:
            raise ValueError(f"objective {sorted(dup)[0]!r} is listed twice; list each metric once")
        return v

    @property
    def objective_names(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @property
    def planned_trials(self) -> int:
        """Full-length trials the budget pays for: the fewer of ``n_trials`` and what
        ``budget_epochs`` pays for (early stopping runs more), a nominal 32 for a time budget
        alone. Samplers size their start-up from it."""
        s = self.search
        limits = [n for n in (s.n_trials, s.budget_epochs and s.budget_epochs // self.train.epochs)
                  if n is not None]
        return max(1, min(limits)) if limits else 32


def spec_hash(spec: SearchSpec) -> str:
    """A stable hash of the parts that define the search space (not the study location or
    budget). Values left at their defaults are not hashed, so a new option with a default
    does not change the hash of specs that do not use it."""
    body = spec.model_dump(mode="json", include={"data", "model", "train", "objectives", "constraints"},
                           exclude_defaults=True)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _describe_allowed(loc: tuple, model_cls: type[BaseModel] = SearchSpec) -> str:
    """Names allowed at the mapping that holds ``loc``'s last key (for unknown-key errors)."""
    cls: Any = model_cls
    for part in loc[:-1]:
        if isinstance(cls, type) and issubclass(cls, BaseModel) and part in cls.model_fields:
            ann = cls.model_fields[part].annotation
            cls = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        else:
            # Distribution mappings: the tag decides the class.
            cls = None
            break
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return ", ".join(cls.model_fields)
    return ""


def _clean_loc(loc: tuple) -> tuple:
    """The key path of an error: pydantic's union-member and type names dropped."""
    return tuple(p for p in loc if not (isinstance(p, str) and (
        p in ("int", "float", "categorical", "bool", "str") or "[" in p
        or p.startswith(("function", "constrained")))))


def _branch_fits(err: dict) -> bool:
    """For a field that takes a value or a distribution, the error of the branch the user
    meant: the distribution's for a mapping, the value's otherwise."""
    in_distribution = any(isinstance(p, str) and p.startswith("tagged-union") for p in err["loc"])
    return in_distribution == isinstance(err.get("input"), dict)


def _translate(err: ValidationError, path: str) -> SpecError:
    """Turn pydantic's report into one SpecError naming the first broken key."""
    errors = err.errors()
    loc = _clean_loc(errors[0]["loc"])
    same = [e for e in errors if _clean_loc(e["loc"]) == loc]
    first = next((e for e in same if _branch_fits(e)), same[0])
    key = ".".join(str(p) for p in loc) or "<top level>"
    msg = shorten(first["msg"].removeprefix("Value error, "))
    got = first.get("input")
    if first["type"] == "extra_forbidden":
        allowed = _describe_allowed(loc)
        msg = f"unknown key {loc[-1]!r}" + (f"; allowed keys here: {allowed}" if allowed else "")
    elif first["type"] == "missing":
        msg = "required key is missing"
    elif not isinstance(got, dict) and "(got " not in msg:
        msg = f"{msg} (got {short_repr(got)})"
    more = len({_clean_loc(e["loc"]) for e in errors}) - 1
    if more:
        msg += f" [and {more} more problem(s)]"
    return SpecError(msg, path=path, key=key)


def parse_spec(raw: Any, path: str = "<spec>") -> SearchSpec:
    """Validate an already-parsed YAML document, including every model parameter."""
    if not isinstance(raw, dict):
        raise SpecError(f"the top level must be a mapping of sections, got {type(raw).__name__}",
                        path=path)
    _check_finite(raw, path)
    try:
        spec = SearchSpec.model_validate(raw)
    except ValidationError as e:
        raise _translate(e, path) from None
    _check_registries(spec, path)
    _check_switch(spec, path)
    return spec


def _check_finite(node: Any, path: str, key: str = "") -> None:
    """Refuse ``.inf`` and ``.nan`` anywhere: no setting means anything by them (an infinite
    learning rate, cap or budget is a typo or a probe, never a plan)."""
    if isinstance(node, float) and not math.isfinite(node):
        raise SpecError(f"{node!r} is not a finite number; write a finite value (e.g. 0.001), "
                        "or leave the key out for its default", path=path, key=key or None)
    if isinstance(node, dict):
        for k, v in node.items():
            _check_finite(v, path, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_finite(v, path, f"{key}.{i}" if key else str(i))


def _check_switch(spec: SearchSpec, path: str) -> None:
    """DualOpT's fixed switch must fall within the run. ``switch_epoch == train.epochs`` means
    AdamW throughout (a deliberate setting, used to compare against AdamW alone); anything
    beyond it would silently never start SGD, and search ``sgd_lr`` for nothing."""
    t = spec.train
    if t.optimizer != "dualopt" or t.switch_patience is not None:
        return  # the switch epoch is not used
    key = "train.switch_epoch"
    searched = is_distribution(t.switch_epoch)
    top = t.switch_epoch.high if searched else t.switch_epoch
    if top > t.epochs:
        if searched:
            raise SpecError(f"the range reaches {top} but train.epochs is {t.epochs}, so those "
                            f"trials would never start SGD; set high to at most {t.epochs} "
                            f"({t.epochs} = AdamW throughout), or raise train.epochs",
                            path=path, key=key)
        raise SpecError(f"{top} is beyond train.epochs ({t.epochs}), so SGD would never start; "
                        f"set it to at most {t.epochs} ({t.epochs} = AdamW throughout), or "
                        "raise train.epochs", path=path, key=key)
    if not searched and top == t.epochs and is_distribution(t.sgd_lr):
        raise SpecError(f"sgd_lr is searched but switch_epoch {top} = train.epochs means AdamW "
                        "throughout, so SGD never runs; make sgd_lr a fixed number, or lower "
                        "switch_epoch", path=path, key="train.sgd_lr")


def _check_registries(spec: SearchSpec, path: str) -> None:
    """Names a spec uses must be registered, and every model parameter value a spec can
    produce must satisfy its family's config rules (so a bad range fails at validate time)."""
    from engine.data import DATASETS
    from engine.models import CONFIGS, DATA_FIELDS

    if spec.data.dataset not in DATASETS:
        raise SpecError(f"unknown dataset {spec.data.dataset!r}; allowed: "
                        f"{', '.join(DATASETS.names())}", path=path, key="data.dataset")
    for family, params in spec.model.items():
        if family not in CONFIGS:
            raise SpecError(f"unknown model family {family!r}; allowed: "
                            f"{', '.join(CONFIGS.names())}", path=path, key=f"model.{family}")
        cfg_cls = CONFIGS.get(family)
        fields = cfg_cls.model_fields
        for name, param in params.items():
            key = f"model.{family}.{name}"
            if name in DATA_FIELDS:
                raise SpecError(f"{name!r} is set from the data set and cannot be given in a "
                                "spec; remove it", path=path, key=key)
            if name not in fields:
                allowed = ", ".join(f for f in fields if f not in DATA_FIELDS)
                raise SpecError(f"unknown parameter {name!r} of family {family!r}; allowed: "
                                f"{allowed}", path=path, key=key)
            try:
                # The family's whole config class judges each value: its validators apply too.
                check_param(fields[name], param, lambda v, n=name, c=cfg_cls: c(**{n: v}))
            except ValueError as e:
                raise SpecError(shorten(f"{name} {e}" if str(e).startswith(("takes", "must"))
                                         else str(e)), path=path, key=key) from None


def load_spec(path: str | Path, overrides: Sequence[str | Override] | None = None) -> SearchSpec:
    """Read and validate a search-space YAML file, with optional overrides.

    Args:
        path: The YAML file (read with :class:`SpecLoader`).
        overrides: Applied in order: an ``Override`` as given, a string as an ``--set``
            ``KEY=VALUE`` item (its value parsed as YAML).

    Raises:
        SpecError: the file is unreadable, not YAML, or breaks a rule; the message names the
            file, the key path, the value and what is allowed.
    """
    p = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read the file ({e.__class__.__name__}: {e}); check the path",
                        path=p) from None
    try:
        raw = yaml.load(text, Loader=SpecLoader)  # safe: SpecLoader is a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"invalid YAML{where}: {problem}", path=p) from None
    if raw is None:
        raise SpecError("the file is empty; see search_spaces/quickstart.yaml for an example", path=p)
    items = [parse_override(o, p) if isinstance(o, str) else o for o in overrides or ()]
    if items:
        if not isinstance(raw, dict):
            raise SpecError("the top level must be a mapping of sections", path=p)
        raw = apply_overrides(raw, items, p)
    try:
        return parse_spec(raw, p)
    except SpecError as e:
        raise blame_override(e, items, p) from None

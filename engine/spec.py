"""The search-space file: YAML loaded once into frozen, validated models.

Everything a user can write is declared here; nothing deeper in the engine sees a raw dict.
A parameter is either a fixed scalar or a distribution mapping tagged by ``type``::

    final_dim: 64                                   # fixed
    depth: {type: int, low: 2, high: 8}             # integer range (step, log optional)
    dropout: {type: float, low: 0.0, high: 0.5}     # float range (log: true for log-uniform)
    wavelet: {type: categorical, choices: [haar, db2]}
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.data.base import DataRequest
from engine.errors import SpecError

__all__ = [
    "apply_overrides",
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "Param",
    "SearchSpec",
    "load_spec",
    "parse_spec",
    "spec_hash",
]

Scalar = bool | int | float | str


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IntParam(_Frozen):
    """Integer range ``[low, high]`` sampled in steps of ``step`` (or log-uniformly)."""

    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntParam:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        if self.log and (self.step != 1 or self.low < 1):
            raise ValueError("a log int range needs step 1 and low >= 1")
        return self

    def values_to_check(self) -> list[int]:
        """Endpoints and the first step, enough to check per-value rules."""
        return sorted({self.low, self.high, min(self.low + self.step, self.high)})


class FloatParam(_Frozen):
    """Float range ``[low, high]``, uniform or log-uniform (``log: true``)."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> FloatParam:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log float range needs low > 0 (got {self.low})")
        return self

    def values_to_check(self) -> list[float]:
        return [self.low, self.high]


class CategoricalParam(_Frozen):
    """A choice among ``choices`` (scalars)."""

    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1)

    def values_to_check(self) -> list[Scalar]:
        return list(self.choices)


Distribution = Annotated[IntParam | FloatParam | CategoricalParam, Field(discriminator="type")]
Param = Distribution | Scalar


class StudySpec(_Frozen):
    """Where the study lives. ``storage`` is a SQLAlchemy URL (sqlite:///..., postgresql+psycopg2://...)."""

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")
    storage: str = "sqlite:///wavesearch.db"


class DataSpec(_Frozen):
    """Which data set, and how much of it a search uses."""

    dataset: str
    root: str | None = None
    train_size: int | None = Field(None, ge=1)
    val_size: int | None = Field(None, ge=1)
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    seed: int = 0
    image_size: int | None = Field(None, ge=4, le=1024, description="resize images to this square")
    cache_dir: str | None = None

    def request(self) -> DataRequest:
        """The loader request this section describes (the one place that builds it)."""
        return DataRequest(**self.model_dump())


class AugmentSpec(_Frozen):
    """Batch-wise augmentation on the training device."""

    crop_padding: int = Field(0, ge=0, le=16)
    flip: bool = False
    cutout: int = Field(0, ge=0, le=64)
    padding_mode: Literal["reflect", "zeros"] = "reflect"


class TrainSpec(_Frozen):
    """The training budget and optimiser. Learning rates are per optimiser phase."""

    epochs: int = Field(ge=1, le=10_000)
    batch_size: Param = 64
    optimizer: Literal["adamw", "sgd", "dualopt"] = "dualopt"
    # DualOpT: epochs trained with AdamW before the switch to SGD (fresh state).
    switch_epoch: Param = 1
    # If set, switch instead when validation accuracy has not improved for this many epochs.
    switch_patience: int | None = Field(None, ge=1)
    lr: Param = 1e-3  # AdamW learning rate
    sgd_lr: Param = 1e-3
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: Param = 0.01
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    # "cosine": within each optimiser phase the rate falls from its start value to 0.
    lr_schedule: Literal["constant", "cosine"] = "constant"
    augment: AugmentSpec = AugmentSpec()
    amp: Literal["none", "bf16", "fp16"] = "none"  # mixed precision; takes effect on CUDA
    channels_last: bool = False  # NHWC memory layout, often faster for convolutions on GPUs
    seed: int = 0


Metric = Literal["val_accuracy", "peak_memory_mb", "param_count"]


class ObjectiveSpec(_Frozen):
    """One objective: a recorded metric and whether to maximize or minimize it."""

    metric: Metric
    direction: Literal["maximize", "minimize"]


class ConstraintSpec(_Frozen):
    """Hard limits. A trial over either is recorded infeasible, never on the Pareto front."""

    gpu_ram_mb: float | None = Field(None, gt=0, description="per-trial peak training memory cap")
    max_params: int | None = Field(None, ge=1)


class AshaSpec(_Frozen):
    grace_period: int = Field(1, ge=1)
    reduction_factor: int = Field(2, ge=2)


class SearchSettings(_Frozen):
    """How candidates are proposed and scheduled."""

    sampler: Literal["tpe", "nsga2", "random"] = "tpe"
    # The budget: the search stops at whichever is reached first; at least one is required.
    n_trials: int | None = Field(None, ge=1, le=100_000, description="trials, screened ones included")
    budget_epochs: int | None = Field(None, ge=1, description="training epochs, all trials together")
    max_concurrent: int = Field(1, ge=1, le=1024)
    seed: int = 0
    # pareto_asha: successive halving that keeps trials not dominated in (accuracy, memory/size)
    scheduler: Literal["fifo", "asha", "pareto_asha"] = "fifo"
    asha: AshaSpec = AshaSpec()

    @model_validator(mode="after")
    def _has_budget(self) -> SearchSettings:
        if self.n_trials is None and self.budget_epochs is None:
            raise ValueError("no budget: set n_trials (how many trials), budget_epochs "
                             "(training epochs of all trials together), or both")
        return self


class ResourceSpec(_Frozen):
    """Resources one trial asks of the Ray cluster."""

    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0)


class SearchSpec(_Frozen):
    """A whole search-space file."""

    study: StudySpec
    data: DataSpec
    model: dict[str, dict[str, Param]] = Field(min_length=1)
    train: TrainSpec
    objectives: list[ObjectiveSpec] = Field(min_length=1, max_length=3)
    constraints: ConstraintSpec = ConstraintSpec()
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
        """Trials the budget allows: ``n_trials``, else the full-length trials the epoch
        budget pays for (early stopping runs more)."""
        s = self.search
        if s.n_trials is not None:
            return s.n_trials
        return max(1, s.budget_epochs // self.train.epochs)  # type: ignore[operator]


def spec_hash(spec: SearchSpec) -> str:
    """A stable hash of the parts that define the search space (not the study location or budget)."""
    body = spec.model_dump(mode="json", include={"data", "model", "train", "objectives", "constraints"})
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


def _translate(err: ValidationError, path: str) -> SpecError:
    """Turn pydantic's report into one SpecError naming the first broken key."""
    first = err.errors()[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p in
                                                  ("int", "float", "categorical", "bool", "str")))
    # Pydantic puts union-member names in loc (e.g. "function-after[...]"): drop them.
    loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function"))))
    key = ".".join(str(p) for p in loc) or "<top level>"
    msg = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    if first["type"] == "extra_forbidden":
        allowed = _describe_allowed(loc)
        msg = f"unknown key {loc[-1]!r}" + (f"; allowed keys here: {allowed}" if allowed else "")
    elif first["type"] == "missing":
        msg = "required key is missing"
    elif not isinstance(got, dict):
        msg = f"{msg} (got {got!r})"
    more = len(err.errors()) - 1
    if more:
        msg += f" [and {more} more problem(s)]"
    return SpecError(msg, path=path, key=key)


def parse_spec(raw: Any, path: str = "<spec>") -> SearchSpec:
    """Validate an already-parsed YAML document, including every model parameter."""
    if not isinstance(raw, dict):
        raise SpecError(f"the top level must be a mapping of sections, got {type(raw).__name__}",
                        path=path)
    try:
        spec = SearchSpec.model_validate(raw)
    except ValidationError as e:
        raise _translate(e, path) from None
    from engine.space import check_space  # local: the space module imports the model registry

    check_space(spec, path)
    return spec


def apply_overrides(raw: Any, overrides: list[str], path: str) -> Any:
    """Set ``section.key=value`` pairs (values parsed as YAML) into a raw spec document."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise SpecError(f"override {item!r} is not KEY=VALUE (e.g. train.epochs=2)", path=path)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise SpecError(f"override value {text!r} is not valid YAML", path=path, key=key) from None
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node, dict):
                raise SpecError(f"cannot set {key!r}: {part!r} is inside a scalar", path=path, key=key)
            node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(f"cannot set {key!r}: its parent is not a mapping", path=path, key=key)
        node[parts[-1]] = value
    return raw


def load_spec(path: str | Path, overrides: list[str] | None = None) -> SearchSpec:
    """Read and validate a search-space YAML file, with optional ``key=value`` overrides.

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
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"invalid YAML{where}: {problem}", path=p) from None
    if raw is None:
        raise SpecError("the file is empty; see search_spaces/quickstart.yaml for an example", path=p)
    if overrides:
        if not isinstance(raw, dict):
            raise SpecError("the top level must be a mapping of sections", path=p)
        raw = apply_overrides(raw, overrides, p)
    return parse_spec(raw, p)

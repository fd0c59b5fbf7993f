"""Runtime configs and their spec form: one class per concern, its rules on its fields.

A runtime config (``TrainConfig``, ``DataConfig``, ``AugmentConfig``, ``CapsConfig``) is a
frozen pydantic model whose fields carry their own rules (``ge``, ``gt``, ``Literal``). Fields
declared with :func:`searchable` may be searched: in a spec file they may hold a distribution
instead of a value. :meth:`Config.spec_form` derives that spec version of a config class
mechanically, so there is no second class to keep in sync by hand:

- a searchable field accepts a value *or* a distribution, and every value the distribution can
  produce is checked by the runtime field's own rules (:func:`check_param`);
- a field holding another config holds that config's spec form;
- every other field is copied unchanged.

:func:`resolve` turns a spec-form instance into the runtime config, drawing each distribution
through a callback (the search space passes Optuna's ``trial.suggest_*``).

Distributions in a spec file are mappings tagged by ``type``::

    depth: {type: int, low: 2, high: 8}             # integer range (step, log optional)
    dropout: {type: float, low: 0.0, high: 0.5}     # float range (log: true for log-uniform)
    wavelet: {type: categorical, choices: [haar, db2]}
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

import annotated_types
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic.fields import FieldInfo

from engine.errors import ConfigError

__all__ = [
    "CategoricalParam",
    "Config",
    "Distribution",
    "FloatParam",
    "IntParam",
    "Scalar",
    "check_param",
    "is_distribution",
    "resolve",
    "searchable",
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
        """Endpoints and the first step: enough for per-value rules (bounds, multiples)."""
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
        """The endpoints (every rule on a float is an interval)."""
        return [self.low, self.high]


class CategoricalParam(_Frozen):
    """A choice among ``choices`` (scalars)."""

    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1)

    def values_to_check(self) -> list[Scalar]:
        """Every choice."""
        return list(self.choices)


Distribution = Annotated[IntParam | FloatParam | CategoricalParam, Field(discriminator="type")]
_DISTRIBUTIONS = (IntParam, FloatParam, CategoricalParam)


def is_distribution(value: Any) -> bool:
    """True for a parsed distribution (a value to search rather than a fixed value)."""
    return isinstance(value, _DISTRIBUTIONS)


def searchable(default: Any, **rules: Any) -> Any:
    """A config field that a spec may search: ``lr: float = searchable(1e-3, gt=0)``."""
    return Field(default, json_schema_extra={"searchable": True}, **rules)


def _is_searchable(info: FieldInfo) -> bool:
    extra = info.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("searchable"))


def _takes_int(annotation: Any) -> bool:
    """True when a field's type admits int but not float (so a float range cannot fit)."""
    args = get_args(annotation) if get_origin(annotation) is not None else (annotation,)
    return int in args and float not in args


def check_param(info: FieldInfo, param: Any,
                validate: Callable[[Any], Any] | None = None) -> None:
    """Check a fixed value or every value a distribution can produce against a field's rules.

    Args:
        info: The field.
        param: A fixed value or a distribution.
        validate: Checks one value (default: the field's type and constraints); a model
            family passes its whole config class, so its validators apply too.

    Raises:
        ValueError: naming the rule and the offending value (pydantic turns it into the
            located error a spec reports).
    """
    if isinstance(param, FloatParam) and _takes_int(info.annotation):
        raise ValueError("takes integers but a float range was given; use type: int")
    if isinstance(param, IntParam):
        for meta in info.metadata:
            if isinstance(meta, annotated_types.MultipleOf) and param.step % meta.multiple_of:
                raise ValueError(
                    f"must be a multiple of {meta.multiple_of}, but step {param.step} would "
                    f"sample other values; use a step that is a multiple of {meta.multiple_of}")
    values = param.values_to_check() if is_distribution(param) else [param]
    validate = validate or _scalar_adapter(info).validate_python
    for value in values:
        try:
            validate(value)
        except ValidationError as e:
            msg = e.errors()[0]["msg"].removeprefix("Value error, ")
            raise ValueError(f"{msg} (got {value!r})") from None


def _with_rules(annotation: Any, metadata: tuple | list) -> Any:
    """``annotation`` carrying a field's constraints (``Annotated`` needs at least one)."""
    return Annotated[(annotation, *metadata)] if metadata else annotation


@functools.cache
def _adapter_for(annotation: Any, metadata: tuple) -> TypeAdapter:
    return TypeAdapter(_with_rules(annotation, metadata), config=ConfigDict(strict=True))


def _scalar_adapter(info: FieldInfo) -> TypeAdapter:
    return _adapter_for(info.annotation, tuple(info.metadata))


class Config(BaseModel):
    """Base of every runtime config: frozen, typo-proof, strict about types.

    Strict: YAML already gives typed values, so a ``true`` for an integer or ``"0.1"`` for a
    float is a mistake to report, not a value to coerce. Building a config in code with a bad
    value raises :class:`~engine.errors.ConfigError`; in a spec file, a located SpecError.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    # Where this config sits in a spec file ("train"), for messages; set by subclasses.
    section: ClassVar[str] = ""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            first = e.errors()[0]
            key = ".".join(str(p) for p in (self.section, *first["loc"]) if p)
            raise ConfigError(f"{key}: {first['msg']} (got {first.get('input')!r})") from None

    @classmethod
    def check_spec(cls, values: dict[str, Any]) -> None:
        """Rules across fields of the spec form (distributions included); override to add.

        Raises:
            ValueError: what is wrong and how to fix it.
        """

    @classmethod
    def spec_form(cls) -> type[BaseModel]:
        """The spec version of this config (see the module docstring); built once per class."""
        return _spec_form(cls)


def _spec_check(cls: type[Config]) -> Callable[[BaseModel], BaseModel]:
    def check(obj: BaseModel) -> BaseModel:
        cls.check_spec({name: getattr(obj, name) for name in type(obj).model_fields})
        return obj

    return check


def _has_searchable(cls: type[Config]) -> bool:
    return any(_is_searchable(info) or (isinstance(info.annotation, type)
                                         and issubclass(info.annotation, Config)
                                         and _has_searchable(info.annotation))
               for info in cls.model_fields.values())


@functools.cache
def _spec_form(cls: type[Config]) -> type[BaseModel]:
    if not _has_searchable(cls):
        return cls  # nothing to search: the spec section is the runtime config itself
    fields: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        kwargs = {"description": info.description}
        if _is_searchable(info):
            # The scalar branch keeps the field's own rules; a distribution is checked value by
            # value by the same rules (check_param), so both spellings obey one definition.
            scalar = _with_rules(info.annotation, info.metadata)
            checker = AfterValidator(functools.partial(_checked, info))
            fields[name] = (Annotated[Distribution | scalar, checker],
                            FieldInfo(default=info.default, **kwargs))
        elif isinstance(info.annotation, type) and issubclass(info.annotation, Config):
            sub = info.annotation.spec_form()
            default = info.get_default(call_default_factory=True)
            fields[name] = (sub, FieldInfo(default=sub.model_validate(default.model_dump()),
                                           **kwargs))
        else:
            fields[name] = (info.annotation, info)
    return create_model(f"{cls.__name__}Spec", __config__=ConfigDict(frozen=True, extra="forbid",
                                                                      strict=True),
                        __validators__={"_cross_field": model_validator(mode="after")(
                            _spec_check(cls))},
                        __doc__=f"{cls.__name__} as written in a spec: searchable fields may "
                                "hold distributions.", **fields)


def _checked(info: FieldInfo, value: Any) -> Any:
    if is_distribution(value):
        check_param(info, value)
    return value


def resolve(cls: type[Config], spec_obj: BaseModel, draw: Callable[[str, Any], Any],
            prefix: str) -> Config:
    """The runtime config of a spec-form instance; ``draw(name, distribution)`` picks values.

    Args:
        cls: The runtime config class.
        spec_obj: An instance of ``cls.spec_form()``.
        draw: Called for every distribution with its dotted name (``train.lr``).
        prefix: Dotted name of this config (``train``).
    """
    if isinstance(spec_obj, cls):
        return spec_obj
    values = {}
    for name, info in cls.model_fields.items():
        value = getattr(spec_obj, name)
        key = f"{prefix}.{name}"
        if is_distribution(value):
            value = draw(key, value)
        elif isinstance(info.annotation, type) and issubclass(info.annotation, Config):
            value = resolve(info.annotation, value, draw, key)
        values[name] = value
    return cls(**values)

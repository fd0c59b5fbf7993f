"""The model-family contract: a frozen config class plus a builder, kept in one registry.

Each family module defines ``class XConfig(ModelConfig)`` whose fields are exactly the
keyword-only arguments of its ``nn.Module``, and registers a builder::

    @register_family("wavemix", WaveMixConfig)
    def build_wavemix(cfg: WaveMixConfig) -> nn.Module:
        return WaveMix(**cfg.model_dump())

Field rules that a search space can break are declared on the fields themselves (``ge``,
``le``, ``multiple_of``, ``Literal`` choices) so that the spec loader can check ranges and
choices before anything runs. Rules that need several fields live in model validators.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import ConfigError
from engine.registry import Registry

if TYPE_CHECKING:  # the builders' return type; this module itself never needs torch
    import torch.nn as nn

__all__ = [
    "DATA_FIELDS",
    "FAMILIES",
    "PRESETS",
    "Family",
    "ModelConfig",
    "Preset",
    "create_model",
    "create_preset",
    "format_validation_error",
    "list_families",
    "make_config",
    "register_family",
    "register_preset",
]

# Fields set from the data set by the engine, never searched and never written in a spec.
DATA_FIELDS = ("in_channels", "num_classes", "image_size")


class ModelConfig(BaseModel):
    """Base of every family's configuration: frozen, typo-proof (``extra="forbid"``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # How to fix a broken field rule, appended to the error message by :func:`make_config`
    # (pydantic's own text for ``multiple_of``/``le`` says what is wrong, not what to do).
    fix_hints: ClassVar[dict[str, str]] = {}

    in_channels: int = Field(3, ge=1, description="input channels (set from the data)")
    num_classes: int = Field(10, ge=1, description="classes (set from the data)")
    # Input height = width in pixels, when known; lets the config reject sizes that the
    # architecture cannot process (e.g. not divisible by 2**level) before any tensor exists.
    image_size: int | None = Field(None, ge=1)


@dataclass(frozen=True)
class Family:
    """A registered model family."""

    name: str
    config_cls: type[ModelConfig]
    build: Callable[[Any], nn.Module]
    summary: str = ""


@dataclass(frozen=True)
class Preset:
    """A named configuration of a family, e.g. WaveMix-Lite-64/6."""

    name: str
    family: str
    config: dict[str, Any] = field(default_factory=dict)
    summary: str = ""


# Family name -> its config class (engine/models/configs.py, no torch) and -> its builder
# (the family modules, torch). A spec is checked against CONFIGS alone.
CONFIGS: Registry[type[ModelConfig]] = Registry("model family")
BUILDER_MODULES: dict[str, str] = {}  # family name -> the module that registers its builder
FAMILIES: Registry[Family] = Registry("model family")
PRESETS: Registry[Preset] = Registry("model preset")


def register_config(name: str, *, builder: str):
    """Class decorator registering a ModelConfig subclass as family ``name``'s config.

    Args:
        name: The family's name (what a spec's ``model`` section and checkpoints use).
        builder: The module whose ``register_family`` registers the family's builder; it is
            imported (with torch) when a model is first built.
    """

    def decorate(cls: type[ModelConfig]) -> type[ModelConfig]:
        CONFIGS.register(name)(cls)
        BUILDER_MODULES[name] = builder
        return cls

    return decorate


def register_family(name: str, config_cls: type[ModelConfig], summary: str = ""):
    """Decorator registering ``build(cfg) -> nn.Module`` as family ``name``; ``config_cls``
    must be the config registered under the same name."""
    if CONFIGS.get(name) is not config_cls:
        raise ConfigError(f"family {name!r}: {config_cls.__name__} is not the config registered "
                          f"for it ({CONFIGS.get(name).__name__})")

    def decorate(build: Callable[[Any], nn.Module]) -> Callable[[Any], nn.Module]:
        FAMILIES.register(name)(Family(name, config_cls, build, summary))
        return build

    return decorate


def register_preset(name: str, family: str, summary: str = "", **config: Any) -> None:
    """Register a named configuration of ``family``."""
    PRESETS.register(name)(Preset(name, family, dict(config), summary))


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """One line per broken rule: ``key: message (got value)``."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        key = ".".join(p for p in (prefix, loc) if p)
        got = e.get("input")
        got_txt = "" if isinstance(got, dict) else f" (got {got!r})"
        parts.append(f"{key}: {e['msg']}{got_txt}")
    return "; ".join(parts)


def make_config(family: str, **config: Any) -> ModelConfig:
    """Validate ``config`` against ``family``'s config class; raise ConfigError on any issue."""
    config_cls = CONFIGS.get(family)
    try:
        return config_cls(**config)
    except ValidationError as e:
        hints = config_cls.fix_hints
        broken = [str(err["loc"][0]) for err in e.errors() if err["loc"]]
        fixes = [f"{name}: {hints[name]}" for name in dict.fromkeys(broken) if name in hints]
        fix_txt = f" (fix: {'; '.join(fixes)})" if fixes else ""
        raise ConfigError(
            f"invalid {family} configuration: {format_validation_error(e, family)}{fix_txt}"
        ) from None


def create_model(family: str, **config: Any) -> nn.Module:
    """Build a model of ``family`` from keyword arguments (validated first).

    Example:
        >>> m = create_model("wavemix", final_dim=64, depth=6, level=1)
    """
    cfg = make_config(family, **config)
    return FAMILIES.get(family).build(cfg)


def create_preset(name: str, **overrides: Any) -> nn.Module:
    """Build a registered preset, optionally overriding some of its fields."""
    preset = PRESETS.get(name)
    return create_model(preset.family, **{**preset.config, **overrides})


def list_families() -> list[str]:
    """Names of the registered model families."""
    return FAMILIES.names()

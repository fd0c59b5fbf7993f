"""Model families. Importing this package registers every family and preset."""

from engine.models import baselines, cxv, wavemix  # noqa: F401  (register families)
from engine.models.base import (
    DATA_FIELDS,
    FAMILIES,
    PRESETS,
    ModelConfig,
    create_model,
    create_preset,
    list_families,
    make_config,
    register_family,
    register_preset,
)

__all__ = [
    "DATA_FIELDS",
    "FAMILIES",
    "PRESETS",
    "ModelConfig",
    "create_model",
    "create_preset",
    "list_families",
    "make_config",
    "register_family",
    "register_preset",
]

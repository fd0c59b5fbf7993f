"""Model families. Importing this package registers every family and preset."""

from engine.models import wavemix  # noqa: F401  (registers the family)
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

"""Model families: one registry of configs (no torch) and one of builders.

``CONFIGS``, ``DATA_FIELDS``, ``ModelConfig`` and ``make_config`` need no torch: the spec is
checked with them alone (the app validates specs without importing torch). Everything that
builds a model (``create_model``, ``FAMILIES``, the presets) imports the family modules, and
torch with them, on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from engine.models import configs  # noqa: F401  (registers every family's config)
from engine.models.base import BUILDER_MODULES, CONFIGS, DATA_FIELDS, ModelConfig, make_config

__all__ = [
    "CONFIGS",
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

_BUILDING = {"FAMILIES", "PRESETS", "create_model", "create_preset", "list_families",
             "register_family", "register_preset"}


def __getattr__(name: str) -> Any:
    if name in _BUILDING:
        for module in sorted(set(BUILDER_MODULES.values())):  # builders and presets register
            importlib.import_module(module)
        return getattr(importlib.import_module("engine.models.base"), name)
    raise AttributeError(f"module 'engine.models' has no attribute {name!r}")

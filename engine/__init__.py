"""WaveSearch engine: declarative architecture search over wavelet and linear-attention models.

Public API::

    engine.create_model(family, **config) -> torch.nn.Module
    engine.list_families() -> list[str]
    engine.load_spec(path) -> SearchSpec
    engine.load_model(path) -> torch.nn.Module   # from a checkpoint (probe-verified)
    engine.run_search(spec) -> SearchOutcome     # run or resume a search

Packages by concern: ``models``, ``data``, ``train``, ``memory``, ``search``, ``cli``; the
configs they share are in ``config`` (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["create_model", "list_families", "load_model", "load_spec", "run_search"]
__version__ = "0.1.0"

# Imported on first use so that `import engine` (e.g. from the CLI's `validate`) stays light.
_LAZY = {
    "create_model": "engine.models",
    "list_families": "engine.models",
    "load_spec": "engine.spec",
    "load_model": "engine.export",
    "run_search": "engine.search",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")

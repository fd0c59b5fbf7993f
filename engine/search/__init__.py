"""The search: a spec's candidates trained on Ray Tune into an Optuna study.

- :mod:`~engine.search.driver`: ``run_search`` (load, prepare, start, run, sweep);
- :mod:`~engine.protocol`: the typed messages between driver and workers;
- :mod:`~engine.space`, :mod:`~engine.search.screen`, :mod:`~engine.search.budget`:
  what a trial is, whether it may run, how many may;
- :mod:`~engine.search.bridge`, :mod:`~engine.search.worker`, :mod:`~engine.search.cluster`:
  Optuna's side, Ray's side, and the cluster itself;
- :mod:`~engine.samplers.registry`, :mod:`~engine.samplers.pareto_asha`: samplers and schedulers.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["SearchOutcome", "prepare_study", "run_search"]

# Imported on first use: the protocol and the space are read by export and the workers,
# which need neither the driver nor Optuna's samplers.
_LAZY = {"SearchOutcome": "engine.search.driver", "run_search": "engine.search.driver",
         "prepare_study": "engine.search.study"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'engine.search' has no attribute {name!r}")

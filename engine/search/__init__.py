"""The search: a spec's candidates trained on Ray Tune into an Optuna study.

- :mod:`~engine.search.driver`: ``run_search`` (load, prepare, start, run, sweep);
- :mod:`~engine.search.bridge` (the Tune searcher), :mod:`~engine.search.gate` (budget,
  deadline, pace) and :mod:`~engine.search.recorder` (each trial written through the study
  record): Optuna's side;
- :mod:`~engine.search.worker`, :mod:`~engine.search.cluster`: Ray's side and the cluster;
- :mod:`~engine.search.screen`, :mod:`~engine.search.budget`, :mod:`~engine.search.liveness`:
  whether a candidate may run, how many may, and which drivers are alive.

What a trial is (:mod:`engine.trial`, :mod:`engine.space`), the messages between driver,
workers and schedulers (:mod:`engine.protocol`) and the samplers and schedulers themselves
(:mod:`engine.samplers`) live outside this package: export and the benchmarks use them too."""

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

"""The trial protocol: what the driver assigns to a worker, and what a worker reports back.

Ray Tune carries a trial's ``config`` to the worker and the worker's results back as flat
dicts (it flattens nested keys and reserves some names). This module is the only code that
converts between those dicts and the typed messages the bridge, the schedulers and the worker
use:

- driver -> worker: an :class:`Assignment` (the Optuna trial, the :class:`TrialConfig`, and the
  driver's :class:`Prediction` of its size and memory), as :meth:`Assignment.to_tune`;
- worker -> driver: a :class:`Report` after every epoch and one at the end, whose ``outcome``
  is None while training, then :class:`Complete`, :class:`Failed`, :class:`Infeasible`, or
  :class:`Pruned` when the worker stops itself (the time budget). A trial that Tune stops
  early (a scheduler's decision) never reports an outcome; the bridge records it as
  :class:`Pruned`.

On the wire a report is the two keys Tune's schedulers read (``epoch``, ``val_accuracy``)
plus the whole message as one JSON string, so nothing is lost to Tune's flattening.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.caps import CapsConfig
from engine.train.progress import StepProgress
from engine.trial import TrialConfig

__all__ = [
    "EPOCH",
    "METRIC",
    "Assignment",
    "Complete",
    "Failed",
    "FinalMetrics",
    "Infeasible",
    "Outcome",
    "Prediction",
    "Progress",
    "Pruned",
    "Report",
    "RunInfo",
    "Screening",
    "SearchContext",
]

METRIC = "val_accuracy"  # the key Tune's schedulers compare (validation accuracy so far)
EPOCH = "epoch"  # the key Tune's schedulers count time in (epochs trained)
_REPORT = "wavesearch_report"  # the whole report, as JSON
_ASSIGNMENT = "wavesearch_assignment"
_PROGRESS = "wavesearch_progress"


@dataclass(frozen=True)
class SearchContext:
    """What every trial of a search shares (sent once through Ray's object store).

    Attributes:
        storage_url: The study's database.
        study_name: The study.
        caps: The per-trial caps.
        cpus: CPU threads a trial uses.
        device: ``cuda`` or ``cpu``: where trials train (see engine.search.cluster).
        deadline: Unix time by which a trial must end (None: no time budget); a trial stops
            itself before an epoch it could not finish by then.
    """

    storage_url: str
    study_name: str
    caps: CapsConfig = CapsConfig()
    cpus: float = 1.0
    device: str = "cpu"
    deadline: float | None = None


@dataclass(frozen=True)
class Prediction:
    """A candidate's size and peak training memory, known before it trains (the screen)."""

    param_count: int
    peak_memory_mb: float
    memory_method: str = "predicted"


@dataclass(frozen=True)
class Assignment:
    """One trial handed to a worker."""

    optuna_trial_id: int
    number: int
    config: TrialConfig
    prediction: Prediction

    def to_tune(self) -> dict[str, Any]:
        """The Tune ``config`` of the trial."""
        body = {"optuna_trial_id": self.optuna_trial_id, "number": self.number,
                "config": self.config.to_dict(), "prediction": asdict(self.prediction)}
        return {_ASSIGNMENT: json.dumps(body)}

    @classmethod
    def from_tune(cls, config: dict[str, Any]) -> Assignment:
        """Inverse of :meth:`to_tune`."""
        body = json.loads(config[_ASSIGNMENT])
        return cls(optuna_trial_id=int(body["optuna_trial_id"]), number=int(body["number"]),
                   config=TrialConfig.from_dict(body["config"]),
                   prediction=Prediction(**body["prediction"]))


@dataclass(frozen=True)
class RunInfo:
    """Where and when a trial ran."""

    device: str
    host: str
    started_at: float  # Unix time the worker began (Optuna's datetime_start is the ask)
    node: str = ""  # the Ray node id (several nodes may share a host)


@dataclass(frozen=True)
class FinalMetrics:
    """What a trial that trained its full budget leaves behind."""

    val_accuracy: float
    param_count: int
    peak_memory_mb: float
    memory_method: str  # "predicted" (CPU) or "measured" (CUDA allocator peak)
    violations: dict[str, float]  # per cap, <= 0 satisfied
    weights_artifact_id: str
    probe_logits: list[list[float]]
    wall_time_s: float
    switched_at: int | None = None  # first epoch trained with SGD (DualOpT)
    peak_reserved_mb: float | None = None


@dataclass(frozen=True)
class Complete:
    """The trial trained its full budget."""

    metrics: FinalMetrics


@dataclass(frozen=True)
class Pruned:
    """The trial stopped before its budget: a scheduler's decision, or the time budget."""

    reason: str


@dataclass(frozen=True)
class Failed:
    """The trial could not be built or trained; ``reason`` says why."""

    reason: str


@dataclass(frozen=True)
class Infeasible:
    """Over a cap: predicted before training, or a real out-of-memory while training."""

    reason: str
    violations: dict[str, float]
    param_count: int = 0
    peak_memory_mb: float = 0.0
    memory_method: str = "predicted"


Outcome = Complete | Pruned | Failed | Infeasible
_OUTCOMES: dict[str, type] = {"complete": Complete, "failed": Failed, "infeasible": Infeasible,
                              "pruned": Pruned}


@dataclass(frozen=True)
class Report:
    """One message from a worker: progress after an epoch, and at the end its outcome.

    Attributes:
        epoch: Epochs trained so far (0 before the first).
        val_accuracy: Validation accuracy after ``epoch`` (NaN before the first epoch).
        run: Where and when the trial runs.
        phase: The optimiser that trained this epoch (``adamw`` / ``sgd``).
        train_loss: Mean training loss of this epoch.
        epoch_s: Seconds this epoch took (training and validation).
        outcome: None while training; the trial's end otherwise.
    """

    epoch: int
    val_accuracy: float
    run: RunInfo
    phase: str | None = None
    train_loss: float | None = None
    epoch_s: float | None = None
    outcome: Outcome | None = field(default=None)

    @property
    def has_epoch(self) -> bool:
        """True when this report carries a finished epoch's accuracy."""
        return self.epoch >= 1 and math.isfinite(self.val_accuracy)

    def to_tune(self) -> dict[str, Any]:
        """The dict given to ``tune.report``."""
        body = asdict(self)
        if self.outcome is not None:
            kind = next(k for k, c in _OUTCOMES.items() if isinstance(self.outcome, c))
            body["outcome"] = {"kind": kind, **asdict(self.outcome)}
        return {EPOCH: self.epoch, METRIC: self.val_accuracy, _REPORT: json.dumps(body)}

    @classmethod
    def from_tune(cls, result: dict[str, Any] | None) -> Report | None:
        """Inverse of :meth:`to_tune`; None for a result that is not one of ours."""
        if not result or _REPORT not in result:
            return None
        body = json.loads(result[_REPORT])
        outcome = body.pop("outcome")
        if outcome is not None:
            kind = _OUTCOMES[outcome.pop("kind")]
            if kind is Complete:
                outcome = Complete(FinalMetrics(**outcome["metrics"]))
            else:
                outcome = kind(**outcome)
        return cls(run=RunInfo(**body.pop("run")), outcome=outcome, **body)


@dataclass(frozen=True)
class Screening:
    """The driver's verdict on one candidate before it is scheduled: its prediction, or why it
    will not be trained (engine/search/screen.py judges; samplers read it)."""

    prediction: Prediction | None = None
    rejection: Failed | Infeasible | None = None


@dataclass(frozen=True)
class Progress(StepProgress):
    """A worker's progress inside an epoch (engine.train.progress: once early, the pace probe,
    then at most every ~30 s), with the last finished epoch's result. Schedulers see it as a
    repeat of that result (``epoch``, ``val_accuracy``: NaN before the first), which records
    nothing new.

    Attributes:
        last_epoch: Epochs finished.
        last_val_accuracy: Validation accuracy after them (NaN: none yet).
    """

    last_epoch: int = 0
    last_val_accuracy: float = float("nan")

    def to_tune(self) -> dict[str, Any]:
        """The dict given to ``tune.report``."""
        return {EPOCH: self.last_epoch, METRIC: self.last_val_accuracy,
                _PROGRESS: json.dumps(asdict(self))}

    @classmethod
    def from_tune(cls, result: dict[str, Any] | None) -> Progress | None:
        """Inverse of :meth:`to_tune`; None for any other result."""
        if not result or _PROGRESS not in result:
            return None
        return cls(**json.loads(result[_PROGRESS]))

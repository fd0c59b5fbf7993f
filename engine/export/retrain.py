"""Retrain the winner: a chosen architecture trained from scratch on train + validation.

The search trains each candidate on a training split it may cap (``data.train_size``) and
ranks candidates on a validation split. Once an architecture is chosen there is nothing left
to rank, so :func:`retrain` trains it again from scratch on every training image of the spec's
data set, validation images included, with the trial's own recipe (its TrainConfig, the same
seed), measures the test split once at the end, writes a checkpoint and records the run in the
study (``STUDY_RETRAINS``).

DualOpT without a validation split: the plateau rule (``switch_patience``) watches validation
accuracy, which a train+val run does not have, so the switch becomes a fixed epoch replaying
the one the search made, rescaled to the retrain's length
(:meth:`engine.train.schedule.OptimizerSchedule.rescaled`, the one statement of the rule).

A time budget instead of epochs (``minutes``): a few training steps of a throwaway copy of the
model on the real data measure the pace, and the run gets as many whole epochs as fit in the
budget, the test pass included (a learning-rate schedule needs its length up front, so the
run is sized before it starts rather than cut when time runs out).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import torch
from pydantic import ValidationError

from engine.data import DataBundle, DataConfig, load_data
from engine.data.base import channel_stats
from engine.errors import ConfigError, StorageError
from engine.export.checkpoint import Checkpoint, checkpoint_bytes, new_meta, probe_logits
from engine.export.files import check_output_path, write_atomic
from engine.export.trials import choose_trial
from engine.train import DeviceData, EpochReport, StepProgress, TrainConfig, evaluate, train_model
from engine.train.progress import PROBE_STEPS
from engine.train.schedule import OptimizerSchedule
from engine.trial import TrialConfig
from engine.units import format_duration
from storage import StudyRecord, TrialRecord, load_study, write_study

__all__ = ["RetrainProgress", "RetrainResult", "count", "epochs_for_minutes", "measure_pace",
           "retrain", "retrain_config", "retrain_data"]


@dataclass(frozen=True)
class RetrainProgress:
    """One step of a retrain: the plan (``epoch`` 0), then every finished epoch.

    Attributes:
        epoch: Epochs finished (0 = about to start).
        epochs: Epochs planned.
        elapsed_s: Seconds since training began (0 for the plan).
        message: The step as one human-readable line.
        train_loss: Mean training loss of the epoch (None for the plan).
    """

    epoch: int
    epochs: int
    elapsed_s: float
    message: str
    train_loss: float | None = None


@dataclass(frozen=True)
class RetrainResult:
    """What a retrain produced.

    Attributes:
        study: The study the architecture comes from.
        trial_number: Its trial.
        family: The model family.
        epochs: Epochs trained.
        switch_epoch: DualOpT: AdamW epochs before SGD (None for other optimisers).
        train_images: Images trained on (train + validation, or the ``train_size`` cap).
        test_accuracy: Top-1 on the test split (None when the data set has none).
        train_loss: Mean training loss of the last epoch.
        seconds: Training time, test evaluation included.
        path: The checkpoint written (absolute).
    """

    study: str
    trial_number: int
    family: str
    epochs: int
    switch_epoch: int | None
    train_images: int
    test_accuracy: float | None
    train_loss: float
    seconds: float
    path: Path


def retrain_config(train: TrainConfig, *, epochs: int | None = None,
                   switched_at: int | None = None) -> TrainConfig:
    """The trial's training recipe for a run without validation (see the module docstring).

    Args:
        train: The trial's TrainConfig.
        epochs: Retrain epochs; None = the trial's.
        switched_at: The first epoch the trial trained with SGD (``TRIAL_SWITCHED_AT``), None
            when it never switched.

    Raises:
        ConfigError: ``epochs`` is out of TrainConfig's range.
    """
    if epochs is not None and epochs < 1:
        raise ConfigError(f"epochs = {epochs}: train at least 1 epoch (or leave it unset to "
                          "train as many as the trial did)")
    schedule = OptimizerSchedule.of(train).rescaled(train.epochs if epochs is None else epochs,
                                                    switched_at)
    update: dict = {"epochs": schedule.epochs}
    if schedule.dualopt:
        update.update(switch_epoch=schedule.switch_epoch, switch_patience=None)
    try:
        return TrainConfig.model_validate({**train.model_dump(), **update})
    except ValidationError as err:
        raise ConfigError(f"epochs = {epochs} is out of range ({err.errors()[0]['msg']}); "
                          "use fewer epochs") from None


def retrain_data(data: DataConfig, train_size: int | None = None) -> DataBundle:
    """The spec's data set for a final run: the whole training split, validation images
    included, no validation split; the test split kept apart.

    Args:
        data: The spec's data section (its size caps are lifted).
        train_size: Keep this many images, drawn at random with ``data.seed`` (quick runs).
    """
    full = load_data(data.model_copy(update={"train_size": None, "val_size": None}))
    x = np.concatenate((full.train_x, full.val_x))  # (N, C, H, W) uint8
    y = np.concatenate((full.train_y, full.val_y))
    if train_size is not None and train_size < len(y):
        keep = np.sort(np.random.default_rng(data.seed).permutation(len(y))[:train_size])
        x, y = x[keep], y[keep]
    mean, std = channel_stats(x)  # the model is trained, and must be fed, with these
    return DataBundle(train_x=np.ascontiguousarray(x), train_y=y, val_x=x[:0], val_y=y[:0],
                      classes=full.classes, test_x=full.test_x, test_y=full.test_y,
                      mean=mean, std=std, source=f"{full.source} (train + validation)")


def count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless n is 1 ("1 epoch", "1,438 images")."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _epoch_message(r: EpochReport, epochs: int) -> str:
    return (f"epoch {r.epoch}/{epochs} {r.optimizer}: train loss {r.train_loss:.4f}, "
            f"{r.seconds:.1f} s ({r.images_per_s:,.0f} images/s)")


def _step_message(p: StepProgress, epochs: int) -> str:
    """A line from inside an epoch; the first (a few steps into the run) estimates it all."""
    if p.epoch == 1 and p.step == PROBE_STEPS:
        return (f"pace: {p.images_per_s:,.0f} images/s over the first {p.step} steps: "
                f"~{format_duration(p.epoch_train_s)} an epoch, "
                f"~{format_duration(p.epoch_train_s * epochs)} for {count(epochs, 'epoch')} "
                "(validation and test not included)")
    return (f"epoch {p.epoch}/{epochs}: {p.step}/{p.steps} steps "
            f"({100 * p.step / p.steps:.0f}%), "
            f"~{format_duration(max(0.0, p.epoch_train_s - p.seconds))} left in this epoch")


PROBE_BATCHES = 6  # timed steps of the pace probe (the first one, a warm-up, makes it cautious)


def epochs_for_minutes(minutes: float, epoch_s: float, test_s: float = 0.0,
                       max_epochs: int | None = None) -> int:
    """Whole epochs of ``epoch_s`` seconds that fit in ``minutes`` after ``test_s`` seconds of
    testing (at least 1, at most ``max_epochs``)."""
    n = max(1, math.floor((60.0 * minutes - test_s) / max(epoch_s, 1e-9)))
    return n if max_epochs is None else min(n, max_epochs)


def measure_pace(model: torch.nn.Module, data: DataBundle, train: TrainConfig,
                 device: str) -> float:
    """Training images per second of ``model`` under ``train``'s recipe on ``device``, from
    ``PROBE_BATCHES`` steps of a copy of it (the model itself and the random state are left
    as they were)."""
    n = min(len(data.train_y), PROBE_BATCHES * train.batch_size)
    probe = dataclasses.replace(data, train_x=data.train_x[:n], train_y=data.train_y[:n],
                                val_x=data.val_x[:0], val_y=data.val_y[:0], test_x=None,
                                test_y=None)
    cfg = train.model_copy(update={"epochs": 1, "switch_epoch": 1, "switch_patience": None}
                           if OptimizerSchedule.of(train).dualopt else {"epochs": 1})
    reports: list[EpochReport] = []
    with torch.random.fork_rng(devices=[]):
        train_model(copy.deepcopy(model), probe, cfg, device=device, on_epoch=reports.append)
    return reports[-1].images_per_s


@dataclass(frozen=True)
class _Plan:
    """Everything a retrain decided before training: what, how long, on which data."""

    study: optuna.Study
    record: StudyRecord
    trial: TrialRecord
    family: str
    model_config: dict
    train: TrainConfig
    search_train: TrainConfig  # the trial's own recipe, which ``train`` was derived from
    data: DataBundle
    dataset: str
    train_size: int | None
    device: str

    @property
    def search_epochs(self) -> int:
        """Epochs the trial trained in the search."""
        return self.search_train.epochs

    def with_epochs(self, epochs: int | None) -> _Plan:
        """This plan retrained for ``epochs`` (None: the trial's; DualOpT's switch scaled
        with it; see ``retrain_config``)."""
        return dataclasses.replace(self, train=retrain_config(
            self.search_train, epochs=epochs,
            switched_at=self.trial.switched_at))

    @property
    def switch(self) -> int | None:
        """DualOpT: AdamW epochs before SGD; None for other optimisers."""
        return self.train.switch_epoch if OptimizerSchedule.of(self.train).dualopt else None

    def describe(self) -> str:
        switch = ("" if self.switch is None
                  else f", SGD after {count(self.switch, 'AdamW epoch')}")
        return (f"retraining trial {self.trial.number} of {self.study.study_name!r} "
                f"({self.family}) on {self.device}: {count(self.train.epochs, 'epoch')} on "
                f"{count(len(self.data.train_y), 'image')} (train + validation){switch}")


def _plan(storage_url: str, study_name: str, trial_number: int | None, epochs: int | None,
          train_size: int | None, device: str | None) -> _Plan:
    study = load_study(storage_url, study_name)
    record = StudyRecord.read(study)
    trial = TrialRecord.read(choose_trial(study, trial_number))
    cfg = TrialConfig.from_dict(trial.config)
    if record.spec_data is None:
        raise StorageError(f"study {study_name!r} has no stored spec, so its data set is "
                           "unknown; retrain studies that engine search created")
    spec_data = DataConfig.model_validate(record.spec_data)
    data = retrain_data(spec_data, train_size)
    return _Plan(study, record, trial, cfg.family, cfg.model_kwargs(data), cfg.train, cfg.train,
                 data, spec_data.dataset, train_size,
                 device or ("cuda" if torch.cuda.is_available() else "cpu")).with_epochs(epochs)


def _checkpoint(plan: _Plan, model: torch.nn.Module, test_acc: float | None, loss: float,
                seconds: float) -> Checkpoint:
    """The retrained model (on the CPU) with its document (see engine.export.checkpoint)."""
    d = plan.data
    return Checkpoint(new_meta(
        family=plan.family, model_config=plan.model_config,
        train=plan.train.model_dump(mode="json"),
        spec_hash=plan.record.spec_hash,
        study=plan.study.study_name, trial_number=plan.trial.number, provenance="retrain",
        retrain={"epochs": plan.train.epochs, "switch_epoch": plan.switch,
                 "search_epochs": plan.search_epochs, "train_images": len(d.train_y),
                 "trained_on": "train+validation", "train_size": plan.train_size,
                 "device": plan.device, "seconds": seconds},
        metrics={"test_accuracy": test_acc, "train_loss": loss,
                 "param_count": sum(p.numel() for p in model.parameters()),
                 "search_val_accuracy": plan.trial.val_accuracy},
        data={"dataset": plan.dataset, "classes": list(d.classes), "mean": list(d.mean),
              "std": list(d.std), "image_size": d.image_size, "in_channels": d.in_channels},
        probe_logits=probe_logits(model, d.in_channels, d.image_size)),
        {k: v.detach() for k, v in model.state_dict().items()})


def retrain(storage_url: str, study_name: str, *, trial_number: int | None = None,
            epochs: int | None = None, minutes: float | None = None,
            train_size: int | None = None,
            out: str | os.PathLike, progress: Callable[[RetrainProgress], None] | None = None,
            device: str | None = None) -> RetrainResult:
    """Train a trial's architecture from scratch on train + validation and save it.

    Args:
        storage_url: The study's database.
        study_name: The study.
        trial_number: The trial whose architecture and recipe to train; None = the one
            ``engine export`` picks (the best-accuracy feasible Pareto trial).
        epochs: Epochs; None = the trial's. DualOpT's switch is scaled with it.
        minutes: Instead of ``epochs``: as many epochs as fit in this many minutes at the
            pace measured before training (see the module docstring).
        train_size: Cap on training images (quick runs); None = all of them.
        out: The checkpoint file to write (checked before training starts).
        progress: Receives the plan, then every finished epoch.
        device: ``cuda`` or ``cpu``; None = CUDA when available.

    Raises:
        StorageError: missing study or trial, or a trial that cannot be retrained.
        CheckpointError: ``out`` cannot be written.
        ConfigError: ``epochs``, ``minutes`` or ``train_size`` out of range, or both
            ``epochs`` and ``minutes`` given.
    """
    from engine.models import create_model

    if train_size is not None and train_size < 2:
        raise ConfigError(f"train_size = {train_size} is too small to train on; use 2 or more "
                          "(or leave it unset to use every training image)")
    if minutes is not None and epochs is not None:
        raise ConfigError(f"both epochs = {epochs} and minutes = {minutes} given; size the run "
                          "by one of them")
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        raise ConfigError(f"minutes = {minutes}: give a time budget above 0 (e.g. 30)")
    path = check_output_path(out)
    plan = _plan(storage_url, study_name, trial_number, epochs, train_size, device)
    report = progress or (lambda step: None)
    torch.manual_seed(plan.train.seed)  # the initial weights, as the search drew them
    model = create_model(plan.family, **plan.model_config)
    if minutes is not None:
        plan, note = _fit_to_minutes(plan, model, minutes)
        report(RetrainProgress(0, plan.train.epochs, 0.0, note))
    report(RetrainProgress(0, plan.train.epochs, 0.0, plan.describe()))
    t0 = time.perf_counter()
    losses: list[float] = []

    def on_epoch(r: EpochReport) -> None:
        losses.append(r.train_loss)
        report(RetrainProgress(r.epoch, plan.train.epochs, time.perf_counter() - t0,
                               _epoch_message(r, plan.train.epochs), r.train_loss))

    def on_step(p: StepProgress) -> None:
        report(RetrainProgress(p.epoch - 1, plan.train.epochs, time.perf_counter() - t0,
                               _step_message(p, plan.train.epochs)))

    train_model(model, plan.data, plan.train, device=plan.device, on_epoch=on_epoch,
                on_step=on_step)
    d, test_acc = plan.data, None
    if d.test_x is not None and len(d.test_x):  # once, at the end
        test_acc = evaluate(model, DeviceData(d.test_x, d.test_y, d.mean, d.std,
                                              torch.device(plan.device)))
    seconds = time.perf_counter() - t0
    write_atomic(path, checkpoint_bytes(_checkpoint(plan, model.cpu(), test_acc, losses[-1],
                                                    seconds)))
    result = RetrainResult(study_name, plan.trial.number, plan.family, plan.train.epochs,
                           plan.switch, len(d.train_y), test_acc, losses[-1], seconds, path)
    _record(plan.study, result, plan.device)
    return result


def _fit_to_minutes(plan: _Plan, model: torch.nn.Module, minutes: float) -> tuple[_Plan, str]:
    """``plan`` with as many epochs as fit in ``minutes``, and a line saying why."""
    ips = measure_pace(model, plan.data, plan.train, plan.device)
    epoch_s = len(plan.data.train_y) / ips
    n_test = 0 if plan.data.test_y is None else len(plan.data.test_y)
    test_s = n_test / (3 * ips)  # a forward pass is about a third of a training step
    limit = TrainConfig.model_fields["epochs"].metadata
    max_epochs = next((m.le for m in limit if getattr(m, "le", None) is not None), None)
    epochs = epochs_for_minutes(minutes, epoch_s, test_s, max_epochs)
    fits = "fits" if epochs * epoch_s + test_s <= 60 * minutes else "is the least there is"
    note = (f"measured {ips:,.0f} images/s: {count(epochs, 'epoch')} of "
            f"~{epoch_s:.{0 if epoch_s >= 10 else 1}f} s "
            f"{fits} in {minutes:g} min")
    return plan.with_epochs(epochs), note


def _record(study: optuna.Study, result: RetrainResult, device: str) -> None:
    """Append the run to the study's list of retrains (read, append, write: two retrains
    finishing in the same instant can lose one entry, never corrupt the list)."""
    runs = list(StudyRecord.read(study).retrains)
    runs.append({"trial_number": result.trial_number, "epochs": result.epochs,
                 "switch_epoch": result.switch_epoch, "train_images": result.train_images,
                 "test_accuracy": result.test_accuracy, "seconds": round(result.seconds, 3),
                 "path": str(result.path), "device": device, "finished_at": time.time()})
    write_study(study, retrains=runs)

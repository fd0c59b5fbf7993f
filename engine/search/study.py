"""Preparing a search's Optuna study: created once, or reopened for a resume."""

from __future__ import annotations

import warnings

import optuna

from engine.data import DataBundle
from engine.errors import StorageError
from engine.samplers.registry import make_sampler
from engine.search.liveness import fail_orphans
from engine.spec import SearchSpec, spec_hash
from storage import BudgetRecord, StudyRecord, load_study, open_storage, redact, write_study
from storage.locks import database_lock

__all__ = ["prepare_study"]


def prepare_study(spec: SearchSpec, url: str, data: DataBundle, *,
                  n_trials: int | None = None) -> optuna.Study:
    """Create the study, or reopen it for a resume after checking it is the same search.

    Creation happens under the database lock, so drivers started together never race.
    Trials whose driver is certainly dead are failed as interrupted and their parameters
    re-queued (see engine.search.liveness); trials of live drivers are left alone.

    Args:
        spec: The validated spec.
        url: The study's storage URL.
        data: The loaded data (its shape is recorded on a new study).
        n_trials: The trial budget if the command overrides the spec's.

    Raises:
        StorageError: the study exists but was begun with a different search space.
    """
    with database_lock(url):
        study = _create_or_open(spec, url, data)
    write_study(study, budget=BudgetRecord(
        n_trials=n_trials if n_trials is not None else spec.search.n_trials,
        budget_epochs=spec.search.budget_epochs, budget_minutes=spec.search.budget_minutes,
        epochs_per_trial=spec.train.epochs))
    fail_orphans(study)
    return study


def _create_or_open(spec: SearchSpec, url: str, data: DataBundle) -> optuna.Study:
    storage = open_storage(url)
    name = spec.study.name
    h = spec_hash(spec)
    try:
        existing = load_study(url, name)
    except StorageError:
        existing = None
    old = None if existing is None else StudyRecord.read(existing)
    if old is not None:
        if old.spec_hash != h:
            raise StorageError(
                f"study {name!r} in {redact(url)} was begun with a different search space "
                f"(spec hash {old.spec_hash} != {h}); to start a new study, change study.name in the spec "
                "(or pass --study NEW_NAME); to continue the old one, restore its spec")
    # Counted under the database lock (the caller holds it): drivers started together each get
    # their own sampler stream.
    stream = 0 if old is None else (1 if old.drivers_opened is None else old.drivers_opened)
    study = optuna.create_study(study_name=name, storage=storage,
                                sampler=make_sampler(spec, stream),
                                directions=spec.directions, load_if_exists=True)
    write_study(study, drivers_opened=stream + 1)
    if existing is None:
        write_study(study, spec_hash=h, spec=spec.model_dump(mode="json"),
                    objectives=list(spec.objective_names),
                    constraints=spec.constraints.model_dump(),
                    data={"dataset": spec.data.dataset, "in_channels": data.in_channels,
                          "image_size": data.image_size, "num_classes": data.num_classes,
                          "classes": list(data.classes), "mean": list(data.mean),
                          "std": list(data.std)})
        # Named objectives: optuna-dashboard and optuna.visualization label axes with them
        # ("experimental" in Optuna 5, stable since 3.2).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(spec.objective_names)
    return study

"""Preparing a search's Optuna study: created once, or reopened for a resume."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from engine.data import DataBundle
from engine.errors import StorageError
from engine.search.sampling import make_sampler
from engine.spec import SearchSpec, spec_hash
from storage import load_study, open_storage, redact, schema

__all__ = ["prepare_study"]


def prepare_study(spec: SearchSpec, url: str, data: DataBundle) -> optuna.Study:
    """Create the study, or reopen it for a resume after checking it is the same search.

    Trials a crash left RUNNING are failed and their parameters re-queued.

    Raises:
        StorageError: the study exists but was begun with a different search space.
    """
    storage = open_storage(url)
    name = spec.study.name
    h = spec_hash(spec)
    try:
        existing = load_study(url, name)
    except StorageError:
        existing = None
    if existing is not None:
        old = existing.user_attrs.get(schema.STUDY_SPEC_HASH)
        if old != h:
            raise StorageError(
                f"study {name!r} in {redact(url)} was begun with a different search space "
                f"(spec hash {old} != {h}); to start a new study, change study.name in the spec "
                "(or pass --study NEW_NAME); to continue the old one, restore its spec")
    study = optuna.create_study(study_name=name, storage=storage, sampler=make_sampler(spec),
                                directions=spec.directions, load_if_exists=True)
    if existing is None:
        study.set_user_attr(schema.STUDY_SPEC_HASH, h)
        study.set_user_attr(schema.STUDY_SPEC, spec.model_dump(mode="json"))
        study.set_user_attr(schema.STUDY_OBJECTIVES, spec.objective_names)
        study.set_user_attr(schema.STUDY_CONSTRAINTS, spec.constraints.model_dump())
        study.set_user_attr(schema.STUDY_DATA, {
            "dataset": spec.data.dataset, "in_channels": data.in_channels,
            "image_size": data.image_size, "num_classes": data.num_classes,
            "classes": list(data.classes), "mean": list(data.mean), "std": list(data.std)})
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        if t.state == TrialState.RUNNING:
            storage.set_trial_user_attr(t._trial_id, schema.TRIAL_FAIL_REASON, schema.INTERRUPTED_REASON)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            study.enqueue_trial(t.params, skip_if_exists=False)
    return study

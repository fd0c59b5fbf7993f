"""A finished trial of a study as a checkpoint: choosing the trial, reading its weights.

Export and retrain take the same trials: finished (COMPLETE), trained and feasible. By default
the best-accuracy feasible Pareto trial. Any other choice is refused with the reason (failed,
pruned, never trained because it was over a cap, infeasible) and the trials to choose from.
"""

from __future__ import annotations

import io
import os
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from engine.errors import ConfigError, StorageError
from engine.export.checkpoint import (
    Checkpoint,
    checkpoint_bytes,
    new_meta,
    probe_logits,
    rebuild,
)
from engine.export.files import check_output_path, write_atomic
from engine.trial import TrialConfig
from storage import (
    SQLArtifactStore,
    StudyRecord,
    TrialRecord,
    best_accuracy_trial,
    load_study,
    read_trials,
)

__all__ = [
    "build_checkpoint",
    "choose_trial",
    "export_checkpoint",
    "feasible_numbers",
    "measure_test_accuracy",
]

_DATA_INFO = ("dataset", "classes", "mean", "std", "image_size", "in_channels")


def _first_line(text: object) -> str:
    return str(text).splitlines()[0][:200] if text else ""


def _why_unusable(r: TrialRecord) -> str | None:
    """Why a trial cannot be exported or retrained, or None when it can."""
    if r.state != TrialState.COMPLETE:
        reason = _first_line(r.reason)
        return f"is {r.state.name}" + (f" ({reason})" if reason else "")
    if r.screened_out:
        reason = _first_line(r.state_reason)
        return "was never trained: it is infeasible" + (f" ({reason})" if reason else "")
    if not r.feasible:
        broken = ", ".join(f"{k} over by {v:g}" for k, v in r.constraints.items() if v > 0)
        return f"is infeasible: it breaks the study's caps ({broken})"
    if r.config is None:
        return "has no stored config"
    return None


def feasible_numbers(study: optuna.Study) -> list[int]:
    """Numbers of the trials export and retrain accept (finished, trained, feasible)."""
    return [r.number for r in read_trials(study) if _why_unusable(r) is None]


def _choices(study: optuna.Study) -> str:
    numbers = feasible_numbers(study)
    if not numbers:
        return "the study has no feasible finished trial yet"
    shown = ", ".join(map(str, numbers[:20])) + (", ..." if len(numbers) > 20 else "")
    try:
        default = f" (default: {best_accuracy_trial(study).number}, the best-accuracy Pareto trial)"
    except StorageError:
        default = ""
    return f"choose a feasible trial with --trial: {shown}{default}"


def choose_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    """The trial to export or retrain: ``number``, or the best-accuracy feasible Pareto trial.

    Raises:
        StorageError: no such trial, or it is unfinished, failed, pruned, never trained or
            infeasible (the message names the feasible trials).
    """
    if number is None:
        return best_accuracy_trial(study)
    matches = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not matches:
        raise StorageError(f"study {study.study_name!r} has no trial {number} (it has "
                           f"{len(study.trials)} trials); {_choices(study)}")
    problem = _why_unusable(TrialRecord.read(matches[0]))
    if problem:
        raise StorageError(f"trial {number} of study {study.study_name!r} {problem}; "
                           f"{_choices(study)}")
    return matches[0]


def measure_test_accuracy(model: torch.nn.Module, study: optuna.Study) -> float | None:
    """Top-1 of ``model`` on the test split of the study's data set, which the search never
    saw (normalised as in the search); None when the data set has no test split."""
    from engine.data import DataConfig, load_data
    from engine.train import DeviceData, evaluate

    d = StudyRecord.read(study).spec_data
    if not d:
        return None
    bundle = load_data(DataConfig.model_validate(d))
    if bundle.test_x is None or len(bundle.test_x) == 0:
        return None
    data = DeviceData(bundle.test_x, bundle.test_y, bundle.mean, bundle.std, torch.device("cpu"))
    return evaluate(model, data)


def _trial_weights(storage_url: str, t: TrialRecord, study_name: str) -> dict[str, torch.Tensor]:
    artifact_id = t.weights_artifact_id
    if artifact_id is None:
        raise StorageError(f"trial {t.number} of {study_name!r} has no saved weights (written "
                           "before weights were stored?); retrain it with engine retrain")
    with SQLArtifactStore(storage_url).open_reader(artifact_id) as f:
        return torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)


def build_checkpoint(storage_url: str, study_name: str, *, trial_number: int | None = None,
                     test_accuracy: bool = True) -> Checkpoint:
    """The checkpoint of a finished trial (default: the best-accuracy feasible Pareto trial).

    The rebuilt model is checked against the logits the worker recorded when the trial
    ended, so a checkpoint is never made from weights that do not match the trained model.

    Args:
        storage_url: The study's database.
        study_name: The study.
        trial_number: The trial; None = the best-accuracy feasible Pareto trial.
        test_accuracy: Measure top-1 on the data set's test split (loads the data set).

    Raises:
        StorageError: missing study or trial, or a trial that cannot be exported.
        CheckpointError: the stored weights do not rebuild the trained model.
    """
    study = load_study(storage_url, study_name)
    t = TrialRecord.read(choose_trial(study, trial_number))
    s = StudyRecord.read(study)
    cfg = TrialConfig.from_dict(t.config)
    data = s.data
    model_config = cfg.model_kwargs(data)
    recorded = t.probe_logits
    meta = new_meta(
        family=cfg.family, model_config=model_config, train=t.config["train"],
        spec_hash=s.spec_hash, study=study_name,
        trial_number=t.number, provenance="search", retrain=None, metrics=t.metrics(),
        data={k: data.get(k) for k in _DATA_INFO}, probe_logits=recorded)
    ckpt = Checkpoint(meta, _trial_weights(storage_url, t, study_name))
    where = f"trial {t.number} of {study_name!r}"
    # Trials from before probes were recorded: the probe then proves the file's integrity
    # from here on (it is the stored weights' own output), not the match with training.
    model = rebuild(ckpt, where=where, verify=bool(recorded))
    if not recorded:
        meta["probe_logits"] = probe_logits(model, model_config["in_channels"],
                                            model_config["image_size"])
        meta["probe_source"] = "export: the trial recorded no probe logits"
    if test_accuracy:
        meta["metrics"]["test_accuracy"] = measure_test_accuracy(model, study)
    return ckpt


def export_checkpoint(storage_url: str, study_name: str, *, trial_number: int | None = None,
                      out: str | os.PathLike, test_accuracy: bool = True,
                      format: str = "safetensors") -> dict[str, Any]:
    """Write a trial's checkpoint (or ONNX model) to ``out`` atomically.

    Args:
        storage_url, study_name, trial_number, test_accuracy: See :func:`build_checkpoint`.
        out: The file to write; checked before anything is built.
        format: ``safetensors`` (a checkpoint :func:`~engine.export.load_model` rebuilds) or
            ``onnx`` (see :func:`~engine.export.onnx_export.onnx_bytes`).

    Returns:
        The checkpoint's JSON document (``path``: where it was written).
    """
    if format not in ("safetensors", "onnx"):
        raise ConfigError(f"format must be 'safetensors' or 'onnx', got {format!r}")
    check_output_path(out)
    ckpt = build_checkpoint(storage_url, study_name, trial_number=trial_number,
                            test_accuracy=test_accuracy)
    if format == "onnx":
        from engine.export.onnx_export import onnx_bytes

        data = onnx_bytes(ckpt, where=f"trial {ckpt['trial_number']} of {study_name!r}")
    else:
        data = checkpoint_bytes(ckpt)
    path = write_atomic(out, data)
    return {**ckpt.meta, "path": str(path), "bytes": len(data)}

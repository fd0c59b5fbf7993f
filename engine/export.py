"""Checkpoints that rebuild themselves: export a trial, load it back as a model.

A checkpoint is one ``torch.save`` file holding only tensors and plain data, so loading uses
``torch.load(weights_only=True)`` and never unpickles arbitrary objects. It carries the
family, the full model config (data fields included), the state dict, the spec hash, the
metrics, the training settings and the library versions.
"""

from __future__ import annotations

import io
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from engine.errors import StorageError, WaveSearchError
from storage import SQLArtifactStore, best_accuracy_trial, load_study, schema

__all__ = [
    "FORMAT",
    "checkpoint_bytes",
    "export_checkpoint",
    "load_checkpoint",
    "load_model",
    "probe_input",
]

FORMAT = "wavesearch.checkpoint/1"
PROBE_SEED = 20221  # fixed: the probe input is rebuilt from this seed, never stored
PROBE_ATOL = 1e-4  # float32 rounding across processes and thread counts stays far below this


def probe_input(in_channels: int, image_size: int) -> torch.Tensor:
    """The fixed input (2, C, H, W) on which a checkpoint records its model's logits."""
    g = torch.Generator().manual_seed(PROBE_SEED)
    return torch.randn(2, in_channels, image_size, image_size, generator=g)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("torch", "wavesearch", "optuna", "pytorch_wavelets", "ray"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _test_accuracy(model: nn.Module, study_attrs: dict[str, Any]) -> float | None:
    """Top-1 on the data set's test split, when it has one (the search never saw it)."""
    from engine.data import DataConfig, load_data
    from engine.train import DeviceData, evaluate

    spec = study_attrs.get(schema.STUDY_SPEC) or {}
    d = spec.get("data")
    if not d:
        return None
    bundle = load_data(DataConfig.model_validate(d))
    if bundle.test_x is None or len(bundle.test_x) == 0:
        return None
    return evaluate(model, DeviceData(bundle.test_x, bundle.test_y, bundle.mean, bundle.std,
                                       torch.device("cpu")))


def build_checkpoint(storage_url: str, study_name: str, *, trial_number: int | None = None,
                     test_accuracy: bool = True) -> dict[str, Any]:
    """The checkpoint dict of a finished trial (default: best-accuracy feasible Pareto point)."""
    from engine.models import create_model

    study = load_study(storage_url, study_name)
    if trial_number is None:
        trial = best_accuracy_trial(study)
    else:
        matches = [t for t in study.get_trials(deepcopy=False) if t.number == trial_number]
        if not matches:
            raise StorageError(f"study {study_name!r} has no trial {trial_number}; it has "
                               f"{len(study.trials)} trials (numbers 0..{len(study.trials) - 1})")
        trial = matches[0]
    artifact_id = trial.user_attrs.get(schema.TRIAL_WEIGHTS)
    if artifact_id is None:
        raise StorageError(f"trial {trial.number} of {study_name!r} has no saved weights (state "
                           f"{trial.state.name}); choose a COMPLETE trial")
    with SQLArtifactStore(storage_url).open_reader(artifact_id) as f:
        state_dict = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)
    cfg = trial.user_attrs[schema.TRIAL_CONFIG]
    data = study.user_attrs.get(schema.STUDY_DATA, {})
    model_config = {**cfg["model"], "in_channels": data.get("in_channels", 3),
                    "num_classes": data.get("num_classes", 10), "image_size": data.get("image_size")}
    model = create_model(cfg["family"], **model_config)
    model.load_state_dict(state_dict)
    model.eval()
    metrics = {k: trial.user_attrs.get(a) for k, a in (
        ("val_accuracy", schema.TRIAL_VAL_ACCURACY), ("peak_memory_mb", schema.TRIAL_PEAK_MEMORY_MB),
        ("memory_method", schema.TRIAL_MEMORY_METHOD), ("param_count", schema.TRIAL_PARAM_COUNT),
        ("epochs_run", schema.TRIAL_EPOCHS_RUN), ("wall_time_s", schema.TRIAL_WALL_TIME_S))}
    if test_accuracy:
        metrics["test_accuracy"] = _test_accuracy(model, study.user_attrs)
    return {
        "format": FORMAT,
        "family": cfg["family"],
        "model_config": model_config,
        "state_dict": state_dict,
        "train": cfg["train"],
        "spec_hash": study.user_attrs.get(schema.STUDY_SPEC_HASH),
        "study": study_name,
        "trial_number": trial.number,
        "metrics": metrics,
        "data": {k: data.get(k) for k in ("dataset", "classes", "mean", "std", "image_size",
                                           "in_channels")},
        "probe_logits": trial.user_attrs.get(schema.TRIAL_PROBE_LOGITS),
        "versions": _versions(),
    }


def checkpoint_bytes(ckpt: dict[str, Any]) -> bytes:
    """Serialise a checkpoint dict (what the app offers as a download)."""
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return buf.getvalue()


def export_checkpoint(storage_url: str, study_name: str, *, trial_number: int | None = None,
                      out: str | os.PathLike, test_accuracy: bool = True) -> dict[str, Any]:
    """Write a trial's checkpoint to ``out`` atomically; returns the checkpoint without weights."""
    ckpt = build_checkpoint(storage_url, study_name, trial_number=trial_number,
                            test_accuracy=test_accuracy)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(checkpoint_bytes(ckpt))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {k: v for k, v in ckpt.items() if k != "state_dict"}


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint; returns ``(model in eval mode, metadata)``."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WaveSearchError(f"no checkpoint at {path}; check the path") from None
    except Exception as e:
        raise WaveSearchError(f"{path} is not a WaveSearch checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise WaveSearchError(f"{path} is not a WaveSearch checkpoint (format "
                              f"{ckpt.get('format') if isinstance(ckpt, dict) else None!r}, "
                              f"expected {FORMAT!r})")
    from engine.models import create_model

    model = create_model(ckpt["family"], **ckpt["model_config"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    _verify_probe(model, ckpt, path)
    return model, {k: v for k, v in ckpt.items() if k != "state_dict"}


def _verify_probe(model: nn.Module, ckpt: dict[str, Any], path: Any) -> None:
    """Check the rebuilt model reproduces the logits the trained model gave on the probe."""
    expected = ckpt.get("probe_logits")
    if not expected:
        return
    cfg = ckpt["model_config"]
    with torch.no_grad():
        got = model(probe_input(cfg["in_channels"], cfg["image_size"]))
    diff = (got - torch.tensor(expected, dtype=got.dtype)).abs().max().item()
    if diff > PROBE_ATOL:
        raise WaveSearchError(
            f"{path}: the rebuilt {ckpt['family']} model does not reproduce the trained model's "
            f"logits (max difference {diff:.2e} > {PROBE_ATOL:g}); the checkpoint is corrupt or "
            f"was written by an incompatible WaveSearch version ({ckpt.get('versions')})")


def load_model(path: str | os.PathLike) -> nn.Module:
    """Rebuild the model saved in an exported checkpoint (eval mode, on CPU)."""
    return load_checkpoint(path)[0]

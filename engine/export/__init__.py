"""Checkpoints that rebuild themselves, ONNX models, and retraining the winner.

- :mod:`~engine.export.checkpoint`: the file format (safetensors + JSON; the legacy torch
  form is still read), :func:`load_model`, the probe that proves a model rebuilt exactly;
- :mod:`~engine.export.trials`: a study's trial as a checkpoint (:func:`export_checkpoint`);
- :mod:`~engine.export.onnx_export`: the same model as a verified ONNX graph;
- :mod:`~engine.export.retrain`: the chosen architecture trained again on train + validation;
- :mod:`~engine.export.files`: output paths refused early, files written atomically.
"""

from engine.export.checkpoint import (
    FORMAT,
    LEGACY_FORMAT,
    Checkpoint,
    checkpoint_bytes,
    load_checkpoint,
    load_model,
    parse_checkpoint,
    probe_input,
    read_checkpoint,
    rebuild,
)
from engine.export.onnx_export import onnx_bytes
from engine.export.retrain import RetrainProgress, RetrainResult, retrain
from engine.export.trials import build_checkpoint, choose_trial, export_checkpoint

__all__ = [
    "FORMAT",
    "LEGACY_FORMAT",
    "Checkpoint",
    "RetrainProgress",
    "RetrainResult",
    "build_checkpoint",
    "checkpoint_bytes",
    "choose_trial",
    "export_checkpoint",
    "load_checkpoint",
    "load_model",
    "onnx_bytes",
    "parse_checkpoint",
    "probe_input",
    "read_checkpoint",
    "rebuild",
    "retrain",
]

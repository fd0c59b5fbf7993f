"""ONNX export of a checkpoint: one graph with a dynamic batch axis, verified before it is kept.

The graph takes ``images`` (B, C, H, W) float32, normalised with the checkpoint's
``data.mean``/``data.std``, H = W = ``model_config.image_size`` (fixed: the models branch in
Python on the map size, and the tracer records the branch taken for that size), and returns
``logits`` (B, num_classes). The checkpoint's JSON document travels in the model's metadata
under ``wavesearch``.

Exporter: the TorchScript-based one (``dynamo=False``, opset 17). The torch.export-based
exporter needs onnxscript, which WaveSearch does not install. Tracing cannot see writes made
through ``out=`` into views, nor keep some shapes static; the models take a traceable path
while traced (see engine/models/wavelets.py and NystromAttention), which is what makes the
exported logits match.

Verification: ``onnx.checker`` (full check, with shape inference), then onnxruntime runs the
probe input with a batch size other than the traced one; its logits must match the
checkpoint's probe logits within PROBE_ATOL, or nothing is written.
"""

from __future__ import annotations

import io
import json
import warnings

import numpy as np
import torch

from engine.errors import CheckpointError
from engine.export.checkpoint import META_KEY, PROBE_ATOL, Checkpoint, probe_input, rebuild

__all__ = ["INPUT_NAME", "ONNX_OPSET", "OUTPUT_NAME", "onnx_bytes", "run_onnx"]

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
ONNX_OPSET = 17


def _export(model: torch.nn.Module, example: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # TracerWarning: the Python branches it flags depend on H and W only, which the graph
        # fixes; DeprecationWarning: the legacy exporter is the one that needs no onnxscript.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # Strided slices (the Haar butterfly) stay Slice ops instead of being folded: harmless.
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=ONNX_OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    return buf.getvalue()


def run_onnx(data: bytes, images: np.ndarray) -> np.ndarray:
    """Logits of an exported model under onnxruntime (CPU). images: (B, C, H, W) float32."""
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: images.astype(np.float32)})[0]


def onnx_bytes(ckpt: Checkpoint, *, where: str = "checkpoint") -> bytes:
    """The verified ONNX model of a checkpoint.

    Args:
        ckpt: A checkpoint with probe logits (the model is rebuilt and verified first).
        where: How to name the checkpoint in errors.

    Raises:
        CheckpointError: the model does not rebuild, the exporter or the checker refuses the
            graph, or onnxruntime's logits differ from the probe logits.
    """
    import onnx

    model = rebuild(ckpt, where=where, verify=True)
    cfg = ckpt["model_config"]
    probe = probe_input(cfg["in_channels"], cfg["image_size"])  # (2, C, H, W)
    try:
        data = _export(model, probe)
        proto = onnx.load_from_string(data)
        proto.doc_string = f"WaveSearch {ckpt['family']}: images (B, C, H, W) -> logits"
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(dict(ckpt.meta))
        onnx.checker.check_model(proto, full_check=True)
        data = proto.SerializeToString()
    except Exception as e:  # exporter and checker errors have no common base class
        raise CheckpointError(f"{where}: the {ckpt['family']} model cannot be exported to ONNX "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); export "
                              "the safetensors checkpoint instead") from None
    # Three samples, where the graph was traced with two: proves the batch axis is dynamic.
    images = torch.cat((probe, probe[:1])).numpy()
    want = np.asarray(ckpt["probe_logits"], dtype=np.float32)
    want = np.concatenate((want, want[:1]))
    got = run_onnx(data, images)
    diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
    if not diff <= PROBE_ATOL:
        raise CheckpointError(f"{where}: the ONNX model's logits differ from the trained "
                              f"model's (max difference {diff:.2e} > {PROBE_ATOL:g}); export "
                              "the safetensors checkpoint instead")
    return data

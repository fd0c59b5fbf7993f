"""The checkpoint file: weights as safetensors, plus the JSON document that rebuilds them.

Format ``wavesearch.checkpoint/2`` is one ``.safetensors`` file. Its tensors are the model's
state dict; its metadata holds, under the key ``wavesearch``, one JSON document:

==================  ==========================================================================
``format``          ``wavesearch.checkpoint/2``
``family``          the registered model family
``model_config``    the family's keyword arguments, data fields included (in_channels, ...)
``train``           the TrainConfig the weights were trained with (as JSON)
``spec_hash``       the hash of the spec that began the study
``study``           the study the architecture comes from, and ``trial_number``, its trial
``provenance``      ``search`` (the trial's own weights) or ``retrain`` (trained again)
``retrain``         how a retrained model was trained (epochs, switch epoch, images), or null
``metrics``         val/test accuracy, parameter count, peak memory, ...
``data``            dataset, classes, mean, std (the normalisation the model expects), size
``probe_logits``    the trained model's logits on :func:`probe_input`, (2, num_classes)
``versions``        Python and library versions that wrote the file
``created_at``      Unix time the file was written
==================  ==========================================================================

Reading never unpickles: safetensors holds only tensors, and the legacy format 1 (a
``torch.save`` dict) is read with ``weights_only=True``. The format is recognised by the
file's first bytes, never by its name. A loaded model must reproduce ``probe_logits``, which
proves that the file rebuilds exactly the model that was trained.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from engine.errors import CheckpointError, WaveSearchError
from engine.models.probe import probe_input, probe_logits

__all__ = [
    "FORMAT",
    "LEGACY_FORMAT",
    "PROBE_ATOL",
    "Checkpoint",
    "checkpoint_bytes",
    "load_checkpoint",
    "load_model",
    "new_meta",
    "parse_checkpoint",
    "probe_input",
    "probe_logits",
    "read_checkpoint",
    "rebuild",
    "versions",
]

FORMAT = "wavesearch.checkpoint/2"
LEGACY_FORMAT = "wavesearch.checkpoint/1"  # torch.save dict; read, never written
META_KEY = "wavesearch"  # the safetensors metadata key of the JSON document
PROBE_ATOL = 1e-4  # float32 rounding across processes and thread counts stays far below this
_REQUIRED = {"family": str, "model_config": dict}
# The probe input is (2, C, S, S) from the model_config: bounded by what a data set can give
# (DataConfig resizes to at most 1024 pixels), so an edited config cannot ask for gigabytes.
MAX_PROBE_SIZE = 1024
MAX_PROBE_CHANNELS = 16
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default container
_PICKLE_MAGIC = 0x80  # torch.save(..., _use_new_zipfile_serialization=False)


def versions() -> dict[str, str]:
    """Python and library versions, recorded in every checkpoint."""
    out = {"python": platform.python_version()}
    for dist in ("torch", "wavesearch", "optuna", "safetensors", "pytorch_wavelets", "ray"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


@dataclass(frozen=True, eq=False)
class Checkpoint(Mapping[str, Any]):
    """A model's weights and the JSON document that rebuilds and describes it.

    It reads like its document (``ckpt["metrics"]``, ``ckpt["family"]``; see the module
    docstring for the keys); ``state_dict`` holds the tensors (on the CPU).
    """

    meta: dict[str, Any]
    state_dict: dict[str, torch.Tensor]

    def __getitem__(self, key: str) -> Any:
        return self.meta[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.meta)

    def __len__(self) -> int:
        return len(self.meta)


def checkpoint_bytes(ckpt: Checkpoint) -> bytes:
    """The ``.safetensors`` bytes of a checkpoint (what the app offers as a download)."""
    from safetensors.torch import save

    # clone(): safetensors refuses tensors that share memory (tied weights, views).
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in ckpt.state_dict.items()}
    doc = {**ckpt.meta, "format": FORMAT}
    return save(tensors, metadata={META_KEY: json.dumps(doc), "format": FORMAT})


# -- reading --------------------------------------------------------------------------------
def _read_safetensors(data: bytes, where: str) -> Checkpoint:
    from safetensors import SafetensorError
    from safetensors.torch import load

    size = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8:8 + size])
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise CheckpointError(f"{where} is damaged: its safetensors header is not JSON; "
                              "export the checkpoint again") from None
    table = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(header, dict) or not isinstance(table or {}, dict):
        bad = type(header if not isinstance(header, dict) else table).__name__
        raise CheckpointError(f"{where} is damaged: its safetensors header must map names to "
                              f"tensors and __metadata__ to strings (got a {bad}); export the "
                              "checkpoint again")
    doc = (table or {}).get(META_KEY)
    if doc is None:
        raise CheckpointError(f"{where} is a safetensors file without WaveSearch metadata (bare "
                              "weights cannot rebuild a model); write it with engine export")
    try:
        if not isinstance(doc, str):
            raise ValueError(f"metadata {META_KEY!r} is a {type(doc).__name__}, not a string")
        meta = json.loads(doc)
        tensors = load(data)
    except (ValueError, RecursionError, OverflowError, TypeError, RuntimeError,
            SafetensorError) as e:  # what a crafted header makes safetensors or torch raise
        raise CheckpointError(f"{where} is damaged ({type(e).__name__}: "
                              f"{(str(e).splitlines() or [''])[0][:160]}); export the checkpoint "
                              "again") from None
    return Checkpoint(meta if isinstance(meta, dict) else {}, tensors)


def _read_legacy(data: bytes, where: str) -> Checkpoint:
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses anything but tensors and plain data
        raise CheckpointError(f"{where} is not a WaveSearch checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:160]})") from None
    if not isinstance(obj, dict) or obj.get("format") != LEGACY_FORMAT:
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{where} is not a WaveSearch checkpoint (format {got!r}, "
                              f"expected {FORMAT!r} or {LEGACY_FORMAT!r})")
    state = obj.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{where} is damaged: it has no state_dict; export it again")
    return Checkpoint({k: v for k, v in obj.items() if k != "state_dict"}, state)


def parse_checkpoint(data: bytes, where: str = "checkpoint") -> Checkpoint:
    """Read checkpoint bytes of either format (told apart by their first bytes).

    Args:
        data: The file's bytes.
        where: How to name the source in errors (normally its path).

    Raises:
        CheckpointError: empty, not a checkpoint, damaged, or metadata missing a key.
    """
    if not data:
        raise CheckpointError(f"{where} is empty (0 bytes); export the checkpoint again")
    # safetensors first: its header length is little-endian, so byte 0 can be 0x80 too.
    if len(data) > 8 and data[8:9] == b"{" and 8 + int.from_bytes(data[:8], "little") <= len(data):
        ckpt = _read_safetensors(data, where)
    elif data[:4] == _ZIP_MAGIC or data[0] == _PICKLE_MAGIC:
        ckpt = _read_legacy(data, where)
    else:
        raise CheckpointError(f"{where} is not a WaveSearch checkpoint (neither safetensors nor "
                              "a torch checkpoint); write one with engine export")
    fmt = ckpt.meta.get("format")
    if fmt not in (FORMAT, LEGACY_FORMAT):
        raise CheckpointError(f"{where} is not a WaveSearch checkpoint (format {fmt!r}, "
                              f"expected {FORMAT!r})")
    for key, kind in _REQUIRED.items():
        if not isinstance(ckpt.meta.get(key), kind):
            raise CheckpointError(f"{where} is damaged: its metadata has no valid {key!r} "
                                  f"(got {_short(ckpt.meta.get(key))}); export the checkpoint "
                                  "again")
    bad = next((k for k, v in ckpt.state_dict.items()
                if not (isinstance(k, str) and isinstance(v, torch.Tensor))), None)
    if bad is not None:
        raise CheckpointError(f"{where} is damaged: its weights must map names to tensors (got "
                              f"{_short(bad)}: {type(ckpt.state_dict[bad]).__name__}); export "
                              "the checkpoint again")
    _check_probe_logits(ckpt.meta.get("probe_logits"), where)
    return ckpt


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (a crafted value must not flood a message)."""
    text = repr(value) if not isinstance(value, (dict, list)) or len(value) < 50 else \
        f"<{type(value).__name__} of {len(value)}>"
    return text if len(text) <= limit else text[:limit] + "..."


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_probe_logits(logits: Any, where: str) -> None:
    """Probe logits, when present, are a (2, classes) table of numbers: two rows of equal
    length (their width is checked against the model's classes before the probe runs)."""
    if logits is None or logits == []:
        return  # none recorded: load_model refuses it unless verify=False
    rows = logits if isinstance(logits, list) else None
    if not (rows and len(rows) == 2 and all(isinstance(r, list) and r and len(r) == len(rows[0])
                                            and all(_is_real(x) for x in r) for r in rows)):
        raise CheckpointError(f"{where} is damaged: probe_logits must be two equal rows of "
                              f"numbers, one logit per class (got {_short(logits)}); export the "
                              "checkpoint again")


def _few(keys: list[str]) -> str:
    shown = ", ".join(keys[:3])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > 3 else ''})"


def _check_fit(expected: Mapping[str, torch.Tensor], ckpt: Checkpoint, where: str) -> None:
    """Refuse (with the keys named) weights that do not fit the model whose state dict (on any
    device, the meta device included) is ``expected``."""
    state = ckpt.state_dict
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}" for k in expected
             if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = [f"{label} {_few(keys)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", extra), ("wrong shapes", wrong))
                if keys]
    if problems:
        raise CheckpointError(f"{where}: the weights do not fit its {ckpt['family']} "
                              f"model_config: {'; '.join(problems)}; the file was damaged or "
                              "edited, export it again")


def _build(ckpt: Checkpoint, where: str, device: str) -> nn.Module:
    """The model of ``ckpt``'s family and config, built on ``device``."""
    from engine.models import create_model

    try:
        with torch.device(device):
            return create_model(ckpt["family"], **ckpt["model_config"])
    except (WaveSearchError, TypeError, ValueError, RuntimeError, OverflowError,
            ZeroDivisionError, IndexError, KeyError) as e:  # a crafted config, said in one line
        raise CheckpointError(f"{where}: its model_config does not build a model "
                              f"({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}); "
                              "the file was edited or written by another version, export it "
                              "again") from None


def _verify_probe(model: nn.Module, ckpt: Checkpoint, where: str) -> None:
    """Check that the rebuilt model reproduces the trained model's logits on the probe."""
    expected = ckpt.get("probe_logits")
    if not expected:
        raise CheckpointError(f"{where} carries no probe logits, so nothing proves it rebuilds "
                              "the trained model; export it again, or load it unchecked with "
                              "load_model(path, verify=False)")
    _check_probe_logits(expected, where)
    cfg = ckpt["model_config"]
    channels, size = cfg.get("in_channels"), cfg.get("image_size")
    if not (isinstance(channels, int) and isinstance(size, int)):
        raise CheckpointError(f"{where}: its model_config lacks in_channels/image_size (got "
                              f"{_short(channels)}/{_short(size)}), which the probe needs; "
                              "export it again")
    if not (1 <= size <= MAX_PROBE_SIZE and 1 <= channels <= MAX_PROBE_CHANNELS):
        raise CheckpointError(f"{where}: its model_config asks for a {channels}x{size}x{size} "
                              f"probe, beyond any data set (at most {MAX_PROBE_CHANNELS} "
                              f"channels, {MAX_PROBE_SIZE} pixels); the file was edited, export "
                              "it again")
    classes = cfg.get("num_classes")
    if len(expected[0]) != classes:
        raise CheckpointError(f"{where}: its probe_logits hold {len(expected[0])} logits per "
                              f"row but its model_config has num_classes {_short(classes)}; the "
                              "file was edited, export it again")
    try:
        with torch.no_grad():
            got = model(probe_input(channels, size))
    except (RuntimeError, ValueError, IndexError) as e:  # e.g. an image_size edited too small
        raise CheckpointError(f"{where}: its model does not run on its own {channels}x{size}x"
                              f"{size} probe ({type(e).__name__}: "
                              f"{(str(e).splitlines() or [''])[0][:160]}); the file was edited, "
                              "export it again") from None
    want = torch.tensor(expected, dtype=got.dtype)
    diff = ((got - want).abs().max().item() if want.shape == got.shape else math.inf)
    if not diff <= PROBE_ATOL:  # NaN logits fail too
        raise CheckpointError(
            f"{where}: the rebuilt {ckpt['family']} model does not reproduce the trained model's "
            f"logits (max difference {diff:.2e} > {PROBE_ATOL:g}); the weights were changed "
            f"or the file was written by an incompatible version "
            f"({_short(ckpt.get('versions'), 200)}); "
            "export it again")


def rebuild(ckpt: Checkpoint, *, where: str = "checkpoint", verify: bool = True) -> nn.Module:
    """The model of a checkpoint, in eval mode on the CPU.

    Args:
        ckpt: A parsed checkpoint.
        where: How to name the checkpoint in errors.
        verify: Check the probe logits (refuse a checkpoint without them).

    Raises:
        CheckpointError: the config does not build a model, the weights do not fit it, or the
            rebuilt model does not reproduce the probe logits.
    """
    # Shapes first, on the meta device (no memory): a config edited to a huge model is
    # refused against the stored tensors before any of it is allocated.
    _check_fit(_build(ckpt, where, "meta").state_dict(), ckpt, where)
    model = _build(ckpt, where, "cpu")
    model.load_state_dict(ckpt.state_dict)
    model.eval()
    if verify:
        _verify_probe(model, ckpt, where)
    return model


def _read_file(path: str | os.PathLike) -> bytes:
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {p}; check the path") from None
    except IsADirectoryError:
        raise CheckpointError(f"{p} is a directory, not a checkpoint; name the file") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {p} ({e.strerror}); check its permissions") from None


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """A checkpoint file of either format, parsed but not rebuilt (see :func:`parse_checkpoint`)."""
    return parse_checkpoint(_read_file(path), str(path))


def load_checkpoint(path: str | os.PathLike, *,
                    verify: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint file of either format.

    Args:
        path: The file (any name: the format is read from its content).
        verify: Refuse a model that does not reproduce its recorded probe logits, and a
            checkpoint that has none. ``False`` loads such a file unchecked.

    Returns:
        The model (eval mode, CPU) and the checkpoint's JSON document.

    Raises:
        CheckpointError: see :func:`parse_checkpoint` and :func:`rebuild`.
    """
    ckpt = read_checkpoint(path)
    return rebuild(ckpt, where=str(path), verify=verify), dict(ckpt.meta)


def load_model(path: str | os.PathLike, *, verify: bool = True) -> nn.Module:
    """Rebuild the model saved in a checkpoint (eval mode, CPU); see :func:`load_checkpoint`."""
    return load_checkpoint(path, verify=verify)[0]


def new_meta(**fields: Any) -> dict[str, Any]:
    """A checkpoint document: ``fields`` plus the format, versions and creation time."""
    return {"format": FORMAT, **fields, "versions": versions(), "created_at": time.time()}

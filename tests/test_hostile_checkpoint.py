"""Crafted checkpoints: the cases a tester found, and a seeded fuzzer over mutations of a valid
checkpoint (its JSON document, its safetensors header, its bytes).

Each case either loads (an unchanged model) or raises one ``CheckpointError`` in one line,
quickly and without building a model larger than the file's own tensors.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time

import pytest
import torch

import engine
from engine.errors import CheckpointError
from engine.export.checkpoint import (
    FORMAT,
    META_KEY,
    Checkpoint,
    checkpoint_bytes,
    load_model,
    probe_logits,
)

CONFIG = {"final_dim": 16, "depth": 1, "level": 1, "in_channels": 3, "num_classes": 4,
          "image_size": 8}


@pytest.fixture(scope="module")
def valid() -> Checkpoint:
    torch.manual_seed(0)
    model = engine.create_model("wavemix", **CONFIG).eval()
    meta = {"format": FORMAT, "family": "wavemix", "model_config": dict(CONFIG),
            "probe_logits": probe_logits(model, 3, 8), "versions": {"torch": torch.__version__}}
    return Checkpoint(meta, {k: v.clone() for k, v in model.state_dict().items()})


def _with_meta(ckpt: Checkpoint, **changes) -> bytes:
    return checkpoint_bytes(Checkpoint({**ckpt.meta, **changes}, dict(ckpt.state_dict)))


def _with_header(ckpt: Checkpoint, edit) -> bytes:
    """The file with its safetensors header (JSON) changed by ``edit(header)``."""
    data = checkpoint_bytes(ckpt)
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    edit(header)
    text = json.dumps(header).encode()
    # Same length keeps the tensor offsets valid: pad with spaces (JSON allows them).
    text = text + b" " * max(0, size - len(text))
    return len(text).to_bytes(8, "little") + text + data[8 + size:]


def _refused(tmp_path, data: bytes, words: str) -> str:
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert words in message and "\n" not in message and len(message) < 800, message
    return message


def test_the_valid_checkpoint_loads(valid, tmp_path):
    path = tmp_path / "ok.safetensors"
    path.write_bytes(checkpoint_bytes(valid))
    assert isinstance(load_model(path), torch.nn.Module)


@pytest.mark.parametrize("logits", ["not logits", [[1.0, 2.0], [3.0]], [[1, 2, 3, 4]],
                                    [["a", 1, 2, 3], [1, 2, 3, 4]], [[True] * 4] * 2, {"a": 1},
                                    [[1, 2, 3], [4, 5, 6]], 7])
def test_probe_logits_of_the_wrong_shape_or_type(valid, tmp_path, logits):
    words = "num_classes" if logits == [[1, 2, 3], [4, 5, 6]] else "probe_logits must be"
    _refused(tmp_path, _with_meta(valid, probe_logits=logits), words)


@pytest.mark.parametrize("table", ["a string", ["a", "list"], 7])
def test_metadata_that_is_not_a_mapping(valid, tmp_path, table):
    data = _with_header(valid, lambda h: h.__setitem__("__metadata__", table))
    _refused(tmp_path, data, "__metadata__")


def test_a_metadata_document_nested_too_deep(valid, tmp_path):
    data = _with_header(valid, lambda h: h["__metadata__"].__setitem__(META_KEY, "[" * 50000))
    _refused(tmp_path, data, "is damaged")


@pytest.mark.parametrize("changes", [{"final_dim": 2048, "depth": 32}, {"depth": 64},
                                     {"num_classes": 10**7}, {"final_dim": 4096, "mult": 8}])
def test_a_config_raised_to_a_huge_model_is_refused_before_building_it(valid, tmp_path, changes):
    t0 = time.perf_counter()
    cfg = {**valid["model_config"], **changes}
    _refused(tmp_path, _with_meta(valid, model_config=cfg), "the weights do not fit")
    assert time.perf_counter() - t0 < 10


@pytest.mark.parametrize("changes, words", [({"image_size": 10**6}, "probe"),
                                            ({"image_size": 1, "level": 3}, "does not build a model"),
                                            ({"in_channels": 10**6}, "do not fit"),
                                            ({"image_size": "8"}, "image_size")])
def test_a_probe_larger_than_any_data_set_is_refused(valid, tmp_path, changes, words):
    cfg = {**valid["model_config"], **changes}
    _refused(tmp_path, _with_meta(valid, model_config=cfg), words)


# -- the fuzzer ----------------------------------------------------------------------------
_VALUES = [None, True, -1, 0, 2**31, 2**63, -(2**63), 1e308, math.inf, math.nan, "", "x" * 3000,
           [], {}, [[]], [[1.0]], [1, [2, [3]]], {"a": {"b": 1}}, "wavemix", "cxv", "resnet18",
           16, 2048, 64, 0.5, [[0.0] * 4] * 2, [[0.0] * 4] * 3]
_META_KEYS = ["format", "family", "model_config", "probe_logits", "versions", "data", "train"]
_CONFIG_KEYS = [*CONFIG, "mult", "dropout", "ff_channel", "stride", "patch_size", "stem", "zz"]


def _mutate_meta(rng: random.Random, meta: dict) -> dict:
    meta = copy.deepcopy(meta)
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.6:
            cfg = meta.get("model_config")
            if not isinstance(cfg, dict):
                cfg = meta["model_config"] = {}
            key = rng.choice(_CONFIG_KEYS)
            if rng.random() < 0.15:
                cfg.pop(key, None)
            else:
                cfg[key] = copy.deepcopy(rng.choice(_VALUES))
        else:
            key = rng.choice(_META_KEYS)
            if rng.random() < 0.2:
                meta.pop(key, None)
            else:
                meta[key] = copy.deepcopy(rng.choice(_VALUES))
    return meta


def _mutate_header(rng: random.Random, header: dict) -> None:
    name = rng.choice([k for k in header if k != "__metadata__"])
    op = rng.random()
    if op < 0.3:
        header[name]["shape"] = rng.choice([[], [2**40], [-1], [0], [1, 2, 3], "x", [2**62, 2**62]])
    elif op < 0.5:
        header[name]["dtype"] = rng.choice(["F8", "I64", "BOOL", "nope", 7, "F64"])
    elif op < 0.7:
        header[name]["data_offsets"] = rng.choice([[0, 2**40], [5, 1], [0], "x", [-1, 3]])
    elif op < 0.85:
        header["__metadata__"] = rng.choice([None, "s", 1, [1], {"wavesearch": 1},
                                             {"wavesearch": "{"}])
    else:
        header[name] = rng.choice([None, 1, "x", [], {}])


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    op = rng.random()
    if op < 0.4:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif op < 0.7:
        data = data[:rng.randrange(len(data))]
    else:
        data[0:8] = rng.randrange(2**64).to_bytes(8, "little")
    return bytes(data)


def test_checkpoint_fuzz(valid, tmp_path):
    """240 seeded mutations of a valid checkpoint: each loads or raises one CheckpointError
    in one line, within seconds."""
    rng = random.Random(22)
    base = checkpoint_bytes(valid)
    path = tmp_path / "fuzz.safetensors"
    refused = 0
    for n in range(240):
        kind = n % 3
        if kind == 0:
            data = checkpoint_bytes(Checkpoint(_mutate_meta(rng, valid.meta), dict(valid.state_dict)))
        elif kind == 1:
            data = _with_header(valid, lambda h: _mutate_header(rng, h))
        else:
            data = _mutate_bytes(rng, base)
        path.write_bytes(data)
        t0 = time.perf_counter()
        try:
            model = load_model(path)
            assert isinstance(model, torch.nn.Module)
        except CheckpointError as e:
            refused += 1
            message = str(e)
            assert "\n" not in message and len(message) < 800, (n, message[:300])
        assert time.perf_counter() - t0 < 10, n
    assert refused > 150

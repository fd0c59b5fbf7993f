"""Checkpoints, ONNX models and retraining, on a real study (Ray Tune + Optuna SQLite).

One small search is shared by the module: trial 0 trains and switches DualOpT to SGD, trial 1
is over the parameter cap (screened out, never trained), trial 2 trains with AdamW only. The
ONNX tests need no study: they export every registered model family with random weights.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from optuna.trial import TrialState

import engine
from engine.errors import CheckpointError, ConfigError, StorageError
from engine.export import (
    FORMAT,
    LEGACY_FORMAT,
    Checkpoint,
    build_checkpoint,
    checkpoint_bytes,
    export_checkpoint,
    load_checkpoint,
    load_model,
    onnx_bytes,
    probe_input,
    read_checkpoint,
    rebuild,
    retrain,
)
from engine.export.checkpoint import probe_logits
from engine.export.onnx_export import INPUT_NAME, OUTPUT_NAME, run_onnx
from engine.export.retrain import retrain_config, retrain_data
from engine.export.trials import measure_test_accuracy
from engine.train import TrainConfig
from storage import best_accuracy_trial, load_study, schema
from tests.conftest import engine_env, tiny_spec_dict

pytestmark = pytest.mark.slow

STUDY = "export"
MAX_PARAMS = 20_000  # trial 1 (final_dim 32, depth 2: 47,002 parameters) is over it


@pytest.fixture(scope="module")
def study_url(ray_local, tmp_path_factory) -> str:
    """A real 3-trial study: 0 trained (switches at epoch 2), 1 never trained (over the
    parameter cap), 2 trained with AdamW only (switch_epoch 2 of 2 epochs)."""
    from engine.data import load_data
    from engine.search import prepare_study, run_search
    from engine.spec import SearchSpec

    url = f"sqlite:///{tmp_path_factory.mktemp('export') / 'study.db'}"
    raw = tiny_spec_dict(
        STUDY,
        data={"train_size": 200, "val_size": 60},
        model={"wavemix": {"final_dim": {"type": "categorical", "choices": [8, 16, 32]},
                           "depth": {"type": "int", "low": 1, "high": 2}, "level": 1,
                           "dropout": 0.0}},
        train={"epochs": 2, "switch_epoch": {"type": "int", "low": 0, "high": 2}},
        constraints={"gpu_ram_mb": 512, "max_params": MAX_PARAMS},
        search={"sampler": "random", "n_trials": 2, "max_concurrent": 2, "seed": 0})
    spec = SearchSpec.model_validate(raw)
    study = prepare_study(spec, url, load_data(spec.data))
    for params in ({"wavemix.final_dim": 16, "wavemix.depth": 1, "train.switch_epoch": 1},
                   {"wavemix.final_dim": 32, "wavemix.depth": 2, "train.switch_epoch": 1},
                   {"wavemix.final_dim": 8, "wavemix.depth": 1, "train.switch_epoch": 2}):
        study.enqueue_trial(params)
    run_search(spec, storage_url=url, progress=lambda line: None)
    trials = load_study(url, STUDY).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert [t.user_attrs[schema.TRIAL_TRAINED] for t in trials] == [True, False, True]
    return url


def _engine(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=cwd, env=engine_env(),
                          capture_output=True, text=True, timeout=300)


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


# -- the safetensors checkpoint -------------------------------------------------------------
def test_export_writes_safetensors_that_rebuild_the_trained_model(study_url, tmp_path):
    from safetensors import safe_open

    study = load_study(study_url, STUDY)
    best = best_accuracy_trial(study)
    out = tmp_path / "best.safetensors"
    meta = export_checkpoint(study_url, STUDY, out=out)
    assert meta["trial_number"] == best.number and meta["provenance"] == "search"
    assert meta["spec_hash"] == study.user_attrs[schema.STUDY_SPEC_HASH]
    assert meta["metrics"]["val_accuracy"] == best.values[0]
    assert meta["model_config"] == {**best.user_attrs[schema.TRIAL_CONFIG]["model"],
                                    "in_channels": 1, "num_classes": 10, "image_size": 8}
    # A plain safetensors file: no pickle, the JSON document in its metadata.
    assert not out.read_bytes().startswith(b"PK")
    with safe_open(str(out), "pt") as f:
        doc = json.loads(f.metadata()["wavesearch"])
        names = set(f.keys())
    assert doc["format"] == FORMAT and doc["family"] == "wavemix"
    assert {"torch", "safetensors", "python"} <= set(doc["versions"])
    model, loaded = load_checkpoint(out)
    assert names == set(model.state_dict()) and loaded["probe_logits"] == doc["probe_logits"]
    # Test accuracy: measured once, at export, on the split the search never saw.
    assert 0.1 < meta["metrics"]["test_accuracy"] == measure_test_accuracy(model, study)
    trained = torch.tensor(best.user_attrs[schema.TRIAL_PROBE_LOGITS])
    with torch.no_grad():
        torch.testing.assert_close(model(probe_input(1, 8)), trained, rtol=0, atol=1e-6)


def test_the_format_is_read_from_the_content_and_legacy_files_still_load(study_url, tmp_path):
    ckpt = build_checkpoint(study_url, STUDY, trial_number=2, test_accuracy=False)
    new = tmp_path / "new.pt"  # the new format under an old name
    new.write_bytes(checkpoint_bytes(ckpt))
    legacy = tmp_path / "old.safetensors"  # format 1 (torch.save) under a new name
    torch.save({**ckpt.meta, "format": LEGACY_FORMAT, "state_dict": ckpt.state_dict}, legacy)
    x = probe_input(1, 8)
    with torch.no_grad():
        a, b = load_model(new)(x), load_model(legacy)(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert read_checkpoint(legacy)["format"] == LEGACY_FORMAT


def _broken(ckpt: Checkpoint, case: str) -> bytes:
    meta = dict(ckpt.meta)
    state = dict(ckpt.state_dict)
    first = next(iter(state))
    weight = next(k for k in state if k.endswith("weight"))
    if case == "empty":
        return b""
    if case == "junk":
        return b"not a checkpoint at all"
    if case == "truncated":
        return checkpoint_bytes(ckpt)[:-100]
    if case == "bare safetensors":
        from safetensors.torch import save

        return save({k: v.contiguous() for k, v in state.items()})
    if case == "missing key":
        state.pop(first)
    elif case == "extra key":
        state["head.extra"] = torch.zeros(3)
    elif case == "wrong shape":
        state[weight] = torch.zeros(1)
    elif case == "unknown family":
        meta["family"] = "wavemax"
    elif case == "invalid config":
        meta["model_config"] = {**meta["model_config"], "final_dim": 10}
    elif case == "no family":
        meta.pop("family")
    elif case == "edited weights":
        state[weight] = state[weight] + 0.5
    elif case == "no probe":
        meta.pop("probe_logits")
    return checkpoint_bytes(Checkpoint(meta, state))


BROKEN = {
    "empty": "is empty (0 bytes)",
    "junk": "not a WaveSearch checkpoint",
    "truncated": "is damaged",
    "bare safetensors": "without WaveSearch metadata",
    "missing key": "missing keys 1 (",
    "extra key": "unexpected keys 1 (head.extra)",
    "wrong shape": "wrong shapes 1 (",
    "unknown family": "unknown model family 'wavemax'",
    "invalid config": "final_dim",
    "no family": "no valid 'family'",
    "edited weights": "does not reproduce the trained model's logits",
    "no probe": "carries no probe logits",
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_checkpoint_is_refused_in_one_line(study_url, tmp_path, case):
    ckpt = build_checkpoint(study_url, STUDY, trial_number=0, test_accuracy=False)
    path = tmp_path / "broken.safetensors"
    path.write_bytes(_broken(ckpt, case))
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert BROKEN[case] in message and str(path) in message and "\n" not in message
    assert info.value.exit_code == 2
    if case == "no probe":  # the caller may take the risk explicitly
        assert isinstance(load_model(path, verify=False), torch.nn.Module)


def test_a_trial_that_cannot_be_exported_names_the_feasible_ones(study_url, tmp_path):
    out = tmp_path / "x.safetensors"
    with pytest.raises(StorageError, match=r"trial 1 of study 'export' was never trained: it is "
                       r"infeasible \(47,002 parameters > max_params 20,000\); choose a "
                       r"feasible trial with --trial: 0, 2 \(default: \d"):
        export_checkpoint(study_url, STUDY, trial_number=1, out=out)
    with pytest.raises(StorageError, match=r"has no trial 99 \(it has 3 trials\).*: 0, 2"):
        export_checkpoint(study_url, STUDY, trial_number=99, out=out)
    with pytest.raises(StorageError, match="no study named 'nope'.*export"):
        export_checkpoint(study_url, "nope", out=out)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_outputs_are_refused_before_any_work(study_url, tmp_path):
    with pytest.raises(CheckpointError, match=r"cannot write /proc/x.pt: /proc does not accept"):
        export_checkpoint(study_url, STUDY, out="/proc/x.pt")
    with pytest.raises(CheckpointError, match=re.escape(f"output path {tmp_path} is a directory")):
        export_checkpoint(study_url, STUDY, out=tmp_path)
    with pytest.raises(CheckpointError, match="does not accept new files"):
        retrain(study_url, STUDY, out="/proc/x.safetensors")
    assert schema.STUDY_RETRAINS not in load_study(study_url, STUDY).user_attrs  # no training ran
    assert list(tmp_path.iterdir()) == []


# -- ONNX -----------------------------------------------------------------------------------
# One small configuration per family (and every code path the exporter treats specially:
# Haar and periodized wavelets, both WaveMix blocks, each CXV attention).
ONNX_CASES = {
    "wavemix-haar-cascade-l2": ("wavemix", dict(final_dim=16, depth=2, level=2)),
    "wavemix-db2-parallel": ("wavemix", dict(final_dim=16, depth=1, level=2, wavelet="db2",
                                             block="parallel", upsample="upsample")),
    "convmixer": ("convmixer", dict(dim=16, depth=2)),
    "resnet18": ("resnet18", dict(width=8)),
    "vit": ("vit", dict(dim=16, depth=1, patch_size=4)),
    **{f"cxv-{a}": ("cxv", dict(dim=16, depth=1, attention=a, landmarks=8,
                                nystrom_conv_kernel=3, kv_stride=2))
       for a in ("nystrom", "performer", "efficient", "linear_elu", "softmax", "wave")},
}


def test_every_family_has_an_onnx_case():
    assert {family for family, _ in ONNX_CASES.values()} == set(engine.list_families())


def _random_checkpoint(family: str, config: dict) -> Checkpoint:
    torch.manual_seed(0)
    config = {**config, "in_channels": 3, "num_classes": 10, "image_size": 16}
    model = engine.create_model(family, **config).eval()
    for m in model.modules():  # trained-looking statistics, so BatchNorm is not the identity
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    meta = {"format": FORMAT, "family": family, "model_config": config,
            "probe_logits": probe_logits(model, 3, 16)}
    return Checkpoint(meta, {k: v.clone() for k, v in model.state_dict().items()})


@pytest.mark.parametrize("case", sorted(ONNX_CASES))
def test_onnx_export_matches_torch(case):
    """The exported graph, run by onnxruntime on a batch size it was not traced with, gives
    the torch model's logits within 1e-4 (and onnx_bytes has run onnx.checker on it)."""
    import onnx

    ckpt = _random_checkpoint(*ONNX_CASES[case])
    data = onnx_bytes(ckpt)
    proto = onnx.load_from_string(data)
    assert [i.name for i in proto.graph.input] == [INPUT_NAME]
    assert [o.name for o in proto.graph.output] == [OUTPUT_NAME]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert json.loads({p.key: p.value for p in proto.metadata_props}["wavesearch"])["family"] \
        == ONNX_CASES[case][0]
    images = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = rebuild(ckpt)(images).numpy()
    got = run_onnx(data, images.numpy())
    assert got.shape == (5, 10)
    assert float(np.abs(got - want).max()) <= 1e-4


def test_onnx_export_starts_from_a_verified_model():
    ckpt = _random_checkpoint("convmixer", dict(dim=16, depth=1))
    bad = Checkpoint({**ckpt.meta, "probe_logits": (np.array(ckpt["probe_logits"]) + 1e-3)
                      .tolist()}, ckpt.state_dict)
    with pytest.raises(CheckpointError, match="does not reproduce"):
        onnx_bytes(bad)  # the probe is checked on the torch model before export


# jit.trace is how the exporter records a model (deprecated in torch, kept by the legacy
# exporter); its warnings flag branches on H and W, which a trace fixes on purpose.
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_traced_wavelets_equal_the_fast_path():
    """The traceable Haar path (taken while exporting) is the same transform as the fast one."""
    from engine.models.wavelets import DWT, haar_idwt

    x = torch.randn(2, 3, 8, 8)
    for dwt in (DWT(wavelet="haar"), DWT(wavelet="db2")):
        traced = torch.jit.trace(dwt, x, check_trace=False)
        torch.testing.assert_close(traced(x), dwt(x), rtol=0, atol=1e-6)
    y = DWT(wavelet="haar")(x)
    traced_inverse = torch.jit.trace(haar_idwt, y, check_trace=False)
    torch.testing.assert_close(traced_inverse(y), haar_idwt(y), rtol=0, atol=1e-6)


# -- retrain --------------------------------------------------------------------------------
def test_retrain_switch_rule():
    dual = TrainConfig(epochs=10, optimizer="dualopt", switch_epoch=4, switch_patience=3)
    # The trial switched at epoch 5 (4 AdamW epochs): kept at equal epochs, scaled otherwise.
    assert retrain_config(dual, switched_at=5).switch_epoch == 4
    assert retrain_config(dual, epochs=20, switched_at=5).switch_epoch == 8
    assert retrain_config(dual, epochs=5, switched_at=4).switch_epoch == 2  # 3 * 5/10 = 1.5 -> 2
    assert retrain_config(dual, epochs=3, switched_at=5).switch_patience is None
    # Never switched: AdamW throughout; SGD from the start stays SGD.
    assert retrain_config(dual, epochs=30).switch_epoch == 30
    assert retrain_config(dual, switched_at=1).switch_epoch == 0
    fixed = TrainConfig(epochs=4, optimizer="dualopt", switch_epoch=9)
    assert retrain_config(fixed, epochs=8).switch_epoch == 8
    adamw = TrainConfig(epochs=4, optimizer="adamw", switch_epoch=2)
    assert retrain_config(adamw, epochs=6) == adamw.model_copy(update={"epochs": 6})
    with pytest.raises(ConfigError, match="epochs = 0: train at least 1 epoch"):
        retrain_config(adamw, epochs=0)


def test_retrain_data_is_train_plus_validation_and_never_the_test_split():
    from engine.data import DataConfig, load_data

    spec_data = DataConfig(dataset="digits", train_size=200, val_size=60, val_fraction=0.25)
    full = load_data(DataConfig(dataset="digits", val_fraction=0.25))
    data = retrain_data(spec_data)
    assert len(data.train_y) == len(full.train_y) + len(full.val_y) == 1438  # caps lifted
    assert len(data.val_y) == 0 and len(data.test_y) == len(full.test_y) == 359
    assert len(retrain_data(spec_data, train_size=50).train_y) == 50
    seen = {x.tobytes() for x in data.train_x}
    assert not any(x.tobytes() in seen for x in data.test_x)


def test_training_without_validation_reports_nan_and_refuses_the_plateau_rule():
    from engine.data import DataConfig
    from engine.train import train_model

    data = retrain_data(DataConfig(dataset="digits"), train_size=64)
    model = engine.create_model("wavemix", final_dim=8, depth=1, in_channels=1, image_size=8)
    cfg = TrainConfig(epochs=1, batch_size=32, optimizer="adamw")
    result = train_model(model, data, cfg)
    assert math.isnan(result.val_accuracy) and result.epochs_run == 1
    plateau = TrainConfig(epochs=2, optimizer="dualopt", switch_patience=1)
    with pytest.raises(ConfigError, match="switch_patience = 1 needs a validation split"):
        train_model(model, data, plateau)


def test_retrain_trains_from_scratch_writes_a_verified_checkpoint_and_records_it(study_url,
                                                                                 tmp_path):
    steps = []
    out = tmp_path / "final" / "winner.safetensors"
    result = retrain(study_url, STUDY, epochs=2, train_size=120, out=out, progress=steps.append)
    study = load_study(study_url, STUDY)
    best = best_accuracy_trial(study)
    assert result.trial_number == best.number and result.path == out
    assert (result.epochs, result.train_images) == (2, 120)
    assert result.switch_epoch == best.user_attrs.get(schema.TRIAL_SWITCHED_AT, 3) - 1
    assert [s.epoch for s in steps] == [0, 1, 2] and "120 images" in steps[0].message
    assert math.isfinite(result.train_loss)
    model, meta = load_checkpoint(out)  # verifies the probe
    # The recorded test accuracy is the loaded model's, fed with the recorded normalisation.
    from engine.data import DataConfig, load_data
    from engine.train import DeviceData, evaluate

    test = load_data(DataConfig(dataset="digits"))
    fed = DeviceData(test.test_x, test.test_y, meta["data"]["mean"], meta["data"]["std"],
                     torch.device("cpu"))
    assert result.test_accuracy == pytest.approx(evaluate(model, fed), abs=1e-9)
    assert meta["provenance"] == "retrain" and meta["trial_number"] == best.number
    assert meta["retrain"]["train_images"] == 120 and meta["train"]["epochs"] == 2
    assert meta["train"]["switch_patience"] is None
    assert meta["metrics"]["test_accuracy"] == result.test_accuracy
    # Trained anew: not the trial's weights.
    searched = torch.tensor(best.user_attrs[schema.TRIAL_PROBE_LOGITS])
    assert not torch.allclose(torch.tensor(meta["probe_logits"]), searched, atol=1e-3)
    runs = study.user_attrs[schema.STUDY_RETRAINS]
    assert runs[-1]["path"] == str(out) and runs[-1]["trial_number"] == best.number
    assert runs[-1]["test_accuracy"] == result.test_accuracy and runs[-1]["epochs"] == 2
    assert runs[-1]["seconds"] > 0 and runs[-1]["finished_at"] > 0


def test_epochs_for_minutes_fits_whole_epochs_and_the_test_pass():
    from engine.export.retrain import epochs_for_minutes

    assert epochs_for_minutes(10, epoch_s=100) == 6
    assert epochs_for_minutes(10, epoch_s=100, test_s=30) == 5   # 570 s left: 5 epochs
    assert epochs_for_minutes(1, epoch_s=500) == 1               # never less than one
    assert epochs_for_minutes(600, epoch_s=0.01, max_epochs=10_000) == 10_000


def test_measure_pace_leaves_the_model_and_random_state_alone():
    from engine.data import DataConfig
    from engine.export.retrain import measure_pace

    data = retrain_data(DataConfig(dataset="digits"), train_size=300)
    model = engine.create_model("wavemix", final_dim=8, depth=1, in_channels=1, image_size=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    ips = measure_pace(model, data, TrainConfig(epochs=9, batch_size=32, switch_epoch=4), "cpu")
    assert ips > 0 and torch.equal(torch.rand(3), expected)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_retrain_by_minutes_sizes_the_run_before_it_starts(study_url, tmp_path):
    steps = []
    out = tmp_path / "m.safetensors"
    result = retrain(study_url, STUDY, minutes=0.05, train_size=200, out=out,
                     progress=steps.append)
    assert steps[0].message.startswith("measured ") and " in 0.05 min" in steps[0].message
    planned = int(steps[0].message.split(": ")[1].split(" epoch")[0].replace(",", ""))
    epochs = [s.epoch for s in steps[2:] if s.train_loss is not None]  # not in-epoch lines
    assert result.epochs == planned >= 1 and epochs == list(range(1, planned + 1))
    assert any(s.message.startswith("pace: ") for s in steps[2:])  # before epoch 1 ended
    assert load_checkpoint(out)[1]["train"]["epochs"] == planned
    with pytest.raises(ConfigError, match="both epochs = 2 and minutes = 5.0 given"):
        retrain(study_url, STUDY, epochs=2, minutes=5.0, out=tmp_path / "x.safetensors")
    with pytest.raises(ConfigError, match="minutes = 0.0: give a time budget above 0"):
        retrain(study_url, STUDY, minutes=0.0, out=tmp_path / "x.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_retrain_refuses_an_untrained_trial(study_url, tmp_path):
    with pytest.raises(StorageError, match="trial 1 .* was never trained.*: 0, 2"):
        retrain(study_url, STUDY, trial_number=1, out=tmp_path / "r.safetensors")
    assert list(tmp_path.iterdir()) == []


# -- the command line -----------------------------------------------------------------------
def test_cli_exports_onnx_and_retrains(study_url, tmp_path):
    onnx_path = tmp_path / "m.onnx"
    proc = _engine("export", "--study", STUDY, "--storage", study_url, "--trial", "2",
                   "--format", "onnx", "--out", str(onnx_path), "--no-test", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"wrote {onnx_path} (onnx, ")
    ckpt = build_checkpoint(study_url, STUDY, trial_number=2, test_accuracy=False)
    images = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        want = rebuild(ckpt)(images).numpy()
    assert float(np.abs(run_onnx(onnx_path.read_bytes(), images.numpy()) - want).max()) <= 1e-4

    out = tmp_path / "r.safetensors"
    proc = _engine("retrain", "--study", STUDY, "--storage", study_url, "--trial", "2",
                   "--epochs", "1", "--train-size", "64", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("retraining trial 2 of 'export' (wavemix) on cpu: 1 epoch on 64 ")
    assert lines[1].startswith("epoch 1/1 adamw: train loss ")
    assert lines[2].startswith(f"wrote {out}: trial 2 wavemix retrained for 1 epoch on 64 ")
    assert "\r" not in proc.stdout  # no terminal, no bar
    retrained = load_model(out)  # verifies

    # The retrained checkpoint converted to ONNX (the same entry point, in-process).
    from engine.cli import main

    converted = tmp_path / "r.onnx"
    assert main(["export", "--checkpoint", str(out), "--format", "onnx", "--out",
                 str(converted)]) == 0
    with torch.no_grad():
        want = retrained(images).numpy()
    assert float(np.abs(run_onnx(converted.read_bytes(), images.numpy()) - want).max()) <= 1e-4


def test_cli_errors_are_one_line_with_exit_code_2(study_url, tmp_path):
    common = ("--storage", study_url)
    infeasible = _engine("export", "--study", STUDY, *common, "--trial", "1", "--out",
                         str(tmp_path / "x.safetensors"), cwd=tmp_path)
    assert "was never trained" in _one_line_error(infeasible)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    convert = _engine("export", "--checkpoint", str(empty), "--format", "onnx", "--out",
                      str(tmp_path / "e.onnx"), cwd=tmp_path)
    assert f"{empty} is empty (0 bytes)" in _one_line_error(convert)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.safetensors"]

    # The same entry point in-process for the other cases (a process start costs seconds).
    from engine.cli import main

    x = str(tmp_path / "x.safetensors")
    cases = {
        ("export", "--study", STUDY, *common, "--out", "/proc/x.pt"): "cannot write /proc/x.pt",
        ("export", "--study", STUDY, *common, "--out", str(tmp_path)): "is a directory",
        ("export", "--study", "nope", *common, "--out", x): "no study named 'nope'",
        ("export", "--study", STUDY, *common, "--trial", "7", "--out", x): "has no trial 7",
        ("export", "--study", STUDY, *common, "--out", str(tmp_path / "m.onnx")):
            "add --format onnx",
        ("retrain", "--study", STUDY, *common, "--epochs", "0", "--out", x): "epochs = 0",
        ("retrain", "--study", STUDY, *common, "--trial", "1", "--out", x): "was never trained",
        ("retrain", "--study", STUDY, *common, "--out", "/proc/r.safetensors"):
            "does not accept new files",
    }
    for argv, expected in cases.items():
        err = _run_main(main, argv)
        assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.safetensors"]


def _run_main(main, argv) -> str:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(list(argv)) == 2, argv
    return err.getvalue()

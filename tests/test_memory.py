"""Contracts of engine.memory: the fake-tensor prediction equals the real tracked peak.

Every prediction starts a subprocess (importing torch takes 2-5 s on a loaded 2-core CPU),
so each test makes as few as it can, with tiny models.
"""

from __future__ import annotations

import io
import json
import resource

import pytest
import torch

from engine.errors import ConfigError, MemoryEstimateError
from engine.memory import (
    CudaCalibration,
    MemoryEstimate,
    MemoryPredictor,
    estimator,
    measure_training_peak_cpu,
    measure_training_peak_cuda,
    predict_training_peak,
)
from engine.models import FAMILIES, create_model, make_config

GIB = 2**30
DATA = dict(batch_size=4, in_channels=3, image_size=16, num_classes=10)

# Small settings for fields that families commonly have; each family keeps only the ones it
# declares, and falls back to its defaults if the shrunk config breaks one of its rules.
_SHRINK = {"final_dim": 16, "depth": 2, "dim": 32, "embed_dim": 32, "width": 16,
           "heads": 2, "num_heads": 2, "head_dim": 16, "mlp_dim": 64}


def small_config(family: str) -> dict:
    """A tiny valid configuration of ``family`` for a 16x16, 3-channel input."""
    fields = FAMILIES.get(family).config_cls.model_fields
    config = {k: v for k, v in _SHRINK.items() if k in fields}
    try:
        make_config(family, **config, image_size=DATA["image_size"])
    except ConfigError:
        return {}
    return config


@pytest.mark.parametrize("family", FAMILIES.names())
def test_prediction_matches_real_tracked_peak(family):
    config = small_config(family)
    predicted = predict_training_peak(family, config, **DATA)
    measured = measure_training_peak_cpu(family, config, **DATA)
    assert predicted.method == "predicted" and measured.method == "measured"
    assert abs(predicted.peak_bytes - measured.peak_bytes) <= 0.05 * measured.peak_bytes
    # The breakdown partitions the peak, and a training step holds all of these.
    assert sum(predicted.breakdown.values()) == predicted.peak_bytes
    for key in ("parameters", "optimizer_state", "activations", "batch"):
        assert predicted.breakdown[key] > 0, key
    assert predicted.peak_mb == predicted.peak_bytes / 2**20


def test_dualopt_is_the_larger_of_adamw_and_sgd():
    config = small_config("wavemix")
    peaks = {opt: measure_training_peak_cpu("wavemix", config, optimizer=opt, **DATA).peak_bytes
             for opt in ("adamw", "sgd", "dualopt")}
    assert peaks["dualopt"] == max(peaks["adamw"], peaks["sgd"])
    # AdamW keeps two moments per parameter, SGD one momentum buffer.
    assert peaks["adamw"] > peaks["sgd"]


def test_amp_prediction_matches_and_saves_activation_memory():
    config = small_config("wavemix")
    predicted = predict_training_peak("wavemix", config, amp="bf16", **DATA)
    measured = measure_training_peak_cpu("wavemix", config, amp="bf16", **DATA)
    full = measure_training_peak_cpu("wavemix", config, amp="none", **DATA)
    assert abs(predicted.peak_bytes - measured.peak_bytes) <= 0.05 * measured.peak_bytes
    assert measured.breakdown["activations"] < full.breakdown["activations"]


def test_huge_configuration_is_predicted_without_allocating():
    # final_dim 2048 at 64x64 and batch 256: each block output alone is 8 GiB of float32.
    estimate = predict_training_peak("wavemix", dict(final_dim=2048, depth=8), batch_size=256,
                                     in_channels=3, image_size=64, num_classes=10,
                                     timeout_s=300)
    assert estimate.peak_bytes > 100 * GIB
    # ru_maxrss of waited-for children (KiB on Linux): the estimator stayed small. It is an
    # upper bound: Linux charges a child the parent's RSS at fork time until it execs.
    child_rss_bytes = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    assert child_rss_bytes < 3 * GIB


@pytest.mark.parametrize("config, key", [({"final_dim": 30}, "final_dim"),
                                         ({"fnal_dim": 64}, "fnal_dim")])
def test_bad_model_config_raises_config_error_naming_the_key(config, key):
    with pytest.raises(ConfigError, match=key):
        predict_training_peak("wavemix", config, **DATA)


@pytest.mark.parametrize("kwargs, key", [({"optimizer": "adam"}, "optimizer"),
                                         ({"amp": "fp8"}, "amp"),
                                         ({"batch_size": 0}, "batch_size")])
def test_bad_step_arguments_fail_before_any_subprocess(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        predict_training_peak("wavemix", {}, **{**DATA, **kwargs})


def test_data_field_in_model_config_must_agree():
    with pytest.raises(ConfigError, match="in_channels"):
        predict_training_peak("wavemix", {"in_channels": 1}, **DATA)


def _request(**changes) -> dict:
    model_config = {**small_config("wavemix"), "in_channels": 3, "image_size": 16,
                    "num_classes": 10}
    return {"family": "wavemix", "model_config": model_config, "batch_size": 4,
            "optimizer": "adamw", "amp": None, "foreach": None, **changes}


@pytest.mark.parametrize("request_, error, match", [
    # A config error met inside the estimator comes back as a ConfigError with its message.
    (_request(model_config={"final_dim": 30, "in_channels": 3, "image_size": 16,
                            "num_classes": 10}), ConfigError, "final_dim"),
    # Any other failure: its type and message, then the estimator's stderr.
    ({k: v for k, v in _request().items() if k != "batch_size"}, MemoryEstimateError,
     "(?s)TypeError: .*batch_size.*estimator stderr"),
])
def test_estimator_failures_are_translated(request_, error, match):
    with MemoryPredictor(timeout_s=120) as predictor, pytest.raises(error, match=match):
        predictor.ask(request_)


def test_estimator_answers_each_request_line_with_one_tagged_line():
    requests = io.StringIO(json.dumps(_request()) + "\n" + "not json\n")
    answers = io.StringIO()
    assert estimator.serve(requests, answers) == 0
    lines = [ln for ln in answers.getvalue().splitlines() if ln.startswith(estimator.RESULT_TAG)]
    assert len(lines) == 2
    answer = json.loads(lines[0][len(estimator.RESULT_TAG):])
    assert answer["peak_bytes"] == sum(answer["breakdown"].values()) > 0
    # A bad line is answered with its error, and serving goes on.
    assert json.loads(lines[1][len(estimator.RESULT_TAG):])["error"]["type"] == "JSONDecodeError"


def test_unknown_family_is_a_config_error():
    with pytest.raises(ConfigError, match="nosuchfamily"):
        predict_training_peak("nosuchfamily", {}, **DATA)


def test_timeout_raises_a_clear_error():
    # Starting Python and importing torch alone takes longer than this.
    with pytest.raises(MemoryEstimateError, match="timed out after 0.5 s"):
        predict_training_peak("wavemix", {}, timeout_s=0.5, **DATA)


def test_cuda_calibration_is_applied_and_keeps_the_breakdown_a_partition():
    config = small_config("wavemix")
    calibration = CudaCalibration(context_mb=500, scale=1.25)
    estimate = predict_training_peak("wavemix", config, calibration=calibration, **DATA)
    tracked = estimate.peak_bytes - estimate.breakdown["cuda_overhead"]
    assert estimate.peak_bytes == calibration.apply(tracked)
    assert sum(estimate.breakdown.values()) == estimate.peak_bytes


def test_calibration_fit_recovers_a_line():
    truth = CudaCalibration(context_mb=420.0, scale=1.1)
    predicted = [10 * 2**20, 200 * 2**20, 3 * GIB]
    fitted = CudaCalibration.fit(predicted, [truth.apply(p) for p in predicted])
    assert fitted.context_mb == pytest.approx(420.0, rel=1e-6)
    assert fitted.scale == pytest.approx(1.1, rel=1e-6)
    assert CudaCalibration().apply(123) == 123
    with pytest.raises(ConfigError):
        CudaCalibration.fit([1], [2])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_cuda_measurement_without_cuda_is_a_clear_error():
    model = create_model("wavemix", **small_config("wavemix"))
    batch = (torch.randn(2, 3, 16, 16), torch.randint(0, 10, (2,)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(MemoryEstimateError, match="is_available"):
        measure_training_peak_cuda(model, batch, opt)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_measurement_is_at_least_the_tracked_peak():
    config = small_config("wavemix")
    model = create_model("wavemix", **config, image_size=16).cuda()
    batch = (torch.randn(4, 3, 16, 16, device="cuda"), torch.randint(0, 10, (4,), device="cuda"))
    opt = torch.optim.AdamW(model.parameters())
    measure_training_peak_cuda(model, batch, opt)  # warm-up: creates the optimizer state
    measured = measure_training_peak_cuda(model, batch, opt)
    predicted = predict_training_peak("wavemix", config, calibration=CudaCalibration(), **DATA)
    assert isinstance(measured, MemoryEstimate)
    assert measured.breakdown["reserved"] >= measured.peak_bytes >= 0.9 * predicted.peak_bytes

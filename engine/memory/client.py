"""The one client of the estimator process: predictions of peak training memory.

Importing torch in a fresh interpreter costs 3-5 s of the 4-9 s a first prediction takes on
2 cores, so :class:`MemoryPredictor` keeps one estimator process alive and sends it JSON
lines; the search driver predicts every candidate before scheduling it (to pack trials by
memory and to reject over-cap candidates without occupying a worker).
:func:`predict_training_peak` is the one-shot form. The isolation is kept: a request that
crashes the estimator (fake tensors can abort the interpreter) fails alone, and the next
request starts a new process.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import tempfile
import time
from typing import Any

from engine.errors import ConfigError, MemoryEstimateError
from engine.memory.estimator import RESULT_TAG, estimator_command, estimator_env
from engine.memory.step import CudaCalibration, MemoryEstimate, StepRequest
from engine.train.schedule import ADAMW

__all__ = ["MemoryPredictor", "predict_training_peak"]

_STDERR_TAIL = 2500  # characters of the estimator's stderr quoted in an error


def predict_training_peak(family: str, model_config: dict[str, Any], *, batch_size: int,
                          in_channels: int, image_size: int, num_classes: int,
                          optimizer: str = ADAMW, amp: str | None = None,
                          timeout_s: float = 120,
                          calibration: CudaCalibration | None = None) -> MemoryEstimate:
    """Predict the peak memory of one training step without allocating it.

    Args:
        family: A registered model family (``engine.models.FAMILIES``).
        model_config: The family's configuration, without the data fields.
        batch_size: Images per step.
        in_channels: Channels of the input images.
        image_size: Height = width of the input images, in pixels.
        num_classes: Number of classes of the cross-entropy head.
        optimizer: ``"adamw"``, ``"sgd"`` (momentum 0.9) or ``"dualopt"`` (the larger of both).
        amp: ``None``/``"none"``, ``"bf16"`` or ``"fp16"`` autocast of the forward pass.
            Autocast runs with CPU rules, whose op lists differ slightly from CUDA's.
        timeout_s: Seconds the estimator may take (5-10 s for most models, 15 s for a
            32-block WaveMix on a loaded 2-core CPU), starting the process included.
        calibration: ``None`` predicts a CPU run. A :class:`CudaCalibration` predicts a CUDA
            run: the optimizer takes its CUDA default (multi-tensor ``foreach``, which holds a
            parameter-sized temporary) and the calibration is applied to the peak.

    Returns:
        A ``"predicted"`` estimate; ``seconds`` includes starting the subprocess (2-8 s).

    Raises:
        ConfigError: A bad argument or model configuration (the message names the key).
        MemoryEstimateError: The estimator crashed or timed out; the message quotes its stderr.
    """
    with MemoryPredictor(timeout_s=timeout_s, calibration=calibration) as predictor:
        return predictor.predict(family, model_config, batch_size=batch_size,
                                 in_channels=in_channels, image_size=image_size,
                                 num_classes=num_classes, optimizer=optimizer, amp=amp)


class MemoryPredictor:
    """Predict peak training memory through one persistent estimator subprocess.

    Use as a context manager (or call :meth:`close`); the subprocess starts on first use.

    Args:
        timeout_s: Seconds one prediction may take before the estimator is killed.
        calibration: Predict for a CUDA device with this calibration (see CudaCalibration).
    """

    def __init__(self, *, timeout_s: float = 120.0, calibration: CudaCalibration | None = None):
        self.timeout_s = timeout_s
        self.calibration = calibration
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self._cache: dict[str, MemoryEstimate] = {}

    def __enter__(self) -> MemoryPredictor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def predict(self, family: str, model_config: dict[str, Any], *, batch_size: int,
                in_channels: int, image_size: int, num_classes: int, optimizer: str = ADAMW,
                amp: str | None = None) -> MemoryEstimate:
        """Same contract as :func:`predict_training_peak` (cached per request)."""
        request = StepRequest.make(family, model_config, batch_size=batch_size,
                                   in_channels=in_channels, image_size=image_size,
                                   num_classes=num_classes, optimizer=optimizer, amp=amp,
                                   foreach=True if self.calibration is not None else None)
        key = json.dumps(request.to_json(), sort_keys=True)
        if key in self._cache:
            return self._cache[key]
        start = time.perf_counter()
        reply = self.ask(request.to_json())
        peak, breakdown = reply["peak_bytes"], dict(reply["breakdown"])
        if self.calibration is not None:
            calibrated = self.calibration.apply(peak)
            breakdown["cuda_overhead"] = calibrated - peak
            peak = calibrated
        est = MemoryEstimate(peak, "predicted", time.perf_counter() - start, breakdown)
        self._cache[key] = est
        return est

    def close(self) -> None:
        """Stop the estimator subprocess (it is ours alone: stopped by its id)."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    # -- the subprocess -------------------------------------------------------------------
    def _start(self) -> subprocess.Popen:
        # stderr goes to a file: a pipe nobody reads could fill up and block the child.
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen(estimator_command(),
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._stderr, text=True, env=estimator_env(),
                                      bufsize=1)
        return self._proc

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read()
        return f"\n--- estimator stderr (tail) ---\n{text[-_STDERR_TAIL:]}" if text else ""

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one JSON request to the estimator and return its answer.

        Raises:
            ConfigError: the estimator found the model configuration invalid.
            MemoryEstimateError: any other failure, with the estimator's stderr.
        """
        proc = self._proc if self._proc is not None and self._proc.poll() is None else self._start()
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        deadline = time.monotonic() + self.timeout_s
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(timeout=left):
                    tail = self._stderr_tail()
                    self.close()
                    raise MemoryEstimateError(
                        f"memory prediction for {request.get('family')} timed out after "
                        f"{self.timeout_s:g} s; raise the timeout or predict a smaller "
                        f"configuration{tail}")
                line = proc.stdout.readline()
                if not line:  # the estimator died (e.g. aborted by a fake-tensor crash)
                    tail = self._stderr_tail()
                    code = proc.wait()
                    self.close()
                    raise MemoryEstimateError(
                        f"memory prediction for {request.get('family')}: the estimator exited "
                        f"({code}) without an answer{tail}")
                if line.startswith(RESULT_TAG):
                    answer = json.loads(line[len(RESULT_TAG):])
                    break
        finally:
            sel.close()
        err = answer.get("error")
        if err is None:
            return answer
        if err["type"] == "ConfigError":
            raise ConfigError(err["message"])
        raise MemoryEstimateError(f"memory prediction for {request.get('family')} failed in the "
                                  f"estimator: {err['type']}: {err['message']}"
                                  f"{self._stderr_tail()}")

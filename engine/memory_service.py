"""A long-lived memory estimator: one subprocess answers many predictions.

:func:`engine.memory.predict_training_peak` starts a fresh interpreter per prediction, and
importing torch there costs 3-5 s of the 4-9 s a prediction takes on 2 cores. The search
driver predicts every candidate before scheduling it (to pack trials by memory and to reject
over-cap candidates without occupying a worker), so it keeps one estimator process alive and
sends it JSON lines instead. The isolation is kept: a request that crashes the estimator
(fake tensors can abort the interpreter) fails alone, and the next request starts a new one.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import tempfile
import time
from typing import Any

from engine.errors import MemoryEstimateError
from engine.memory import CudaCalibration, MemoryEstimate, _answer, _make_request, _to_estimate
from engine.memory_ipc import RESULT_TAG, estimator_env, raise_for_error, stderr_tail

__all__ = ["MemoryPredictor"]


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
                in_channels: int, image_size: int, num_classes: int, optimizer: str = "adamw",
                amp: str | None = None) -> MemoryEstimate:
        """Same contract as :func:`engine.memory.predict_training_peak` (cached per request)."""
        request = _make_request(family, model_config, batch_size=batch_size,
                                in_channels=in_channels, image_size=image_size,
                                num_classes=num_classes, optimizer=optimizer, amp=amp)
        request["foreach"] = True if self.calibration is not None else None
        key = json.dumps(request, sort_keys=True)
        if key in self._cache:
            return self._cache[key]
        start = time.perf_counter()
        est = _to_estimate(self._ask(request), self.calibration, start)
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
        self._proc = subprocess.Popen([sys.executable, "-m", "engine.memory_service"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._stderr, text=True, env=estimator_env(),
                                      bufsize=1)
        return self._proc

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return stderr_tail(self._stderr.read())

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
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
                        f"memory prediction for {request['family']} timed out after "
                        f"{self.timeout_s:g} s; raise the timeout or predict a smaller "
                        f"configuration{tail}")
                line = proc.stdout.readline()
                if not line:  # the estimator died (e.g. aborted by a fake-tensor crash)
                    tail = self._stderr_tail()
                    code = proc.wait()
                    self.close()
                    raise MemoryEstimateError(
                        f"memory prediction for {request['family']}: the estimator exited "
                        f"({code}) without an answer{tail}")
                if line.startswith(RESULT_TAG):
                    answer = json.loads(line[len(RESULT_TAG):])
                    break
        finally:
            sel.close()
        raise_for_error(answer, request["family"])
        return answer


def serve() -> int:
    """Estimator loop: one JSON request per stdin line, one tagged JSON answer per stdout line."""
    for line in sys.stdin:
        if line.strip():  # a failing request is answered, not raised: the next one is served
            print(RESULT_TAG + json.dumps(_answer(json.loads(line))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(serve())

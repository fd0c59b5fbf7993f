"""The estimator's wire protocol, shared by its two callers.

``engine.memory`` answers requests in a child interpreter (``python -m engine.memory``): a JSON
request in, one tagged JSON line out. ``predict_training_peak`` starts one child per request;
``engine.memory_service.MemoryPredictor`` keeps one alive. Both start the child with the same
environment and turn its answers and deaths into the same errors, here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, MemoryEstimateError

__all__ = ["RESULT_TAG", "estimator_env", "raise_for_error", "run_estimator", "stderr_tail"]

RESULT_TAG = "WAVESEARCH-MEMORY-RESULT "  # marks the child's answer among any other output
_STDERR_TAIL = 2500  # characters of the child's stderr quoted in an error


def run_estimator(request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run ``python -m engine.memory`` on ``request``; translate its failures into our errors."""
    family = request["family"]
    try:
        proc = subprocess.run([sys.executable, "-m", "engine.memory"], input=json.dumps(request),
                              capture_output=True, text=True, timeout=timeout_s,
                              env=estimator_env())
    except subprocess.TimeoutExpired as e:
        raise MemoryEstimateError(
            f"memory prediction for {family} timed out after {timeout_s:g} s (timeout_s); "
            f"raise timeout_s or predict a smaller configuration{stderr_tail(e.stderr)}"
        ) from None
    answer = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            answer = json.loads(line[len(RESULT_TAG):])
    if proc.returncode == 0 and answer is not None and "error" not in answer:
        return answer
    if answer is not None:
        raise_for_error(answer, family, stderr_tail(proc.stderr))
    if proc.returncode < 0:
        how = f"was killed by {signal.Signals(-proc.returncode).name}"
    else:
        how = f"exited with status {proc.returncode} without an answer"
    raise MemoryEstimateError(
        f"memory prediction for {family}: the estimator subprocess {how}{stderr_tail(proc.stderr)}"
    )


def estimator_env() -> dict[str, str]:
    """Environment of an estimator subprocess: this checkout importable, no CUDA context
    (the child computes nothing on a device)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def raise_for_error(answer: dict[str, Any], family: str, tail: str = "") -> None:
    """Raise the error an estimator answer reports, translated into ours (no-op on success)."""
    err = answer.get("error")
    if err is None:
        return
    if err["type"] == "ConfigError":
        raise ConfigError(err["message"])
    raise MemoryEstimateError(f"memory prediction for {family} failed in the estimator: "
                              f"{err['type']}: {err['message']}{tail}")


def stderr_tail(stderr: str | bytes | None) -> str:
    if not stderr:
        return ""
    if isinstance(stderr, bytes):  # TimeoutExpired carries bytes even in text mode
        stderr = stderr.decode(errors="replace")
    return f"\n--- estimator stderr (tail) ---\n{stderr[-_STDERR_TAIL:]}"

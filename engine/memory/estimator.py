"""The estimator process: ``python -m engine.memory.estimator`` answers predictions.

One JSON request per stdin line (a :class:`~engine.memory.step.StepRequest`), one tagged JSON
answer per stdout line; a request that fails is answered with its error and the next one is
served. Its only client is :class:`engine.memory.MemoryPredictor`, which also owns starting
the process (:func:`estimator_command`, :func:`estimator_env`) and reading its answers.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO

__all__ = ["RESULT_TAG", "estimator_command", "estimator_env", "serve"]

RESULT_TAG = "WAVESEARCH-MEMORY-RESULT "  # marks an answer among any other output


def estimator_command() -> list[str]:
    """The command line of an estimator process."""
    return [sys.executable, "-m", "engine.memory.estimator"]


def estimator_env() -> dict[str, str]:
    """Environment of an estimator process: this checkout importable, no CUDA context (the
    child computes nothing on a device)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def serve(requests: IO[str], answers: IO[str]) -> int:
    """Answer every request line of ``requests`` on ``answers``, until end of input."""
    from engine.memory.step import answer  # torch and the models: only in the estimator

    for line in requests:
        if line.strip():
            try:
                payload = json.loads(line)
            except json.JSONDecodeError as e:
                reply = {"error": {"type": type(e).__name__, "message": str(e)}}
            else:
                reply = answer(payload)
            answers.write(RESULT_TAG + json.dumps(reply) + "\n")
            answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.stdin, sys.stdout))

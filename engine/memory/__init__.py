"""Peak training memory of a candidate: predicted without allocating it, or measured.

- :func:`predict_training_peak` / :class:`MemoryPredictor`: fake-tensor predictions in an
  estimator process (:mod:`engine.memory.estimator`), byte-exact against a real CPU step;
- :func:`measure_training_peak_cpu` / :func:`measure_training_peak_cuda`: real measurements;
- :class:`CudaCalibration`: maps a tracked peak to what a CUDA device needs.
"""

from engine.memory.client import MemoryPredictor, predict_training_peak
from engine.memory.step import (
    CudaCalibration,
    MemoryEstimate,
    StepRequest,
    measure_training_peak_cpu,
    measure_training_peak_cuda,
)

__all__ = [
    "CudaCalibration",
    "MemoryEstimate",
    "MemoryPredictor",
    "StepRequest",
    "measure_training_peak_cpu",
    "measure_training_peak_cuda",
    "predict_training_peak",
]

"""Training: the settings of a run, the optimisers it uses, and the loop itself."""

from engine.train.config import TrainConfig
from engine.train.trainer import DeviceData, EpochReport, TrainResult, evaluate, train_model

__all__ = ["DeviceData", "EpochReport", "TrainConfig", "TrainResult", "evaluate", "train_model"]

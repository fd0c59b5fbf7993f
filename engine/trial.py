"""A trial's identity: the candidate a search trains, as stored on its trial and rebuilt by
export and retrain.

It sits below both the search (which draws and trains it) and export (which rebuilds it), so
neither imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import StorageError
from engine.train.config import TrainConfig

__all__ = ["DATA_SHAPE", "TrialConfig"]

# What a model is built for besides its own parameters: the shape of the data set.
DATA_SHAPE = ("in_channels", "num_classes", "image_size")


@dataclass(frozen=True)
class TrialConfig:
    """Everything that defines one candidate: family, model keyword arguments, training."""

    family: str
    model: dict[str, Any]
    train: TrainConfig

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (stored on the trial as its config)."""
        return {"family": self.family, "model": dict(self.model),
                "train": self.train.model_dump(mode="json")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(family=d["family"], model=dict(d["model"]), train=TrainConfig(**d["train"]))

    def model_kwargs(self, data: Mapping[str, Any] | Any) -> dict[str, Any]:
        """The keyword arguments that build this candidate's model for ``data``.

        Args:
            data: The data's shape: a mapping (a study's recorded data) or an object (a
                loaded ``DataBundle``) with ``in_channels``, ``num_classes``, ``image_size``.

        Raises:
            StorageError: the recorded data lacks one of them (no silent default: a model
                built for the wrong shape would not load its weights).
        """
        get = data.get if isinstance(data, Mapping) else (lambda k: getattr(data, k, None))
        shape = {k: get(k) for k in DATA_SHAPE}
        missing = [k for k, v in shape.items() if v is None]
        if missing:
            raise StorageError(f"the data record lacks {', '.join(missing)}, so the model's "
                               "input and output sizes are unknown; export or retrain studies "
                               "that engine search created")
        return {**self.model, **shape}

"""One exception hierarchy for everything WaveSearch reports to a user.

Every message states the rule that was broken, the value received and how to fix it. The
CLI prints ``str(error)`` on one line and exits with :attr:`WaveSearchError.exit_code`.
"""

from __future__ import annotations

__all__ = [
    "WaveSearchError",
    "SpecError",
    "ConfigError",
    "DataError",
    "StorageError",
    "CheckpointError",
    "ResourceError",
    "UsageError",
    "TrialFailure",
]


class WaveSearchError(Exception):
    """Base class of every error WaveSearch raises on purpose."""

    exit_code = 1


class SpecError(WaveSearchError):
    """A search-space file is unreadable, not YAML, or breaks a rule of the spec schema.

    Args:
        message: What is wrong and how to fix it.
        path: The spec file, when known.
        key: The dotted key path inside the spec (``model.wavemix.final_dim``), when known.
    """

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None):
        self.path = path
        self.key = key
        where = ": ".join(part for part in (path, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class ConfigError(WaveSearchError, ValueError):
    """A model or training configuration breaks a rule (e.g. final_dim not divisible by 4)."""

    exit_code = 2


class DataError(WaveSearchError):
    """A data set is missing, corrupt or does not fit the requested use."""

    exit_code = 2


class StorageError(WaveSearchError):
    """The study storage cannot be reached, or a study is missing or incompatible."""

    exit_code = 2


class CheckpointError(WaveSearchError):
    """A checkpoint cannot be written where asked, or a file does not rebuild its model
    (empty, not a checkpoint, damaged metadata, weights that do not fit, edited weights)."""

    exit_code = 2


class ResourceError(WaveSearchError):
    """A trial asks for resources (GPUs, memory) the cluster does not have."""

    exit_code = 2


class UsageError(WaveSearchError):
    """A command-line value breaks a rule that no other class covers (e.g. a server port out
    of range or already in use)."""

    exit_code = 2


class TrialFailure(WaveSearchError):
    """Raised inside a trial to end it as FAIL with a recorded, human-readable reason."""


class MemoryEstimateError(WaveSearchError):
    """A memory prediction or measurement could not be made (estimator crashed or timed out)."""


__all__ += ["MemoryEstimateError"]

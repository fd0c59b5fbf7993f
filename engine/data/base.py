"""The data-set contract: a registry of loaders that return compact uint8 arrays.

A loader decodes its source once into a :class:`DataBundle` of uint8 images (N, C, H, W) and
int64 labels, split into train / validation (carved from the training split, seeded and
stratified) and an optional test split that the search never sees. Bundles are plain numpy
so that the driver can put one in the Ray object store and every trial shares it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from engine.errors import DataError
from engine.registry import Registry

__all__ = ["DATASETS", "DataBundle", "DataRequest", "register_dataset", "stratified_split"]


@dataclass(frozen=True)
class DataRequest:
    """What a search asks of a data set (the validated ``data`` section of a spec)."""

    dataset: str
    root: str | None = None
    train_size: int | None = None  # cap on training images after the split (None = all)
    val_size: int | None = None  # cap on validation images (None = all carved)
    val_fraction: float = 0.1
    seed: int = 0


@dataclass(frozen=True)
class DataBundle:
    """Decoded images and labels, ready to be moved to a training device.

    Attributes:
        train_x / val_x / test_x: uint8 arrays shaped (N, C, H, W).
        train_y / val_y / test_y: int64 arrays shaped (N,).
        classes: class names, index = label.
        mean / std: per-channel statistics of train_x in [0, 1] units.
        source: a human-readable description of where the data came from.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    classes: tuple[str, ...]
    test_x: np.ndarray | None = None
    test_y: np.ndarray | None = None
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())
    source: str = ""

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


Loader = Callable[[DataRequest], DataBundle]
DATASETS: Registry[Loader] = Registry("dataset")


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator registering ``loader(request) -> DataBundle`` under ``name``."""
    return DATASETS.register(name)


def channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W) in [0, 1] units."""
    xf = x.astype(np.float64) / 255.0
    mean = xf.mean(axis=(0, 2, 3))
    std = xf.std(axis=(0, 2, 3))
    std = np.where(std < 1e-6, 1.0, std)  # a constant channel must not divide by zero
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) with ``val_fraction`` of every class in val, seeded."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        n_val = max(1, round(len(idx) * val_fraction))
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    tr = np.concatenate(train_idx)
    va = np.concatenate(val_idx)
    rng.shuffle(tr)
    rng.shuffle(va)
    return tr, va


def _stratified_cap(y: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Indices of at most n items keeping class proportions (all when n is None)."""
    if n is None or n >= len(y):
        return np.arange(len(y))
    frac = n / len(y)
    keep, _ = stratified_split(y, 1.0 - frac, seed) if frac < 1 else (np.arange(len(y)), None)
    return np.sort(keep[:n])


def make_bundle(x: np.ndarray, y: np.ndarray, classes: tuple[str, ...], request: DataRequest, *,
                test_x: np.ndarray | None = None, test_y: np.ndarray | None = None,
                source: str = "") -> DataBundle:
    """Split a decoded training set into train/val, apply the size caps, compute statistics."""
    tr, va = stratified_split(y, request.val_fraction, request.seed)
    tr = tr[_stratified_cap(y[tr], request.train_size, request.seed)]
    va = va[_stratified_cap(y[va], request.val_size, request.seed + 1)]
    train_x = np.ascontiguousarray(x[tr])
    mean, std = channel_stats(train_x)
    return DataBundle(
        train_x=train_x, train_y=y[tr].astype(np.int64),
        val_x=np.ascontiguousarray(x[va]), val_y=y[va].astype(np.int64),
        classes=classes, test_x=test_x, test_y=None if test_y is None else test_y.astype(np.int64),
        mean=mean, std=std, source=source,
    )

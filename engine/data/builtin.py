"""Small built-in data sets: scikit-learn's digits (ships offline) and a synthetic one."""

from __future__ import annotations

import numpy as np

from engine.data.base import (
    DataBundle,
    DataConfig,
    make_bundle,
    register_dataset,
    stratified_split,
)

__all__ = ["load_digits", "load_synthetic"]

# These sets ship without a test split: hold one out with a seed of its own, so it stays the
# same whatever seed a spec uses for its train/validation split, and the search never sees it.
_TEST_FRACTION = 0.2
_TEST_SEED = 1_797


def _with_holdout(x: np.ndarray, y: np.ndarray, classes: tuple[str, ...], request: DataConfig,
                  source: str) -> DataBundle:
    pool, test = stratified_split(y, _TEST_FRACTION, _TEST_SEED)
    pool, test = np.sort(pool), np.sort(test)
    return make_bundle(x[pool], y[pool], classes, request, test_x=x[test], test_y=y[test],
                       source=source)


@register_dataset("digits")
def load_digits(request: DataConfig) -> DataBundle:
    """scikit-learn's 1,797 8x8 grayscale digits (values 0..16), scaled to uint8."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None]  # (N,1,8,8)
    y = d.target.astype(np.int64)
    classes = tuple(str(i) for i in range(10))
    return _with_holdout(x, y, classes, request, "sklearn.datasets.load_digits")


@register_dataset("synthetic")
def load_synthetic(request: DataConfig) -> DataBundle:
    """Learnable random data for tests: class k has a bright k-th horizontal band, 3x16x16."""
    rng = np.random.default_rng(request.seed)
    n, classes = 400, 4
    y = np.arange(n) % classes
    x = rng.integers(0, 96, size=(n, 3, 16, 16), dtype=np.int64)
    for k in range(classes):
        x[y == k, :, 4 * k : 4 * k + 4, :] += 150
    names = tuple(f"class{k}" for k in range(classes))
    return _with_holdout(np.clip(x, 0, 255).astype(np.uint8), y, names, request, "synthetic")

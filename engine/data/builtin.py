"""Small built-in data sets: scikit-learn's digits (ships offline) and a synthetic one."""

from __future__ import annotations

import numpy as np

from engine.data.base import DataBundle, DataRequest, make_bundle, register_dataset

__all__ = ["load_digits", "load_synthetic"]


@register_dataset("digits")
def load_digits(request: DataRequest) -> DataBundle:
    """scikit-learn's 1,797 8x8 grayscale digits (values 0..16), scaled to uint8."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None]  # (N,1,8,8)
    y = d.target.astype(np.int64)
    classes = tuple(str(i) for i in range(10))
    return make_bundle(x, y, classes, request, source="sklearn.datasets.load_digits")


@register_dataset("synthetic")
def load_synthetic(request: DataRequest) -> DataBundle:
    """Learnable random data for tests: class k has a bright k-th horizontal band, 3x16x16."""
    rng = np.random.default_rng(request.seed)
    n, classes = 400, 4
    y = np.arange(n) % classes
    x = rng.integers(0, 96, size=(n, 3, 16, 16), dtype=np.int64)
    for k in range(classes):
        x[y == k, :, 4 * k : 4 * k + 4, :] += 150
    names = tuple(f"class{k}" for k in range(classes))
    return make_bundle(np.clip(x, 0, 255).astype(np.uint8), y, names, request, source="synthetic")

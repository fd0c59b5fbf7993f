"""Hypervolume of a front in (accuracy up, costs down), and the expected improvement of one
candidate whose costs are known before training and whose accuracy is Gaussian.

Costs are scaled so the reference point is 1 in every cost (a cap, or a bound beyond the
largest cost seen) and accuracy's reference is ``ref_acc``. The region under the front is cut
into a grid of cells, one per interval between consecutive front costs in each dimension; in
each cell the front's height (the best accuracy of the points that cost no more than the
cell's lower corner) is constant. So the hypervolume is a sum of cell volume x height, and the
improvement of adding a point (y, c) is a sum over the cells of the box [c, 1] of
``volume x max(0, y - height)``: a piecewise-linear function of y alone, whose expectation under
y ~ N(mu, sigma^2) is exact (the closed form of expected improvement, cell by cell). With one
cost this is the usual 2-D staircase; with two costs (accuracy, memory, size) a 2-D grid; with
none, expected improvement over the best accuracy.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

__all__ = ["expected_improvement", "hypervolume", "improvement_cells", "pareto_mask"]


def _as_costs(costs: np.ndarray, n: int) -> np.ndarray:
    """Costs as an (n, d) array (a 1-D array is one cost per point)."""
    costs = np.asarray(costs, dtype=float)
    if costs.ndim == 2:
        return costs
    return costs.reshape(n, -1) if n else costs.reshape(0, 0)


def _clean(acc: np.ndarray, costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    acc = np.asarray(acc, dtype=float).reshape(-1)
    costs = _as_costs(costs, len(acc))
    keep = np.isfinite(acc) & np.all(np.isfinite(costs), axis=1)
    return acc[keep], costs[keep]


def pareto_mask(acc: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """True for the points no other point dominates (higher or equal accuracy and lower or
    equal costs, better in one). Of identical points the first is kept. NaN points are never
    on the front.

    Args:
        acc: Accuracy of each point, shape (n,).
        costs: Costs of each point, shape (n, d) (d may be 0).
    """
    acc = np.asarray(acc, dtype=float).reshape(-1)
    costs = _as_costs(costs, len(acc))
    ok = np.isfinite(acc) & np.all(np.isfinite(costs), axis=1)
    # ge[i, j]: i is at least as good as j in every objective; gt: better in one.
    ge = (acc[:, None] >= acc[None, :]) & np.all(costs[:, None, :] <= costs[None, :, :], axis=2)
    gt = (acc[:, None] > acc[None, :]) | np.any(costs[:, None, :] < costs[None, :, :], axis=2)
    dominated = np.any(ge & gt & ok[:, None], axis=0)
    same = ge & ~gt & ok[:, None]
    earlier_twin = np.any(np.tril(same, k=-1), axis=1)  # an identical point came before
    return ok & ~dominated & ~earlier_twin


def improvement_cells(front_acc: np.ndarray, front_costs: np.ndarray, lower: np.ndarray,
                      ref_acc: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The cells of the box [lower, 1]^d with the front's height in each.

    Args:
        front_acc: Accuracy of the front's points, shape (n,); any points may be given
            (dominated ones never set a height), NaN ones are ignored.
        front_costs: Their costs, shape (n, d), scaled so the reference is 1.
        lower: The box's lower corner, shape (d,): a candidate's costs, or zeros for the
            whole hypervolume.
        ref_acc: The reference accuracy: the height where no point reaches.

    Returns:
        (volumes, heights), both of shape (m,): the improvement of a point (y, lower) is
        ``sum(volumes * max(0, y - heights))``. Empty when ``lower`` is at or beyond the
        reference in a cost.
    """
    acc, costs = _clean(front_acc, front_costs)
    lower = np.asarray(lower, dtype=float).reshape(-1)
    d = lower.size
    if costs.shape[1] != d:
        costs = costs.reshape(len(acc), d)
    if np.any(lower >= 1.0) or not np.all(np.isfinite(lower)):
        return np.zeros(0), np.zeros(0)
    if d == 0:  # accuracy alone: one cell, the best accuracy so far
        corners, volumes = np.zeros((1, 0)), np.ones(1)
    else:
        edges = [np.unique(np.concatenate(
            ([lower[j]], costs[(costs[:, j] > lower[j]) & (costs[:, j] < 1.0), j], [1.0])))
            for j in range(d)]
        corners = np.stack(np.meshgrid(*[e[:-1] for e in edges], indexing="ij"),
                           axis=-1).reshape(-1, d)
        widths = np.stack(np.meshgrid(*[np.diff(e) for e in edges], indexing="ij"), axis=-1)
        volumes = np.prod(widths.reshape(-1, d), axis=1)
    # covers[i, k]: point i costs no more than corner k in every cost, so it lifts that cell.
    covers = np.all(costs[:, None, :] <= corners[None, :, :], axis=2)
    lifted = np.where(covers, acc[:, None], -np.inf).max(axis=0, initial=-np.inf)
    heights = np.maximum(lifted, ref_acc)
    return volumes, heights


def hypervolume(acc: np.ndarray, costs: np.ndarray, ref_acc: float = 0.0) -> float:
    """Volume dominated by the points within the reference box: costs in [0, 1] (scaled by the
    reference), accuracy above ``ref_acc``. Points beyond the reference count for nothing."""
    acc = np.asarray(acc, dtype=float).reshape(-1)
    costs = _as_costs(costs, len(acc))
    volumes, heights = improvement_cells(acc, costs, np.zeros(costs.shape[1]), ref_acc)
    return float(np.sum(volumes * (heights - ref_acc)))


def expected_improvement(mu: float, sigma: float, volumes: np.ndarray,
                         heights: np.ndarray) -> float:
    """E[sum(volumes * max(0, Y - heights))] for Y ~ N(mu, sigma^2), exactly.

    Each cell is the expected improvement over its height: ``(mu - h) Phi(z) + sigma phi(z)``
    with ``z = (mu - h) / sigma``; with ``sigma`` 0, ``max(0, mu - h)``.
    """
    if volumes.size == 0 or not np.isfinite(mu):
        return 0.0
    gap = mu - heights
    if not sigma > 0:
        return float(np.sum(volumes * np.maximum(gap, 0.0)))
    z = gap / sigma
    return float(np.sum(volumes * (gap * norm.cdf(z) + sigma * norm.pdf(z))))

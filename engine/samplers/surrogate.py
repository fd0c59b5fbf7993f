"""The models behind the cost-aware sampler: candidates as vectors, and a small Gaussian process.

:class:`ParamEncoder` turns a candidate's Optuna parameters into numbers in [0, 1] (log scale
where the distribution is log, one column per choice of a categorical, the family too), so one
model covers every family of a study. :class:`GaussianProcess` is an exact GP with an ARD
Matern-5/2 kernel whose observation noise is learnt but may be scaled per point (a point that
is one of many from a learning curve counts for less), fitted by maximising the log marginal
likelihood with weak priors that keep it sensible on a dozen points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

__all__ = ["CurveModel", "GaussianProcess", "ParamEncoder"]


class ParamEncoder:
    """Candidate parameters -> a vector in [0, 1]^d, columns in name order.

    Args:
        distributions: Every parameter the space can draw, by name (all families).

    A parameter a candidate does not have (another family's) encodes as 0.5, or as no choice
    for a categorical; a value outside its distribution is clipped (numbers) or no choice.
    """

    def __init__(self, distributions: Mapping[str, BaseDistribution]):
        self.columns: list[tuple[str, Any]] = []  # (name, None) or (name, choice)
        self._numeric: dict[str, tuple[float, float, bool]] = {}
        for name in sorted(distributions):
            dist = distributions[name]
            if isinstance(dist, CategoricalDistribution):
                self.columns += [(name, c) for c in dist.choices]
            elif isinstance(dist, (FloatDistribution, IntDistribution)):
                log = bool(dist.log)
                low, high = (math.log(dist.low), math.log(dist.high)) if log else (dist.low, dist.high)
                self._numeric[name] = (float(low), float(high), log)
                self.columns.append((name, None))

    @property
    def width(self) -> int:
        """Columns of an encoded candidate."""
        return len(self.columns)

    def encode(self, params: Mapping[str, Any]) -> np.ndarray:
        """One candidate, shape (width,)."""
        out = np.empty(self.width)
        for i, (name, choice) in enumerate(self.columns):
            value = params.get(name)
            if choice is not None:
                out[i] = 1.0 if name in params and value == choice else 0.0
                continue
            low, high, log = self._numeric[name]
            if value is None or high <= low:
                out[i] = 0.5
                continue
            x = math.log(value) if log else float(value)
            out[i] = min(1.0, max(0.0, (x - low) / (high - low)))
        return out


def _squared_differences(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """(x1_i - x2_j)^2 per column, flattened: shape (n1 * n2, d)."""
    return ((x1[:, None, :] - x2[None, :, :]) ** 2).reshape(-1, x1.shape[1])


def _matern52(sq: np.ndarray, lengths: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The Matern-5/2 correlation, shape ``shape``, from :func:`_squared_differences`."""
    r = np.sqrt(np.maximum(sq @ (1.0 / lengths**2), 0.0)).reshape(shape)
    s5r = math.sqrt(5.0) * r
    return (1.0 + s5r + 5.0 / 3.0 * r * r) * np.exp(-s5r)


class GaussianProcess:
    """Exact GP regression: ARD Matern-5/2, learnt amplitude and noise, noise scaled per point.

    Inputs are expected in [0, 1] per column; targets are standardised internally. The
    hyperparameters (log amplitude, log length per column, log noise) maximise the log
    marginal likelihood plus weak log-normal priors (lengths around 1, noise around 5% of the
    targets' spread), from a fixed start, an optional warm start (the last fit's) and
    ``restarts`` seeded random ones. Linear algebra runs on one BLAS thread: the matrices are
    small, and on a CPU shared with training workers a threaded Cholesky is 30x slower.

    Args:
        seed: Seeds the random restarts (fits are reproducible).
        restarts: Random starting points besides the fixed and warm ones.
    """

    # (prior mean, prior sd, lower bound, upper bound) of each log hyperparameter
    _AMP = (0.0, 1.0, math.log(0.05), math.log(20.0))
    _LEN = (0.0, 1.5, math.log(0.03), math.log(30.0))
    _NOISE = (math.log(0.05), 1.5, math.log(1e-4), math.log(1.0))

    def __init__(self, *, seed: int = 0, restarts: int = 1):
        self.seed = seed
        self.restarts = restarts
        self.theta: np.ndarray | None = None

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, x: np.ndarray, y: np.ndarray, noise_scale: np.ndarray | None = None, *,
            warm: np.ndarray | None = None) -> GaussianProcess:
        """Fit to ``x`` (n, d) and ``y`` (n,); ``noise_scale`` (n,) multiplies the learnt noise
        variance per point (1 by default); ``warm`` is an extra starting point (``theta`` of an
        earlier fit with as many columns)."""
        self.x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        self.noise_scale = np.ones(len(y)) if noise_scale is None else np.asarray(noise_scale, float)
        self.y_mean = float(y.mean())
        spread = float(y.std())
        self.y_std = spread if spread > 1e-9 else 1.0
        self.z = (y - self.y_mean) / self.y_std
        d = self.x.shape[1]
        self._sq = _squared_differences(self.x, self.x)
        with threadpool_limits(1):
            self.theta = self._optimise(d, warm)
            self._factor()
        return self

    def _bounds(self, d: int) -> list[tuple[float, float]]:
        return [self._AMP[2:]] + [self._LEN[2:]] * d + [self._NOISE[2:]]

    def _prior(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        d = len(theta) - 2
        mean = np.array([self._AMP[0]] + [self._LEN[0]] * d + [self._NOISE[0]])
        sd = np.array([self._AMP[1]] + [self._LEN[1]] * d + [self._NOISE[1]])
        u = (theta - mean) / sd
        return 0.5 * float(u @ u), u / sd

    def _objective(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Negative log marginal likelihood plus prior, and its gradient in theta."""
        amp, lengths, noise = math.exp(theta[0]), np.exp(theta[1:-1]), math.exp(theta[-1])
        n = len(self.z)
        corr = _matern52(self._sq, lengths, (n, n))
        k = amp * corr + np.diag(noise * self.noise_scale + 1e-8)
        try:
            c = cho_factor(k, lower=True)
        except np.linalg.LinAlgError:
            return 1e10, np.zeros_like(theta)
        alpha = cho_solve(c, self.z)
        nll = 0.5 * float(self.z @ alpha) + float(np.log(np.diag(c[0])).sum())
        w = cho_solve(c, np.eye(len(self.z))) - np.outer(alpha, alpha)  # K^-1 - a a^T
        r = np.sqrt(np.maximum(self._sq @ (1.0 / lengths**2), 0.0))
        # d corr / d log(length_j) = 5/3 (1 + sqrt5 r) exp(-sqrt5 r) (x_i - x_j)_j^2 / length_j^2
        g_len = amp * 5.0 / 3.0 * (1.0 + math.sqrt(5.0) * r) * np.exp(-math.sqrt(5.0) * r)
        grad = np.empty_like(theta)
        grad[0] = 0.5 * float(np.sum(w * amp * corr))
        grad[1:-1] = 0.5 * (((w.reshape(-1) * g_len) @ self._sq) / lengths**2)
        grad[-1] = 0.5 * float(np.sum(np.diag(w) * noise * self.noise_scale))
        prior, g_prior = self._prior(theta)
        return nll + prior, grad + g_prior

    def _optimise(self, d: int, warm: np.ndarray | None) -> np.ndarray:
        bounds = self._bounds(d)
        rng = np.random.default_rng(self.seed)
        starts = [np.array([0.0] + [math.log(0.5)] * d + [math.log(0.05)])]
        if warm is not None and len(warm) == d + 2:
            starts.append(np.clip(warm, [b[0] for b in bounds], [b[1] for b in bounds]))
        for _ in range(self.restarts):
            starts.append(np.array([rng.uniform(lo, hi) for lo, hi in bounds]))
        best, best_f = starts[0], math.inf
        for start in starts:
            res = minimize(self._objective, start, jac=True, method="L-BFGS-B", bounds=bounds,
                           options={"maxiter": 80})
            if res.fun < best_f:
                best, best_f = res.x, float(res.fun)
        return best

    def _factor(self) -> None:
        amp, lengths, noise = self.hyperparameters()
        n = len(self.z)
        k = amp * _matern52(_squared_differences(self.x, self.x), lengths, (n, n))
        k = k + np.diag(noise * self.noise_scale + 1e-8)
        self._chol = cho_factor(k, lower=True)
        self._alpha = cho_solve(self._chol, self.z)

    def hyperparameters(self) -> tuple[float, np.ndarray, float]:
        """(amplitude, lengths, noise variance), in standardised target units."""
        if self.theta is None:
            raise RuntimeError("GaussianProcess.fit() has not been called")
        return math.exp(self.theta[0]), np.exp(self.theta[1:-1]), math.exp(self.theta[-1])

    # -- prediction -------------------------------------------------------------------------
    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the latent function at ``x`` (m, d), in
        target units (the observation noise is not included)."""
        amp, lengths, _ = self.hyperparameters()
        x = np.asarray(x, dtype=float)
        ks = amp * _matern52(_squared_differences(x, self.x), lengths, (len(x), len(self.x)))
        mean = ks @ self._alpha
        with threadpool_limits(1):
            v = solve_triangular(self._chol[0], ks.T, lower=True)
        var = np.maximum(amp - np.sum(v * v, axis=0), 1e-12)
        return self.y_mean + self.y_std * mean, self.y_std * np.sqrt(var)

    def with_points(self, x: np.ndarray, y: np.ndarray, noise_scale: np.ndarray) -> GaussianProcess:
        """A copy that also holds ``(x, y)`` with the same hyperparameters (to condition on
        pending points, e.g. their predicted mean)."""
        out = GaussianProcess(seed=self.seed, restarts=self.restarts)
        ys = self.y_mean + self.y_std * self.z
        out.x = np.vstack([self.x, x])
        out.noise_scale = np.concatenate([self.noise_scale, noise_scale])
        out.y_mean, out.y_std = self.y_mean, self.y_std
        out.z = (np.concatenate([ys, y]) - out.y_mean) / out.y_std
        out.theta = self.theta
        with threadpool_limits(1):
            out._factor()
        return out


class CurveModel:
    """Accuracy at the full epoch budget, learnt from every finished epoch of every trial.

    Each observation is a candidate's features, the fraction of the epoch budget trained when
    it was measured, and the validation accuracy then. The fraction is one more input of the
    GP, and predictions are made at fraction 1: a trial pruned after 2 of 8 epochs still tells
    the model about its neighbourhood, as does the start of a trial still running. Points
    with a ``weight`` above 1 have their noise scaled up by it (so one long curve does not
    outweigh several finished trials).

    Args:
        seed: Seeds the GP's restarts.
    """

    def __init__(self, *, seed: int = 0):
        self.seed = seed
        self.gp: GaussianProcess | None = None

    def fit(self, features: np.ndarray, fraction: np.ndarray, accuracy: np.ndarray,
            weight: np.ndarray, *, warm: np.ndarray | None = None) -> CurveModel:
        """Fit to n observations: ``features`` (n, d), the others (n,)."""
        x = np.column_stack([features, fraction])
        self.gp = GaussianProcess(seed=self.seed).fit(x, accuracy, weight, warm=warm)
        return self

    @property
    def theta(self) -> np.ndarray | None:
        """The fitted hyperparameters (a warm start for the next fit)."""
        return None if self.gp is None else self.gp.theta

    def _at_end(self, features: np.ndarray) -> np.ndarray:
        return np.column_stack([features, np.ones(len(features))])

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd of the accuracy after the full budget, per row of ``features``."""
        if self.gp is None:
            raise RuntimeError("CurveModel.fit() has not been called")
        return self.gp.predict(self._at_end(features))

    def assuming(self, features: np.ndarray, accuracy: np.ndarray) -> CurveModel:
        """A copy that takes ``accuracy`` at the full budget as observed at ``features``
        (the "kriging believer" for trials still running: others are then chosen away from
        them)."""
        if self.gp is None:
            raise RuntimeError("CurveModel.fit() has not been called")
        out = CurveModel(seed=self.seed)
        out.gp = self.gp.with_points(self._at_end(features), accuracy, np.ones(len(accuracy)))
        return out

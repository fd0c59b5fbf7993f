"""A start-up that fits: first candidates that pass the screen, spread over the memory range.

Random start-up draws land where the space has most volume, which in a broad space is over the
cap (never trained, but a prediction each) or in the middle of the feasible memory range; the
front's cheap end stays empty until luck finds it. Here the range between the smallest feasible
candidate found and the cap is cut into log-spaced strata, and each pick fills the emptiest
stratum (the cheapest first on ties): the first pick is the smallest candidate of its pool,
later ones are screened in order of how close their estimated memory is to the target
stratum. Only screened, feasible candidates are returned.

:func:`spread_pick` is one pick (the cost-aware sampler's start-up); :func:`startup_design`
makes a whole design, for other samplers to receive as enqueued trials.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.caps import CapsConfig
from engine.samplers.candidates import Candidate, CandidateDrawer, CostOracle
from engine.samplers.surrogate import ParamEncoder
from engine.space import SearchSpace
from engine.trial import TrialConfig

if TYPE_CHECKING:
    from engine.protocol import Screening

__all__ = ["spread_pick", "startup_design"]


def _cost(c: Candidate, oracle: CostOracle) -> float | None:
    """The exact cost strata are cut in: predicted memory, or size when memory is unknown."""
    return c.memory_mb if oracle.memory_known else oracle.size(c)


def _log_estimates(pool: Sequence[Candidate], oracle: CostOracle) -> np.ndarray:
    if oracle.memory_known:
        return oracle.estimate_log_memory(pool)[0]
    return np.array([math.log(s) if (s := oracle.size(c)) else np.nan for c in pool])


def _screen_in_order(order: Sequence[Candidate], oracle: CostOracle, budget: int,
                     accept: Callable[[Candidate], bool]) -> Candidate | None:
    for c in order[:budget]:
        oracle.screen(c)
        if c.feasible and accept(c):
            return c
    return None


def spread_pick(pool: Sequence[Candidate], counted: Sequence[float], oracle: CostOracle, *,
                n_strata: int, budget: int, rng: np.random.Generator) -> Candidate | None:
    """One start-up pick: a feasible candidate in the emptiest memory stratum.

    Args:
        pool: Candidates to choose from (screened ones keep their verdict).
        counted: Costs (MB, or parameters before any memory is known) of the candidates
            already trained or chosen: they fill the strata.
        oracle: Screens candidates and estimates the unscreened ones' memory.
        n_strata: Log-spaced strata between the smallest feasible cost and the cap.
        budget: Screens this pick may run (three times as many while no feasible candidate
            is known).
        rng: Chooses among feasible candidates of the target stratum.

    Returns:
        A screened feasible candidate, or None if none was found within the budget.
    """
    pool = [oracle.known(c) for c in pool]
    feasible_costs = [v for c in list(pool) + list(oracle.archive.values())
                      if c.feasible and (v := _cost(c, oracle))] + [v for v in counted if v]
    unscreened = [c for c in pool if c.feasible is None]
    est = _log_estimates(unscreened, oracle)
    if not feasible_costs:
        # The cheap end first: the smallest candidates by estimate (unknown ones last).
        order = [unscreened[i] for i in np.argsort(np.where(np.isnan(est), np.inf, est),
                                                   kind="stable")]
        return _screen_in_order(order, oracle, 3 * budget, lambda c: True)
    lo = min(feasible_costs)
    cap = oracle.caps.gpu_ram_mb if oracle.memory_known else oracle.caps.max_params
    hi = float(cap) if cap is not None else max(feasible_costs)
    edges = np.geomspace(lo, hi, n_strata + 1) if hi > lo else np.array([lo, lo * (1 + 1e-9)])
    n = len(edges) - 1

    def stratum(v: float) -> int:
        return int(np.clip(np.searchsorted(edges, v, side="right") - 1, 0, n - 1))

    counts = np.bincount([stratum(v) for v in counted if v], minlength=n)
    target = int(np.argmin(counts))  # the emptiest; the cheapest of equals
    centre = 0.5 * (math.log(edges[target]) + math.log(edges[target + 1]))
    ready = [c for c in pool if c.feasible and stratum(_cost(c, oracle)) == target]
    if ready:
        return ready[int(rng.integers(len(ready)))]
    dist = np.abs(est - centre)
    order = [unscreened[i] for i in np.argsort(np.where(np.isnan(dist), np.inf, dist),
                                               kind="stable")]
    found = _screen_in_order(order, oracle, budget,
                             lambda c: stratum(_cost(c, oracle)) == target)
    if found is not None:
        return found
    near = [c for c in pool if c.feasible]
    if not near:
        return None
    return min(near, key=lambda c: abs(math.log(_cost(c, oracle)) - centre))


def startup_design(space: SearchSpace, screen: Callable[[TrialConfig], Screening], n: int,
                   seed: int, *, caps: CapsConfig | None = None,
                   param_count: Callable[[TrialConfig], int] | None = None,
                   pool_size: int = 24, budget: int = 6) -> list[dict[str, Any]]:
    """A start-up design that fits: ``n`` candidates that pass ``screen``, spread over the
    predicted-memory range (see the module docstring), as parameter dicts for
    ``study.enqueue_trial``.

    Args:
        space: The compiled search space.
        screen: The search's screen (``CandidateScreen``).
        n: Candidates wanted (fewer come back if the space has too few that fit).
        seed: Makes the design reproducible.
        caps: The caps (the top of the memory range); None: the largest feasible memory seen.
        param_count: Exact, cheap parameter count (``CandidateScreen.param_count``), used to
            find the cheap end before any memory is known.
        pool_size: Candidates drawn per pick.
        budget: Screens per pick, at most.
    """
    drawer = CandidateDrawer(space)
    oracle = CostOracle(screen, param_count, caps)
    encoder = ParamEncoder(drawer.distributions)
    chosen: list[Candidate] = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        keys = {c.key for c in chosen}
        spare = [c for c in oracle.archive.values() if c.feasible and c.key not in keys]
        # Never the same candidate twice (a small discrete space is drawn again and again).
        pool = [c for c in drawer.draw(pool_size, int(rng.integers(2**31)))
                if c.key not in keys] + spare
        oracle.fit_memory(encoder)
        counted = [v for c in chosen if (v := _cost(c, oracle))]
        pick = spread_pick(pool, counted, oracle, n_strata=n, budget=budget, rng=rng)
        if pick is not None:
            chosen.append(pick)
    return [dict(c.params) for c in chosen]

"""Candidates before training: drawn from the search space, sized and screened, at a bounded cost.

The cost-aware sampler looks at many candidates for each one it trains. A candidate is drawn
by running the spec's own ``SearchSpace.suggest`` against a throwaway in-memory Optuna trial
(so its parameters and its :class:`~engine.protocol.TrialConfig` come from the one place
that defines the space). Its parameter count is exact and cheap (the model built on the meta
device, ~20 ms); its peak memory is exact but costs a prediction (1-15 s on a loaded 2-core
CPU), so :class:`CostOracle` screens only the candidates worth it and estimates the memory of
the others from the ones it has screened (a Gaussian process on log memory).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.study import StudyDirection

from engine.caps import CapsConfig
from engine.errors import ConfigError
from engine.samplers.surrogate import GaussianProcess, ParamEncoder
from engine.space import SearchSpace, training_params
from engine.trial import TrialConfig

if TYPE_CHECKING:  # the screen module imports torch; the sampler needs only its answers
    from engine.protocol import Screening

__all__ = ["Candidate", "CandidateDrawer", "CostOracle", "Verdict", "candidate_key",
           "space_distributions"]

Screen = Callable[[TrialConfig], "Screening"]


def candidate_key(params: Mapping[str, Any]) -> str:
    """A candidate's identity: its parameters as canonical JSON."""
    return json.dumps(dict(params), sort_keys=True, default=str)


@dataclass(frozen=True)
class Verdict:
    """What screening found: whether the candidate may train, and its costs.

    Attributes:
        feasible: Passes every cap (and builds).
        memory_mb: Predicted peak training memory (None: not predicted).
        size: Parameter count (None: the model did not build).
    """

    feasible: bool
    memory_mb: float | None
    size: int | None

    @classmethod
    def of(cls, screening: Screening) -> Verdict:
        """From the screen's answer (a rejected candidate keeps its prediction)."""
        pred = screening.prediction
        memory = pred.peak_memory_mb if pred is not None and pred.peak_memory_mb > 0 else None
        return cls(feasible=screening.rejection is None, memory_mb=memory,
                   size=pred.param_count if pred is not None else None)


@dataclass
class Candidate:
    """One candidate: its Optuna parameters, its config, and what is known of its cost.

    Attributes:
        params: The parameters as ``trial.params`` would hold them.
        config: What ``SearchSpace.suggest`` built from them.
        size: Parameter count (exact), None until counted.
        verdict: The screen's verdict, None until screened.
    """

    params: dict[str, Any]
    config: TrialConfig
    size: int | None = None
    verdict: Verdict | None = None

    @property
    def key(self) -> str:
        return candidate_key(self.params)

    @property
    def feasible(self) -> bool | None:
        """True/False once screened (a failed build is not feasible); None before."""
        return None if self.verdict is None else self.verdict.feasible

    @property
    def memory_mb(self) -> float | None:
        """Predicted peak training memory, once screened (None: not predicted)."""
        return None if self.verdict is None else self.verdict.memory_mb


def _scratch_study(seed: int) -> optuna.Study:
    """A throwaway in-memory study drawing at random. Its creation is not logged: the storage
    announces every new study at INFO, which would print a line per candidate pool."""
    storage = optuna.storages.InMemoryStorage()
    announcer = logging.getLogger("optuna.storages._in_memory")
    level = announcer.level
    announcer.setLevel(logging.WARNING)
    try:
        storage.create_new_study([StudyDirection.MAXIMIZE], "scratch")
    finally:
        announcer.setLevel(level)
    return optuna.Study(study_name="scratch", storage=storage,
                        sampler=optuna.samplers.RandomSampler(seed=seed))


def space_distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """Every parameter the space can draw, with its distribution, all families together."""
    study = _scratch_study(0)
    out: dict[str, BaseDistribution] = {}
    for family in space.families:
        if len(space.families) > 1:
            study.enqueue_trial({"family": family})
        trial = study.ask()
        space.suggest(trial)
        out.update(trial.distributions)
    if len(space.families) > 1:
        out["family"] = CategoricalDistribution(space.families)
    return out


class CandidateDrawer:
    """Draws candidates from a space: at random, or around given ones.

    Args:
        space: The compiled search space.
    """

    def __init__(self, space: SearchSpace):
        self.space = space
        self.distributions = space_distributions(space)

    def draw(self, n: int, seed: int, around: Sequence[Mapping[str, Any]] = ()) -> list[Candidate]:
        """``n`` random candidates, then one per entry of ``around``: those parameters kept,
        the others drawn (a parameter left out is drawn afresh, as is everything it
        conditions, e.g. a family's parameters when ``family`` is left out)."""
        study = _scratch_study(seed)
        for partial in around:
            study.enqueue_trial(dict(partial), skip_if_exists=False)
        out = []
        for _ in range(n + len(around)):
            trial = study.ask()
            cfg = self.space.suggest(trial)
            # Inert parameters (a learning rate its run never uses) take one fixed value, so
            # two candidates that would train identically are one candidate.
            out.append(Candidate(params=self.space.canonical(dict(trial.params)), config=cfg))
        return out[len(around):] + out[:len(around)]

    def nudge(self, params: Mapping[str, Any], rng: np.random.Generator, *, scale: float = 0.1
              ) -> dict[str, Any]:
        """A neighbour of ``params`` for :meth:`draw`'s ``around``: about half the numbers
        moved by N(0, ``scale``) of their range (log range for log distributions, on their
        step grid), a categorical switched with probability 0.15 (a switched family drops
        its parameters, so the new family's are drawn)."""
        out = dict(params)
        names = [n for n in params if n in self.distributions]
        if not names:
            return out
        moved = rng.random(len(names)) < 0.5
        moved[rng.integers(len(names))] = True
        for name, move in zip(names, moved, strict=True):
            dist = self.distributions[name]
            if isinstance(dist, CategoricalDistribution):
                if rng.random() < 0.15 and len(dist.choices) > 1:
                    out[name] = dist.choices[int(rng.integers(len(dist.choices)))]
            elif move and isinstance(dist, (FloatDistribution, IntDistribution)):
                out[name] = _nudged(dist, params[name], float(rng.normal(0.0, scale)))
        if "family" in out and out["family"] != params.get("family"):
            out = {k: v for k, v in out.items() if not k.startswith(f"{params['family']}.")}
        return out

    def recipes(self, n: int, seed: int) -> list[dict[str, Any]]:
        """``n`` settings of the training parameters (``train.*``) as a Latin hypercube: each
        parameter's range cut into ``n`` equal shares (log shares for log distributions), each
        share used once, the shares of different parameters paired at random. For a start-up:
        random recipes can give most of its trials the same poor learning rate or switch
        epoch, which the accuracy model then blames on their architectures. Empty dicts when
        the space searches no training parameter."""
        rng = np.random.default_rng(seed)
        rows: list[dict[str, Any]] = [{} for _ in range(n)]
        for name in sorted(training_params(self.distributions)):
            shares = rng.permutation(n)
            for row, share in zip(rows, shares, strict=True):
                row[name] = _at_quantile(self.distributions[name], (share + rng.random()) / n)
        return rows


def _nudged(dist: FloatDistribution | IntDistribution, value: float, shift: float) -> float | int:
    """``value`` moved by ``shift`` of the distribution's (log) range, kept on its grid."""
    low, high = (math.log(dist.low), math.log(dist.high)) if dist.log else (dist.low, dist.high)
    x = (math.log(value) if dist.log else value) + shift * (high - low)
    return _on_grid(dist, min(high, max(low, x)))


def _at_unit(dist: FloatDistribution | IntDistribution, unit: float) -> float | int:
    """The value at ``unit`` (0: low, 1: high) of the distribution's (log) range, on its grid."""
    low, high = (math.log(dist.low), math.log(dist.high)) if dist.log else (dist.low, dist.high)
    return _on_grid(dist, low + min(1.0, max(0.0, unit)) * (high - low))


def _on_grid(dist: FloatDistribution | IntDistribution, x: float) -> float | int:
    """``x``, a point of the distribution's (log) range, as one of its values."""
    x = math.exp(x) if dist.log else x
    step = dist.step
    if step:
        x = dist.low + round((x - dist.low) / step) * step
    x = min(dist.high, max(dist.low, x))
    return int(round(x)) if isinstance(dist, IntDistribution) else float(x)


def _at_quantile(dist: BaseDistribution, q: float) -> Any:
    """The value at quantile ``q`` in [0, 1) of a uniform draw from ``dist`` (log-uniform for
    log distributions; each choice or grid value an equal share)."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[min(int(q * len(dist.choices)), len(dist.choices) - 1)]
    if isinstance(dist, IntDistribution) and not dist.log:
        n = (dist.high - dist.low) // dist.step + 1
        return dist.low + min(int(q * n), n - 1) * dist.step
    return _at_unit(dist, q)


class CostOracle:
    """What a candidate costs: exact where known, estimated where a prediction is not worth it.

    Args:
        screen: The search's screen (size, predicted memory, caps); None: costs unknown.
        param_count: Exact parameter count of a config (cheap); None: taken from the screen.
        caps: The caps, to judge estimated candidates.
    """

    def __init__(self, screen: Screen | None = None,
                 param_count: Callable[[TrialConfig], int] | None = None,
                 caps: CapsConfig | None = None):
        self.screen_fn = screen
        self.param_count = param_count
        self.caps = caps or CapsConfig()
        self.archive: dict[str, Candidate] = {}  # every candidate screened, by key
        self._sizes: dict[str, int | None] = {}
        self.new_screens = 0  # screens run (the expensive calls), all time
        self.memory_known = False  # some candidate's memory is predicted: costs are memories
        self._memory_gp: GaussianProcess | None = None
        self._memory_gp_last: GaussianProcess | None = None  # a warm start for the next fit
        self._memory_fit: tuple[ParamEncoder, float, float] | None = None
        self._offset: float | None = None  # log(memory / size), when too few to fit a GP
        self._fitted: tuple[int, str] | None = None  # what the memory estimate was fitted to

    def __getstate__(self) -> dict[str, Any]:
        # Ray Tune pickles its searcher, and with it the study and this sampler; the screen
        # holds the estimator process, which cannot travel (the copy is never used to search).
        return {**self.__dict__, "screen_fn": None, "param_count": None}

    # -- exact ------------------------------------------------------------------------------
    @property
    def can_screen(self) -> bool:
        return self.screen_fn is not None

    def size(self, cand: Candidate) -> int | None:
        """The candidate's parameter count (exact; cached by model), None if unknown."""
        if cand.size is None:
            if cand.verdict is not None and cand.verdict.size is not None:
                cand.size = cand.verdict.size
            elif self.param_count is not None:
                key = json.dumps([cand.config.family, cand.config.model], sort_keys=True,
                                 default=str)
                if key not in self._sizes:
                    try:
                        self._sizes[key] = int(self.param_count(cand.config))
                    except ConfigError:  # a bad build: the screen rejects it with its reason
                        self._sizes[key] = None
                cand.size = self._sizes[key]
        return cand.size

    def screen(self, cand: Candidate) -> Candidate:
        """Screen the candidate (once per candidate: the archive remembers). Without a screen
        the verdict is the parameter cap alone, memory unknown."""
        known = self.archive.get(cand.key)
        if known is not None:
            cand.verdict = known.verdict
        elif self.screen_fn is not None:
            cand.verdict = Verdict.of(self.screen_fn(cand.config))
            self.new_screens += 1
            self.archive[cand.key] = cand
            self.memory_known |= cand.memory_mb is not None
        else:
            size = self.size(cand)
            cap = self.caps.max_params
            cand.verdict = Verdict(feasible=size is not None and (cap is None or size <= cap),
                                   memory_mb=None, size=size)
            self.archive[cand.key] = cand
        self.size(cand)
        return cand

    def known(self, cand: Candidate) -> Candidate:
        """The candidate with its verdict filled in if it was screened before."""
        if cand.verdict is None and cand.key in self.archive:
            cand.verdict = self.archive[cand.key].verdict
        return cand

    # -- estimated --------------------------------------------------------------------------
    def fit_memory(self, encoder: ParamEncoder, extra: Iterable[tuple[dict, float, int]] = ()) -> None:
        """Fit the memory estimate to every screening with a memory, plus ``extra``
        (params, memory MB, size) from the study's trials."""
        rows = [(c.params, c.memory_mb, self.size(c)) for c in self.archive.values()
                if c.memory_mb is not None and self.size(c)]
        seen = {candidate_key(p) for p, _, _ in rows}
        rows += [r for r in extra if candidate_key(r[0]) not in seen and r[1] and r[1] > 0 and r[2]]
        self.memory_known |= bool(rows)
        rows = rows[-200:]  # bound the fit (the latest screenings)
        signature = (len(rows), candidate_key(rows[-1][0]) if rows else "")
        if signature == self._fitted:
            return  # nothing new since the last fit
        self._fitted = signature
        self._memory_gp, self._offset = None, None
        if not rows:
            return
        log_mem = np.log([m for _, m, _ in rows])
        log_size = np.log([s for _, _, s in rows])
        self._offset = float(np.median(log_mem - log_size))
        if len(rows) < 4:
            return
        lo, hi = float(log_size.min()), float(log_size.max())
        x = np.array([np.append(encoder.encode(p), _unit(math.log(s), lo, hi)) for p, _, s in rows])
        warm = self._memory_gp_last.theta if self._memory_gp_last is not None else None
        self._memory_gp = GaussianProcess(seed=0).fit(x, log_mem, warm=warm)
        self._memory_gp_last = self._memory_gp
        self._memory_fit = (encoder, lo, hi)

    def estimate_log_memory(self, cands: Sequence[Candidate]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd of log memory (MB) per candidate: exact (sd 0) when screened, the fitted
        estimate otherwise, from the median memory per parameter when too few are known to fit
        (sd 1), NaN when nothing is known."""
        mu, sd = np.full(len(cands), np.nan), np.full(len(cands), np.nan)
        todo = []
        for i, c in enumerate(cands):
            self.known(c)
            if c.memory_mb is not None:
                mu[i], sd[i] = math.log(c.memory_mb), 0.0
            elif c.verdict is None and self.size(c):
                todo.append(i)
        if todo and self._memory_gp is not None and self._memory_fit is not None:
            encoder, lo, hi = self._memory_fit
            x = np.array([np.append(encoder.encode(cands[i].params),
                                    _unit(math.log(cands[i].size), lo, hi)) for i in todo])
            m, s = self._memory_gp.predict(x)
            mu[todo], sd[todo] = m, s
        elif todo and self._offset is not None:
            for i in todo:
                mu[i], sd[i] = math.log(cands[i].size) + self._offset, 1.0
        return mu, sd

    def feasible_probability(self, cand: Candidate, log_mem_mu: float, log_mem_sd: float) -> float:
        """Probability that the candidate passes the screen: 1/0 once screened."""
        if cand.feasible is not None:
            return 1.0 if cand.feasible else 0.0
        p = 1.0
        size = self.size(cand)
        if self.caps.max_params is not None and size is not None and size > self.caps.max_params:
            return 0.0
        cap = self.caps.gpu_ram_mb
        if cap is not None and math.isfinite(log_mem_mu):
            z = (math.log(cap) - log_mem_mu) / max(log_mem_sd, 1e-6)
            p *= 0.5 * math.erfc(-z / math.sqrt(2.0))
        return p


def _unit(v: float, lo: float, hi: float) -> float:
    """``v`` scaled to [0, 1] by the range [lo, hi] (0.5 for an empty range), unclipped."""
    return 0.5 if hi <= lo else (v - lo) / (hi - lo)

"""The cost-aware sampler: train the candidate expected to add most to the feasible front.

A candidate's memory and size are known before it trains (engine.search.screen); only its
accuracy is uncertain. So for each trial the sampler draws a pool of candidates, learns what
they cost (exactly for those worth a prediction, estimated for the rest: see
engine.samplers.candidates) and picks the one with the highest expected hypervolume improvement
of the feasible front (engine.samplers.hypervolume) under a Gaussian-process model of accuracy
fitted to every trained epoch of finished, pruned and running trials
(:class:`~engine.samplers.surrogate.CurveModel`). Candidates are screened before they are picked,
so nothing over a cap is ever asked for. The start-up trials are spread over the predicted
memory range instead (engine.samplers.startup), from the smallest feasible candidate to the cap.

The space is define-by-run and conditional (families), so the whole candidate is chosen when
the trial asks for its first parameter, stored on the trial (system attribute), and each
parameter is answered from it. Choosing then, not in ``before_trial``, keeps the work outside
the database lock the driver holds around ``study.ask``. A trial enqueued with fixed
parameters keeps them (any it lacks are drawn at random).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial

from engine.caps import CapsConfig
from engine.samplers.candidates import Candidate, CandidateDrawer, CostOracle, Screen
from engine.samplers.evidence import Evidence, Goals, read_study
from engine.samplers.features import FeatureScale, Front
from engine.samplers.hypervolume import expected_improvement, improvement_cells
from engine.samplers.startup import spread_pick
from engine.samplers.surrogate import CurveModel, ParamEncoder
from engine.space import SearchSpace
from engine.trial import TrialConfig
from storage import optuna_api, read_trials

if TYPE_CHECKING:
    from engine.spec import SearchSpec

__all__ = ["CostAwareSampler"]

PARAMS_ATTR = "cost_aware:params"  # the candidate chosen for a trial ({} if none)
INFO_ATTR = "cost_aware:info"  # how: {"phase", "seconds", "screens"}
_MAX_POINTS = 160  # accuracy observations the model is fitted to (a fit is ~0.3 s at 160)


class CostAwareSampler(BaseSampler):
    """Chooses each candidate by expected improvement of the feasible front, costs known.

    Args:
        space: The compiled search space (the candidates are drawn through it).
        objectives: (metric, direction) of each study objective, in order. The accuracy
            objective is modelled; ``peak_memory_mb`` and ``param_count`` objectives
            (minimised) are the costs. A maximised cost is left out of the acquisition.
        caps: The per-trial caps; the memory and size caps are the reference point of the
            costs (else 1.1x the largest cost seen).
        epochs: Epochs of a full trial (learning curves are read as fractions of it).
        n_startup: Trained trials spread over the memory range before the model chooses.
        seed: Makes the choices reproducible (given the same study history).
        pool_size: Fresh random candidates drawn per trial (besides variations of the front's
            members and screened candidates not yet trained).
        max_screens: Candidates screened (a memory prediction, 1-15 s each) per trial, at most,
            beyond which the sampler picks among those already screened.
        n_recipes: Training recipes of the most accurate trials tried on other architectures
            (0: none).
        explore_every: After the start-up, every this many-th trial is a fresh random
            candidate in the least-tried memory stratum (0: never).
        stratified_recipes: The start-up's training parameters form a Latin hypercube
            (:meth:`CandidateDrawer.recipes`) instead of random draws.
        warm_start: A finished study of the same space in the same storage whose trained
            trials the accuracy model also learns from (never this study's front).

    Without :meth:`attach`, costs are unknown and the sampler picks at random among its pool.
    """

    def __init__(self, space: SearchSpace, *, objectives: Sequence[tuple[str, str]],
                 caps: CapsConfig | None = None, epochs: int = 1, n_startup: int = 4,
                 seed: int | None = None, pool_size: int = 24, max_screens: int = 4,
                 n_recipes: int = 0, explore_every: int = 0,
                 stratified_recipes: bool = False, warm_start: str | None = None):
        self.space = space
        self.goals = Goals.of(objectives)
        self.caps = caps or CapsConfig()
        self.epochs = epochs
        self.n_startup = n_startup
        self.seed = seed if seed is not None else int(np.random.default_rng().integers(2**31))
        self.pool_size = pool_size
        self.max_screens = max_screens
        self.n_recipes = n_recipes
        self.explore_every = explore_every
        self.stratified_recipes = stratified_recipes
        self.warm_start = warm_start
        self._prior: Evidence | None = None  # the warm-start study, read once
        self._startup_recipes: list[dict[str, Any]] | None = None
        self.drawer = CandidateDrawer(space)
        self.encoder = ParamEncoder(self.drawer.distributions)
        self.oracle = CostOracle(caps=self.caps)
        self._fallback = RandomSampler(seed=self.seed)
        self._chosen: dict[int, dict[str, Any]] = {}  # trial id -> chosen params
        self._picked: set[str] = set()
        self._warm: np.ndarray | None = None  # last accuracy-model hyperparameters

    @classmethod
    def from_spec(cls, spec: SearchSpec) -> CostAwareSampler:
        """The sampler a spec asks for (``search.sampler: cost_aware``, tuned by
        ``search.cost_aware``): a quarter of the planned trials (at least 4) as start-up."""
        tuning = spec.search.cost_aware
        return cls(SearchSpace(spec), objectives=[(o.metric, o.direction) for o in spec.objectives],
                   caps=spec.constraints, epochs=spec.train.epochs,
                   n_startup=max(4, spec.planned_trials // 4), seed=spec.search.seed,
                   n_recipes=tuning.transfer_recipes, explore_every=tuning.explore_every,
                   stratified_recipes=tuning.stratified_recipes, warm_start=tuning.warm_start)

    def attach(self, screen: Screen, *, param_count: Callable[[TrialConfig], int] | None = None
               ) -> None:
        """Give the sampler the search's screen (memory, size, caps), and optionally a cheap
        exact parameter count (``CandidateScreen.param_count``)."""
        self.oracle.screen_fn = screen
        self.oracle.param_count = param_count

    # -- Optuna's sampler interface ---------------------------------------------------------
    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        tid = optuna_api.trial_id(trial)
        params = self._chosen.get(tid)
        if params is None:
            attrs = trial.system_attrs
            if "fixed_params" in attrs:  # enqueued: its own parameters, the rest at random
                params = {}
            else:
                params = attrs.get(PARAMS_ATTR)
                if params is None:
                    params = self._choose_and_record(study, trial)
            self._chosen[tid] = params
        if param_name in params and optuna_api.contains(param_distribution, params[param_name]):
            return params[param_name]  # else (e.g. not one of a categorical's choices) drawn
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: Any,
                    values: Sequence[float] | None) -> None:
        self._chosen.pop(optuna_api.trial_id(trial), None)

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()

    # -- choosing ---------------------------------------------------------------------------
    def _choose_and_record(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        t0 = time.perf_counter()
        screens = self.oracle.new_screens
        cand, phase = self.choose(study, trial.number)
        params = dict(cand.params) if cand is not None else {}
        if cand is not None:
            self._picked.add(cand.key)
        tid = optuna_api.trial_id(trial)
        optuna_api.set_system_attr(study, tid, PARAMS_ATTR, params)
        optuna_api.set_system_attr(study, tid, INFO_ATTR, {
            "phase": phase, "seconds": round(time.perf_counter() - t0, 3),
            "screens": self.oracle.new_screens - screens})
        return params

    def choose(self, study: optuna.Study, number: int) -> tuple[Candidate | None, str]:
        """The candidate for trial ``number`` and how it was chosen (``startup``, ``ehvi``,
        ``explore``, ``random``); None leaves every parameter to a random draw."""
        rng = np.random.default_rng([self.seed, number])
        ev = read_study(read_trials(study), self.goals, self.epochs, self.oracle,
                        exclude=number, canonical=self.space.canonical)
        prior = self._prior_evidence(study)
        modelled = (ev.n_trained + len(prior.trained) >= self.n_startup
                    and self.goals.accuracy is not None)
        explore = modelled and self._explores(ev.n_trained - self.n_startup)
        if explore:
            pool = self._unseen(ev, self.drawer.draw(self.pool_size, int(rng.integers(2**31))))
        elif not modelled and self.stratified_recipes:
            recipe = self._recipes()[ev.n_trained % self.n_startup]
            pool = self._unseen(ev, self.drawer.draw(0, int(rng.integers(2**31)),
                                                     [recipe] * self.pool_size))
        else:
            pool = self._pool(ev, rng)
        if not pool:
            return None, "random"
        if not self.oracle.can_screen and self.oracle.param_count is None:
            return pool[int(rng.integers(len(pool)))], "random"
        self.oracle.fit_memory(self.encoder, ev.memory_rows + prior.memory_rows)
        learnt = replace(ev, trained=ev.trained + prior.trained)  # the front stays this study's
        fitted = self._fit_model(learnt, pool) if modelled and not explore else None
        if fitted is None:
            pick = spread_pick(pool, ev.spread_costs(self.oracle), self.oracle,
                               n_strata=max(1, self.n_startup), budget=self.max_screens, rng=rng)
            return pick, "explore" if explore else "startup"
        return self._best(pool, ev, *fitted), "ehvi"

    def _prior_evidence(self, study: optuna.Study) -> Evidence:
        """The warm-start study's trained trials (numbered below zero, so this study's own come
        first in the model), read once; empty without a warm start."""
        if self.warm_start is None:
            return Evidence()
        if self._prior is None:
            other = optuna.load_study(study_name=self.warm_start,
                                      storage=optuna_api.storage(study))
            ev = read_study(read_trials(other), self.goals, self.epochs, self.oracle,
                            canonical=self.space.canonical)
            self._prior = Evidence(trained=[replace(o, number=-1 - o.number) for o in ev.trained],
                                   memory_rows=ev.memory_rows)
        return self._prior

    def _recipes(self) -> list[dict[str, Any]]:
        """The start-up's training recipes, one per start-up trial (a Latin hypercube)."""
        if self._startup_recipes is None:
            self._startup_recipes = self.drawer.recipes(max(1, self.n_startup), self.seed)
        return self._startup_recipes

    def _explores(self, k: int) -> bool:
        """Whether the ``k``-th trial after the start-up is an exploration: a fresh random
        candidate (random recipe too) in the least-tried memory stratum, not the model's
        choice. The model can be confidently wrong: early trials confound an architecture with
        the recipe it happened to get, and expected improvement then never revisits it (measured
        on CIFAR, docs/BENCHMARKS.md 6.1); interleaved random picks keep correcting it."""
        return self.explore_every > 0 and k % self.explore_every == self.explore_every - 1

    def _pool(self, ev: Evidence, rng: np.random.Generator) -> list[Candidate]:
        """Fresh draws, variations of the front's members, the best training recipes on other
        architectures, and screened feasible candidates not yet trained; never a candidate a
        trial already has."""
        around = []
        front = ev.front_params[:8]
        for params in front:
            # Two neighbours of each front member: one near it, one with a third redrawn.
            around.append(self.drawer.nudge(params, rng))
            names = list(params)
            keep = rng.random(len(names)) > 0.3
            if keep.all() and names:
                keep[rng.integers(len(names))] = False
            around.append({n: params[n] for n, k in zip(names, keep, strict=True) if k})
        # The recipes (lr, switch epoch, ...) of the most accurate trials, carried to the
        # front's architectures and to fresh ones. Memory is the architecture's, while much of
        # the accuracy is the recipe's: a front member trained with a poor recipe sits low
        # (measured on CIFAR, docs/BENCHMARKS.md 6.1), and a random draw pairs each new
        # architecture with a random recipe. The model then scores these like any candidate.
        for recipe in ev.best_recipes(self.n_recipes):
            for params in front:
                around.append({**{n: v for n, v in params.items() if n not in recipe}, **recipe})
            around += [dict(recipe), dict(recipe)]  # fresh architectures (and family)
        fresh = self.drawer.draw(self.pool_size, int(rng.integers(2**31)), around)
        kept = [c for c in self.oracle.archive.values() if c.feasible][-32:]
        return self._unseen(ev, fresh + kept)

    def _unseen(self, ev: Evidence, cands: list[Candidate]) -> list[Candidate]:
        """``cands`` without repeats and without any a trial already has."""
        out, keys = [], set(ev.seen | self._picked)
        for c in cands:
            if c.key not in keys:
                keys.add(c.key)
                out.append(self.oracle.known(c))
        return out

    # -- the model and the acquisition ------------------------------------------------------
    def _fit_model(self, ev: Evidence, pool: list[Candidate]
                   ) -> tuple[CurveModel, FeatureScale] | None:
        """The accuracy model fitted to the trained trials' curves, and the feature scaling it
        was fitted with (None: fewer than two trials with a finished epoch)."""
        obs = [o for o in ev.trained if o.curve and o.size is not None]
        if len({o.number for o in obs}) < 2:
            return None
        # Front members first, then the latest trials, until the point budget is spent.
        on_front = ev.front_numbers
        obs.sort(key=lambda o: (o.number not in on_front, -o.number))
        rows, feats, fracs, accs, weights = 0, [], [], [], []
        scale = FeatureScale.of(ev, pool, self.oracle)
        for o in obs:
            if rows + len(o.curve) > _MAX_POINTS:
                break
            f = scale.features(self.encoder, o.params, o.memory, o.size)
            for i, (frac, acc) in enumerate(o.curve):
                last = i == len(o.curve) - 1
                feats.append(f)
                fracs.append(frac)
                accs.append(self.goals.signed(acc))
                weights.append(1.0 if (last and o.final) else float(len(o.curve)))
            rows += len(o.curve)
        model = CurveModel(seed=self.seed).fit(np.array(feats), np.array(fracs), np.array(accs),
                                               np.array(weights), warm=self._warm)
        self._warm = model.theta
        return model, scale

    def _best(self, pool: list[Candidate], ev: Evidence, model: CurveModel,
              scale: FeatureScale) -> Candidate | None:
        """Score the pool; screen the most promising unscreened candidates while one could
        beat the best screened one (``max_screens`` at most; three times that while none
        screened is feasible); return the best screened feasible candidate."""
        pending = [o for o in ev.pending if o.size is not None]
        if pending:
            f = np.array([scale.features(self.encoder, o.params, o.memory, o.size)
                          for o in pending])
            believed, _ = model.predict(f)
            model = model.assuming(f, believed)
            ev = ev.with_believed(pending, believed)
        front = Front.of(ev, self.goals, self.caps, pool, self.oracle)
        score = self._scores(pool, model, scale, front)
        if not self.oracle.can_screen:  # costs from the parameter count alone
            return pool[int(np.argmax(score))] if np.isfinite(score).any() else None
        screens = 0
        while True:
            done = [i for i, c in enumerate(pool) if c.feasible]
            best = max(done, key=lambda i: score[i]) if done else None
            todo = [i for i, c in enumerate(pool) if c.feasible is None and np.isfinite(score[i])
                    and (best is None or score[i] > score[best])]
            limit = self.max_screens if best is not None else 3 * self.max_screens
            if not todo or screens >= limit:
                return pool[best] if best is not None else None
            i = max(todo, key=lambda j: score[j])
            self.oracle.screen(pool[i])
            screens += 1
            score[i] = self._scores([pool[i]], model, scale, front)[0]

    def _scores(self, cands: list[Candidate], model: CurveModel, scale: FeatureScale,
                front: Front) -> np.ndarray:
        """P(feasible) x expected hypervolume improvement per candidate (-inf: its cost or
        features are unknown; 0 for a candidate screened infeasible)."""
        mu, sd = self.oracle.estimate_log_memory(cands)
        out = np.full(len(cands), -np.inf)
        rows, feats = [], []
        for i, c in enumerate(cands):
            size = self.oracle.size(c)
            memory = math.exp(mu[i]) if np.isfinite(mu[i]) else None
            if size is None or (self.oracle.memory_known and memory is None):
                continue
            costs = front.scaled({"peak_memory_mb": memory, "param_count": size})
            if costs is None:
                continue
            rows.append((i, costs, self.oracle.feasible_probability(c, mu[i], sd[i])))
            feats.append(scale.features(self.encoder, c.params, memory, size))
        if not rows:
            return out
        mean, std = model.predict(np.array(feats))
        for (i, costs, p), m, s in zip(rows, mean, std, strict=True):
            volumes, heights = improvement_cells(front.acc, front.costs, costs)
            out[i] = p * expected_improvement(float(m), float(s), volumes, heights)
        return out

    def predict_accuracy(self, study: optuna.Study, params: Sequence[dict[str, Any]],
                         memory: Sequence[float | None], size: Sequence[int]
                         ) -> tuple[np.ndarray, np.ndarray] | None:
        """What the accuracy model, fitted to ``study`` now, believes of candidates (mean and
        sd at the full epoch budget); None while it has too little to fit. For inspection and
        tests."""
        ev = read_study(read_trials(study), self.goals, self.epochs, self.oracle,
                        canonical=self.space.canonical)
        pool = [Candidate(dict(p), None, size=s) for p, s in zip(params, size, strict=True)]
        fitted = self._fit_model(ev, pool)
        if fitted is None:
            return None
        model, scale = fitted
        f = np.array([scale.features(self.encoder, p, m, s)
                      for p, m, s in zip(params, memory, size, strict=True)])
        mean, sd = model.predict(f)
        return np.array([self.goals.signed(m) for m in mean]), sd

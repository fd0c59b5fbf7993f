"""Samplers and schedulers: which candidate a search trains next, and which trials it stops.

A **sampler** is an Optuna ``BaseSampler`` with a builder ``(spec, seed) -> sampler``
registered by name in ``SAMPLERS`` (:mod:`engine.samplers.registry`); the spec's
``search.sampler`` names it (``engine.spec.SAMPLERS`` lists the names, a test checks that the
two agree). The driver holds it to these rules:

1. **Proposals go through Optuna.** The driver asks the study for a trial and the search space
   (:mod:`engine.space`) makes the only ``trial.suggest_*`` calls, so a sampler answers
   ``sample_relative`` / ``sample_independent``. An enqueued trial (``fixed_params`` in its
   system attributes: the start-up design, a re-queued interrupted trial) keeps its
   parameters.
2. **It reads the study as recorded** (:class:`storage.TrialRecord`): objective values in the
   study's order; constraints (<= 0 satisfied), also on candidates screened out before
   training, whose values are placeholders (accuracy 0, the predicted size); intermediate
   values, which are always validation accuracy by epoch; PRUNED trials stopped by a
   scheduler; RUNNING trials of every driver of the study. Which trials count as trained is
   :attr:`storage.TrialRecord.counts_as_trained`, nothing else.
3. **It is reproducible from its seed.** Each driver of a study builds its sampler with its
   own stream seed (:func:`~engine.samplers.registry.stream_seed`), so peers never propose the
   same parameters side by side.
4. **Costs come from the driver's screen.** A sampler with
   ``attach(screen, param_count=...)`` gets the search's candidate screen (predicted memory,
   parameter count, caps) before the first ask.
5. **Its own notes are system attributes** under its own prefix (``cost_aware:params``), never
   user attributes: those are the study record.

A **scheduler** is a Ray Tune trial scheduler with a builder ``(spec) -> scheduler`` in
``SCHEDULERS``. It reads results through :mod:`engine.protocol` (``Report``, and the driver's
``Prediction`` in the ``Assignment``) and only stops trials; the driver records a stopped
trial as PRUNED.

Modules: ``registry`` (the two registries and the stock samplers), ``cost_aware`` (the default:
a cost-aware Bayesian sampler) with its parts ``candidates``, ``evidence``, ``features``,
``surrogate``, ``hypervolume``, ``startup`` (the start-up design, also used for tpe and
nsga2), and ``pareto_asha`` (successive halving on the accuracy/cost front).
"""

from engine.samplers.registry import (
    SAMPLERS,
    SCHEDULERS,
    make_sampler,
    make_scheduler,
    startup_trials,
    stream_seed,
)

__all__ = ["SAMPLERS", "SCHEDULERS", "make_sampler", "make_scheduler", "startup_trials",
           "stream_seed"]

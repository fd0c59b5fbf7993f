"""``engine search``: the driver that runs a spec's trials on Ray Tune into an Optuna study.

It reads as the steps of a search: load the data, prepare the study and the budget, start Ray
and the memory estimator, run the trials, sweep what the run left open.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import optuna

from engine.data import DataBundle, load_data, prepare_data
from engine.errors import ConfigError, ResourceError, StorageError
from engine.search.budget import SearchBudget, finished_trials
from engine.search.study import prepare_study
from engine.spec import SearchSpec
from storage import check_search_storage, pareto_numbers, prepare_database, redact
from storage.locks import database_lock

__all__ = ["SearchOutcome", "run_search"]


@dataclass(frozen=True)
class SearchOutcome:
    """What a finished ``run_search`` leaves behind."""

    study_name: str
    storage_url: str
    n_new: int
    seconds: float
    pareto: list[int]
    stopped: bool = False  # ended by a signal (Ctrl-C, SIGTERM) before its budget was spent


def run_search(spec: SearchSpec, *, storage_url: str | None = None, n_trials: int | None = None,
               ray_address: str | None = None,
               progress: Callable[[str], None] = print) -> SearchOutcome:
    """Run (or resume) the search a spec describes.

    Several drivers may run on one study at once (on one machine or several): the budget is
    counted in the study, and each driver leaves the others' trials alone.

    Args:
        spec: A validated spec (see :func:`engine.load_spec`).
        storage_url: Overrides ``study.storage``.
        n_trials: Overrides ``search.n_trials`` (the total of trained trials in the study).
            ``search.budget_epochs`` likewise counts the epochs of earlier runs; the time
            budget ``search.budget_minutes`` is this run's wall clock.
        ray_address: Join an existing Ray cluster instead of starting one.
        progress: Receives one line per event (trial started, epoch, outcome, estimates).

    Raises:
        ConfigError: ``n_trials`` below 1.
        StorageError: the storage cannot hold a search, or holds a different one.
    """
    t0 = time.perf_counter()
    started_at = time.time()
    if n_trials is not None and n_trials < 1:
        raise ConfigError(f"--n-trials must be at least 1 (got {n_trials}); leave it out to use "
                          "search.n_trials")
    # load
    url = check_search_storage(storage_url or spec.study.storage)  # absolute: workers run elsewhere
    from engine.search import cluster

    # A cluster address nothing answers, or resources no local Ray can give: refused now.
    cluster.precheck(ray_address, spec.resources.cpus, spec.resources.gpus)
    # Download or check the data before anything is written: a missing or unreachable data
    # set stops the run with no database created.
    prepare_data(spec.data, progress)
    data = load_data(spec.data)  # decoded before the first write: a bad image writes nothing
    prepare_database(url)  # every table, once, before Ray
    progress(f"data: {spec.data.dataset} train={len(data.train_y)} val={len(data.val_y)} "
             f"{data.in_channels}x{data.image_size}x{data.image_size}, {data.num_classes} classes")
    # prepare
    study = prepare_study(spec, url, data, n_trials=n_trials)
    s = spec.search
    minutes = s.budget_minutes
    budget = SearchBudget(n_trials=n_trials if n_trials is not None else s.n_trials,
                          budget_epochs=s.budget_epochs, epochs_per_trial=spec.train.epochs,
                          max_rejected=s.max_rejected,
                          deadline=None if minutes is None else started_at + 60 * minutes)
    state = budget.read(study)
    progress(f"study {spec.study.name!r} in {redact(url)}: {budget.describe(state)}"
             + (f"; time budget {minutes:g} min" if minutes is not None else ""))
    if budget.why_not(state) is not None and state.running == 0:
        return SearchOutcome(spec.study.name, url, 0, time.perf_counter() - t0, _pareto(study))
    # start, run, sweep
    n_new, finished = _run_trials(spec, url, data, study, budget, ray_address, progress)
    return SearchOutcome(spec.study.name, url, n_new, time.perf_counter() - t0, _pareto(study),
                         stopped=not finished)


def _run_trials(spec: SearchSpec, url: str, data: DataBundle, study: optuna.Study,
                budget: SearchBudget, ray_address: str | None,
                progress: Callable[[str], None]) -> tuple[int, bool]:
    """Run trials on Ray Tune until the budget is spent or the run is stopped; returns how
    many new trials finished and whether the budget (not a signal) ended the run."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from engine.memory import MemoryPredictor
    from engine.protocol import METRIC, SearchContext
    from engine.samplers.registry import make_scheduler
    from engine.search import cluster
    from engine.search.bridge import ErrorRecorder, OptunaBridge
    from engine.search.liveness import DriverHeartbeat
    from engine.search.screen import CandidateScreen
    from engine.search.worker import run_trial
    from engine.space import SearchSpace

    finished_before = finished_trials(study)
    r = spec.resources
    started = cluster.start_ray(ray_address,
                                object_store_bytes=4 * (data.train_x.nbytes + data.val_x.nbytes))
    run_dir = tempfile.mkdtemp(prefix="wavesearch-tune-")
    stack = contextlib.ExitStack()
    heartbeat = None
    try:
        devices, per_device_mb = cluster.cluster_gpus()
        plan = cluster.plan_hardware(r.gpus, devices=devices, memory_per_device_mb=per_device_mb)
        progress(plan.note)
        cluster.check_resources(r.cpus)
        predictor = stack.enter_context(MemoryPredictor())
        screen = CandidateScreen(data, spec.constraints, predictor=predictor,
                                 node_mem_mb=cluster.largest_node_offer(), device=plan.device)
        space = SearchSpace(spec)
        _preflight(space, screen)
        prepare_sampler(study, spec, space, screen, url, progress)
        bridge = OptunaBridge(study, space, spec.objective_names, budget=budget,
                              progress=progress, screen=screen,
                              lock=functools.partial(database_lock, url),
                              max_concurrent=spec.search.max_concurrent)
        heartbeat = DriverHeartbeat(study, running_trials=bridge.running_trial_ids,
                                    status=lambda: {"eta_s": bridge.eta_s(),
                                                    "deadline": budget.deadline})
        bridge.driver_id = heartbeat.id
        heartbeat.start()
        ctx = SearchContext(storage_url=url, study_name=spec.study.name, caps=spec.constraints,
                            cpus=r.cpus, device=plan.device, deadline=budget.deadline)
        trainable = tune.with_resources(tune.with_parameters(run_trial, data=data, ctx=ctx),
                                        cluster.trial_resources(r.cpus, plan))
        rounds = 0
        while True:
            rounds += 1
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=ConcurrencyLimiter(bridge, max_concurrent=spec.search.max_concurrent),
                    scheduler=make_scheduler(spec), num_samples=-1, metric=METRIC, mode="max",
                    # On the CPU a trial process is reused by the next trial: starting one
                    # (Python, torch, the data) costs seconds, 3x the whole run for small
                    # models (8 digits trials: 88 s fresh, 28 s reused). Tune drops the cached
                    # process when the round ends, so a driver waiting for its peers holds no
                    # CPU. On CUDA each trial gets a fresh process, so an out-of-memory trial
                    # cannot leave its allocator state to the next.
                    reuse_actors=plan.device == "cpu"),
                run_config=tune.RunConfig(name=f"wavesearch-{rounds}", storage_path=run_dir,
                                          verbose=0, callbacks=[ErrorRecorder(bridge)],
                                          failure_config=tune.FailureConfig(max_failures=0)),
            )
            tuner.fit()  # returns early (no exception) when Tune is interrupted by SIGINT
            bridge.sweep()
            # Budget all taken, a peer's trial still running: wait outside Tune (so this
            # driver holds no CPU or GPU) and go again if that trial frees budget.
            if not (bridge.waiting_for_peers and bridge.wait_for_peers()):
                break
        if bridge.finished and finished_trials(study) == 0 and bridge.smallest_rejected:
            raise _nothing_fits(bridge.smallest_rejected, "every candidate screened")
    finally:
        if heartbeat is not None:
            heartbeat.stop("finished" if bridge.finished else "stopped")
        stack.close()  # stops the estimator subprocess
        cluster.stop_ray(started)
        shutil.rmtree(run_dir, ignore_errors=True)
    # A stop (Ctrl-C, SIGTERM) after the last trial started still cut that trial short.
    return finished_trials(study) - finished_before, bridge.finished and not bridge.interrupted


def _preflight(space, screen) -> None:
    """Stop before any training when not even the space's smallest corner fits the caps."""
    from engine.protocol import Infeasible
    from engine.space import corner_candidates

    caps = screen.caps
    if caps.gpu_ram_mb is None and caps.max_params is None and screen.node_mem_mb is None:
        return
    rejected = []
    for cfg in corner_candidates(space):
        verdict = screen(cfg)
        if verdict.rejection is None:
            return
        if isinstance(verdict.rejection, Infeasible):
            rejected.append((cfg, verdict.rejection))
    if rejected:  # (corners that cannot even be built are left to the search to record)
        raise _nothing_fits(min(rejected, key=lambda r: r[1].peak_memory_mb),
                            "the space's smallest corner")


def prepare_sampler(study: optuna.Study, spec: SearchSpec, space, screen, url: str,
                     progress: Callable[[str], None]) -> None:
    """Give the sampler what is known before training: the cost-aware sampler screens its own
    candidates; tpe and nsga2 start from a design that fits the caps and spans the predicted
    memory range (engine.samplers.startup), enqueued once, by the first driver of a new study.
    ``random`` stays plain random search."""
    from engine.samplers.cost_aware import CostAwareSampler
    from engine.samplers.registry import startup_trials
    from engine.samplers.startup import startup_design

    if isinstance(study.sampler, CostAwareSampler):
        study.sampler.attach(screen, param_count=screen.param_count)
        if study.sampler.warm_start is not None:
            check_warm_start(study, spec, study.sampler.warm_start)
        return
    if spec.search.sampler == "random":
        return
    with database_lock(url):
        if study.get_trials(deepcopy=False):
            return
        design = startup_design(space, screen, startup_trials(spec), spec.search.seed,
                                caps=spec.constraints, param_count=screen.param_count)
        for params in design:
            study.enqueue_trial(params)
    progress(f"start-up design: {len(design)} candidates under the caps, spread over the "
             "predicted memory range")


def check_warm_start(study: optuna.Study, spec: SearchSpec, name: str) -> None:
    """Refuse a warm start from a study that is not there or searched another space.

    Raises:
        StorageError: no such study in this storage, or its model and training sections differ.
    """
    from storage import StudyRecord, optuna_api

    if name == spec.study.name:
        raise StorageError(f"search.cost_aware.warm_start names this study ({name!r}); name a "
                           "finished study of the same space")
    try:
        other = optuna.load_study(study_name=name, storage=optuna_api.storage(study))
    except KeyError:
        names = [s.study_name for s in optuna_api.storage(study).get_all_studies()]
        raise StorageError(f"search.cost_aware.warm_start: no study named {name!r} in this "
                           f"storage; studies there: {', '.join(sorted(names)) or 'none'}") from None
    theirs = StudyRecord.read(other).spec or {}
    ours = spec.model_dump(mode="json")
    differ = [k for k in ("model", "train") if theirs.get(k) != ours.get(k)]
    if differ:
        raise StorageError(f"search.cost_aware.warm_start: study {name!r} searched another space "
                           f"(its {' and '.join(differ)} sections differ); warm-start from a study "
                           "of the same space run at another cap or data size")


def _nothing_fits(smallest, how: str) -> ResourceError:
    cfg, why = smallest
    shown = ", ".join(f"{k}={v}" for k, v in cfg.model.items())
    return ResourceError(
        f"no candidate fits the caps ({how}): the smallest found, {cfg.family} ({shown}, batch "
        f"{cfg.train.batch_size}), needs {why.peak_memory_mb:.1f} MB predicted and "
        f"{why.param_count:,} parameters: {why.reason}; raise constraints.gpu_ram_mb / "
        "max_params, or shrink the space (smaller model ranges or batch size)")


def _pareto(study: optuna.Study) -> list[int]:
    return sorted(pareto_numbers(study))

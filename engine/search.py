"""``engine search``: the driver that runs a spec's trials on Ray Tune into an Optuna study."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from engine.data import DataBundle, load_data
from engine.errors import ResourceError, StorageError
from engine.sampling import make_sampler, make_scheduler
from engine.space import SearchSpace
from engine.spec import SearchSpec, spec_hash
from storage import load_study, normalize_url, open_storage, redact, schema

__all__ = ["SearchOutcome", "prepare_study", "run_search"]

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class SearchOutcome:
    """What a finished ``run_search`` leaves behind."""

    study_name: str
    storage_url: str
    n_new: int
    seconds: float
    pareto: list[int]


def prepare_study(spec: SearchSpec, url: str, data: DataBundle) -> optuna.Study:
    """Create the study, or reopen it for a resume after checking it is the same search.

    Trials a crash left RUNNING are failed and their parameters re-queued.
    """
    storage = open_storage(url)
    name = spec.study.name
    h = spec_hash(spec)
    try:
        existing = load_study(url, name)
    except StorageError:
        existing = None
    if existing is not None:
        old = existing.user_attrs.get(schema.STUDY_SPEC_HASH)
        if old != h:
            raise StorageError(
                f"study {name!r} in {redact(url)} was begun with a different search space "
                f"(spec hash {old} != {h}); to start a new study, change study.name in the spec "
                "(or pass --study NEW_NAME); to continue the old one, restore its spec")
    study = optuna.create_study(study_name=name, storage=storage, sampler=make_sampler(spec),
                                directions=spec.directions, load_if_exists=True)
    if existing is None:
        study.set_user_attr(schema.STUDY_SPEC_HASH, h)
        study.set_user_attr(schema.STUDY_SPEC, spec.model_dump(mode="json"))
        study.set_user_attr(schema.STUDY_OBJECTIVES, spec.objective_names)
        study.set_user_attr(schema.STUDY_CONSTRAINTS, spec.constraints.model_dump())
        study.set_user_attr(schema.STUDY_DATA, {
            "dataset": spec.data.dataset, "in_channels": data.in_channels,
            "image_size": data.image_size, "num_classes": data.num_classes,
            "classes": list(data.classes), "mean": list(data.mean), "std": list(data.std)})
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        if t.state == TrialState.RUNNING:
            storage.set_trial_user_attr(t._trial_id, schema.TRIAL_FAIL_REASON, schema.INTERRUPTED_REASON)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            study.enqueue_trial(t.params, skip_if_exists=False)
    return study


def _finished_count(study: optuna.Study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False, states=_FINISHED)
               if t.user_attrs.get(schema.TRIAL_FAIL_REASON) != schema.INTERRUPTED_REASON)


def _spent_epochs(study: optuna.Study) -> int:
    """Epochs trained by every trial of the study so far (one intermediate value per epoch)."""
    return sum(len(t.intermediate_values) for t in study.get_trials(deepcopy=False))


def _init_ray(data: DataBundle, address: str | None) -> bool:
    """Start (or join) Ray; returns True when this process started it."""
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_RESULT_BUFFER_LENGTH", "1")
    if ray.is_initialized():
        return False
    data_bytes = data.train_x.nbytes + data.val_x.nbytes
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
        return True
    ray.init(address="local", num_cpus=max(1, os.cpu_count() or 1), include_dashboard=False,
             log_to_driver=False, logging_level="WARNING", resources=_gpu_memory_resource(),
             object_store_memory=max(128 * 2**20, 4 * data_bytes))
    return True


GPU_MEM = "gpu_mem_mb"  # custom Ray resource: MiB of GPU memory a node offers / a trial needs


def _gpu_memory_resource() -> dict[str, float]:
    """This machine's GPU memory as a Ray resource, so trials are packed by predicted memory.
    On a cluster, start each GPU node with ``--resources '{"gpu_mem_mb": <MiB>}'``."""
    import torch

    if not torch.cuda.is_available():
        return {}
    total = sum(torch.cuda.get_device_properties(i).total_memory
                for i in range(torch.cuda.device_count()))
    return {GPU_MEM: total // 2**20}  # Ray resources are whole numbers


def _largest_node_offer() -> float | None:
    """The largest gpu_mem_mb any live node offers (None when no node offers it)."""
    import ray

    offers = [n["Resources"].get(GPU_MEM) for n in ray.nodes() if n.get("Alive")]
    offers = [o for o in offers if o]
    return max(offers) if offers else None


def _trial_resources(spec: SearchSpec):
    """Per-trial Ray resources; where the cluster offers gpu_mem_mb, the predicted memory too."""
    import ray

    base = {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus}
    if GPU_MEM not in ray.cluster_resources():
        return base

    def per_trial(config: dict) -> dict:
        # Rounded up: Ray wants whole quantities, and a rounding must never over-pack a GPU.
        need = max(1, math.ceil(float(config.get("screen", {}).get("peak_memory_mb", 0.0))))
        return {**base, GPU_MEM: need}

    return per_trial


def _check_resources(spec: SearchSpec) -> None:
    import ray

    have = ray.cluster_resources()
    r = spec.resources
    if r.gpus > have.get("GPU", 0.0):
        raise ResourceError(
            f"resources.gpus = {r.gpus} per trial, but the Ray cluster has "
            f"{have.get('GPU', 0.0):g} GPUs, so the trial would wait forever; set resources.gpus: 0 "
            "or add a GPU node")
    if r.cpus > have.get("CPU", 0.0):
        raise ResourceError(
            f"resources.cpus = {r.cpus} per trial, but the Ray cluster has {have.get('CPU', 0.0):g} "
            "CPUs; lower resources.cpus")


def run_search(spec: SearchSpec, *, storage_url: str | None = None, n_trials: int | None = None,
               ray_address: str | None = None,
               progress: Callable[[str], None] = print) -> SearchOutcome:
    """Run (or resume) the search a spec describes.

    Args:
        spec: A validated spec (see :func:`engine.load_spec`).
        storage_url: Overrides ``study.storage``.
        n_trials: Overrides ``search.n_trials`` (the total, counting finished trials).
            ``search.budget_epochs`` likewise counts the epochs of earlier runs.
        ray_address: Join an existing Ray cluster instead of starting a local one.
        progress: Receives one line per event (trial started, epoch, outcome).
    """
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from engine.bridge import ErrorRecorder, OptunaBridge
    from engine.memory_service import MemoryPredictor
    from engine.screen import CandidateScreen
    from engine.worker import TrialContext, run_trial

    t0 = time.perf_counter()
    url = normalize_url(storage_url or spec.study.storage)  # absolute: workers run elsewhere
    open_storage(url)  # fail fast on a bad URL, before data or Ray
    s = spec.data
    data = load_data(s.request())
    progress(f"data: {s.dataset} train={len(data.train_y)} val={len(data.val_y)} "
             f"{data.in_channels}x{data.image_size}x{data.image_size}, {data.num_classes} classes")
    study = prepare_study(spec, url, data)
    total = n_trials or spec.search.n_trials
    finished, spent = _finished_count(study), _spent_epochs(study)
    todo = None if total is None else total - finished
    budget = spec.search.budget_epochs
    parts = [f"{finished} finished"] + ([] if todo is None else [f"{max(0, todo)} to run"])
    if budget is not None:
        parts.append(f"{spent} of {budget} epochs trained")
    progress(f"study {spec.study.name!r} in {redact(url)}: {', '.join(parts)}")
    if (todo is not None and todo <= 0) or (budget is not None and budget - spent < spec.train.epochs):
        return SearchOutcome(spec.study.name, url, 0, time.perf_counter() - t0, _pareto(study))

    started = _init_ray(data, ray_address)
    run_dir = tempfile.mkdtemp(prefix="wavesearch-tune-")
    stack = contextlib.ExitStack()
    try:
        _check_resources(spec)
        predictor = stack.enter_context(MemoryPredictor())
        screen = CandidateScreen(data, gpu_ram_mb=spec.constraints.gpu_ram_mb,
                                 max_params=spec.constraints.max_params, predictor=predictor,
                                 node_mem_mb=_largest_node_offer())
        bridge = OptunaBridge(study, SearchSpace(spec), spec.objective_names, n_trials=todo,
                              epochs=spec.train.epochs, budget_epochs=budget, spent_epochs=spent,
                              progress=progress, screen=screen)
        ctx = TrialContext(storage_url=url, study_name=spec.study.name, cpus=spec.resources.cpus,
                           gpus=spec.resources.gpus, gpu_ram_mb=spec.constraints.gpu_ram_mb,
                           max_params=spec.constraints.max_params)
        scheduler = make_scheduler(spec)
        trainable = tune.with_resources(tune.with_parameters(run_trial, data=data, ctx=ctx),
                                        _trial_resources(spec))
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(bridge, max_concurrent=spec.search.max_concurrent),
                scheduler=scheduler, num_samples=-1 if todo is None else todo, metric="val_accuracy", mode="max"),
            run_config=tune.RunConfig(name="wavesearch", storage_path=run_dir, verbose=0,
                                      callbacks=[ErrorRecorder(bridge)],
                                      failure_config=tune.FailureConfig(max_failures=0)),
        )
        tuner.fit()  # returns early (no exception) when Tune is interrupted by SIGINT
        bridge.sweep()
        n_new = _finished_count(study) - finished
    finally:
        stack.close()  # stops the estimator subprocess
        if started:
            ray.shutdown()
        shutil.rmtree(run_dir, ignore_errors=True)
    return SearchOutcome(spec.study.name, url, n_new, time.perf_counter() - t0, _pareto(study))


def _pareto(study: optuna.Study) -> list[int]:
    from storage import pareto_numbers

    return sorted(pareto_numbers(study))

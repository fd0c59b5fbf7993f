"""The Ray cluster a search runs on: starting or joining it, and what one trial asks of it.

Trials are packed on GPUs by predicted memory through a custom resource, ``gpu_mem_mb``: a
local GPU offers its memory automatically; cluster nodes declare theirs with
``ray start --resources '{"gpu_mem_mb": <MiB>}'``. A trial asking for more of anything than
the cluster has would wait forever, so such requests are refused up front.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from engine.errors import ResourceError
from engine.search.protocol import Assignment

__all__ = ["GPU_MEM", "check_resources", "largest_node_offer", "start_ray", "stop_ray",
           "trial_resources"]

GPU_MEM = "gpu_mem_mb"  # custom Ray resource: MiB of GPU memory a node offers / a trial needs


def start_ray(address: str | None, *, object_store_bytes: int) -> bool:
    """Start a local Ray, or join the cluster at ``address``; True when this process did.

    Args:
        address: A cluster address (``ray start --head`` prints it), or None for a local Ray.
        object_store_bytes: Object store size of a local Ray (the data set travels through it).
    """
    import ray

    # One line per result and no buffering, so every epoch reaches the driver as it ends.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_RESULT_BUFFER_LENGTH", "1")
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
        return True
    ray.init(address="local", num_cpus=max(1, os.cpu_count() or 1), include_dashboard=False,
             log_to_driver=False, logging_level="WARNING", resources=_local_gpu_memory(),
             object_store_memory=max(128 * 2**20, object_store_bytes))
    return True


def stop_ray(started: bool) -> None:
    """Shut down the Ray this process started (its own processes only); a joined one stays."""
    if started:
        import ray

        ray.shutdown()


def _local_gpu_memory() -> dict[str, float]:
    """This machine's GPU memory as a Ray resource (none without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    total = sum(torch.cuda.get_device_properties(i).total_memory
                for i in range(torch.cuda.device_count()))
    return {GPU_MEM: total // 2**20}  # Ray resources are whole numbers


def largest_node_offer() -> float | None:
    """The largest gpu_mem_mb any live node offers (None when no node offers it)."""
    import ray

    offers = [n["Resources"].get(GPU_MEM) for n in ray.nodes() if n.get("Alive")]
    offers = [o for o in offers if o]
    return max(offers) if offers else None


def trial_resources(cpus: float, gpus: float) -> dict[str, float] | Callable[[dict], dict]:
    """Per-trial Ray resources; where the cluster offers gpu_mem_mb, the predicted memory too."""
    import ray

    base = {"cpu": cpus, "gpu": gpus}
    if GPU_MEM not in ray.cluster_resources():
        return base

    def per_trial(config: dict[str, Any]) -> dict[str, float]:
        # Rounded up: Ray wants whole quantities, and a rounding must never over-pack a GPU.
        need = max(1, math.ceil(Assignment.from_tune(config).prediction.peak_memory_mb))
        return {**base, GPU_MEM: need}

    return per_trial


def check_resources(cpus: float, gpus: float) -> None:
    """Refuse per-trial requests that no node can ever satisfy.

    Raises:
        ResourceError: naming the setting, what the cluster has, and the fix.
    """
    import ray

    have = ray.cluster_resources()
    if gpus > have.get("GPU", 0.0):
        raise ResourceError(
            f"resources.gpus = {gpus} per trial, but the Ray cluster has {have.get('GPU', 0.0):g} "
            "GPUs, so the trial would wait forever; set resources.gpus: 0 or add a GPU node")
    if cpus > have.get("CPU", 0.0):
        raise ResourceError(
            f"resources.cpus = {cpus} per trial, but the Ray cluster has {have.get('CPU', 0.0):g} "
            "CPUs; lower resources.cpus")

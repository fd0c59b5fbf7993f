"""The Ray cluster a search runs on: starting or joining it, the hardware plan, and what one
trial asks of it.

Trials are packed on GPUs by predicted memory through a custom resource, ``gpu_mem_mb``: a
local GPU offers its memory automatically; cluster nodes declare theirs with
``ray start --resources '{"gpu_mem_mb": <MiB>}'``. A trial asking for more of anything than
the cluster has would wait forever, so such requests are refused up front.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.errors import ResourceError
from engine.protocol import Assignment
from engine.search import reaper

__all__ = ["GPU_MEM", "HardwarePlan", "check_resources", "cluster_gpus", "largest_node_offer",
           "bind_to_loopback", "check_address", "plan_hardware", "precheck",
           "require_token_auth", "start_ray", "stop_ray",
           "trial_resources"]


@dataclass(frozen=True)
class HardwarePlan:
    """Where trials train and what GPU share each takes.

    Attributes:
        device: ``cuda`` or ``cpu``.
        gpus_per_trial: A fixed number of GPUs per trial, or None for a share sized by the
            trial's predicted memory (``resources.gpus: auto``).
        memory_per_device_mb: The smallest GPU's memory (sizes the shares); None on CPU.
        note: One line for the user saying what was chosen and why.
    """

    device: str
    gpus_per_trial: float | None
    memory_per_device_mb: float | None
    note: str

    def gpu_share(self, predicted_mb: float) -> float:
        """The GPUs a trial asks Ray for: its fixed count, or its memory's share of a device
        (at least 1%, at most one device)."""
        if self.device != "cuda":
            return 0.0
        if self.gpus_per_trial is not None:
            return self.gpus_per_trial
        share = predicted_mb / (self.memory_per_device_mb or predicted_mb or 1.0)
        return min(1.0, max(0.01, math.ceil(share * 100) / 100))


def plan_hardware(gpus: float | str, *, devices: float,
                  memory_per_device_mb: float | None) -> HardwarePlan:
    """Resolve ``resources.gpus`` against the GPUs the cluster has.

    Args:
        gpus: The spec's ``resources.gpus``: ``"auto"`` or GPUs per trial.
        devices: GPUs in the cluster (Ray's ``GPU`` resource).
        memory_per_device_mb: Memory of the smallest GPU, MiB (None if unknown).

    Raises:
        ResourceError: a fixed GPU count the cluster cannot give.
    """
    if gpus == "auto":
        if devices <= 0:
            return HardwarePlan("cpu", None, None, "no GPU found: trials train on the CPU "
                                "(resources.gpus: auto)")
        mem = f"{memory_per_device_mb:.0f} MB" if memory_per_device_mb else "unknown memory"
        return HardwarePlan("cuda", None, memory_per_device_mb,
                            f"{devices:g} GPU(s) of {mem}: each trial takes a share sized by its "
                            "predicted memory and trains on CUDA with mixed precision")
    gpus = float(gpus)
    if gpus > devices:
        raise ResourceError(
            f"resources.gpus = {gpus} per trial, but the Ray cluster has {devices:g} GPUs, so "
            "the trial would wait forever; set resources.gpus: auto (or 0), or add a GPU node")
    if gpus == 0:
        return HardwarePlan("cpu", 0.0, None, "trials train on the CPU (resources.gpus: 0)")
    return HardwarePlan("cuda", gpus, memory_per_device_mb,
                        f"each trial takes {gpus:g} GPU(s) (resources.gpus)")

GPU_MEM = "gpu_mem_mb"  # custom Ray resource: MiB of GPU memory a node offers / a trial needs
ADDRESS_TIMEOUT_S = 5.0  # a Ray head that does not accept a connection in this long is not there
# What an HTTP/2 client sends first; a gRPC server (Ray's GCS) answers with a SETTINGS frame.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_H2_SETTINGS = 4


def precheck(address: str | None, cpus: float, gpus: float | str) -> None:
    """What can be checked before a search writes anything: that a cluster address answers
    as a Ray head, and that a local Ray could ever give one trial its CPUs and GPUs (a
    joined cluster's resources are checked once joined: :func:`check_resources`).

    Raises:
        ResourceError: naming the address or the setting, and the fix.
    """
    if address:
        check_address(address)
        return
    have = os.cpu_count() or 1
    if cpus > have:
        raise ResourceError(f"resources.cpus = {cpus:g} per trial, but this machine has {have} "
                            "CPUs, so the trial would wait forever; lower resources.cpus")
    if gpus != "auto" and float(gpus) > 0:
        import torch

        devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if float(gpus) > devices:
            raise ResourceError(f"resources.gpus = {float(gpus)} per trial, but this machine has "
                                f"{devices} GPUs, so the trial would wait forever; set "
                                "resources.gpus: auto (or 0), or run on a machine with GPUs")


def _split_address(address: str) -> tuple[str, int] | None:
    """(host, port) of ``host:port`` or ``[v6]:port``; None for what is not that form."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_address(address: str, timeout_s: float = ADDRESS_TIMEOUT_S) -> None:
    """Refuse a ``--ray-address`` that nothing answers as a Ray head within ``timeout_s``
    (``ray.init`` would retry for minutes). ``auto`` and ``ray://`` addresses are Ray's to
    resolve and are not checked.

    Raises:
        ResourceError: naming the address, what happened and the fix.
    """
    if address == "auto" or address.startswith("ray://"):
        return
    fix = ("fix: give the address `ray start --head` printed (HEAD_IP:6379), check that the "
           "head is running and reachable, or leave out --ray-address to start a local Ray")
    parts = _split_address(address)
    if parts is None or not parts[0] or not 0 < parts[1] < 65536:
        raise ResourceError(f"--ray-address {address!r} is not HOST:PORT; {fix}")
    try:
        with socket.create_connection(parts, timeout=timeout_s) as conn:
            conn.settimeout(timeout_s)
            conn.sendall(_H2_PREFACE)
            frame = conn.recv(9)
    except (OSError, ValueError) as e:  # refused, unreachable, timed out, unknown host
        why = "no answer" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise ResourceError(f"--ray-address {address}: nothing answers there ({why} within "
                            f"{timeout_s:g} s); {fix}") from None
    if len(frame) < 4 or frame[3] != _H2_SETTINGS:
        raise ResourceError(f"--ray-address {address}: something answers there, but not a Ray "
                            f"head (its GCS speaks gRPC); {fix}")
    # An HTTP/2 server answers: ask it for the cluster id as Ray would (quick, now that we
    # know it answers; a proxy or another gRPC service says so at once).
    from ray._raylet import GcsClient

    try:
        GcsClient(address=address)
    except Exception as e:  # Ray's RpcError and friends, from its C++ client
        raise ResourceError(f"--ray-address {address}: no Ray head answers there "
                            f"({type(e).__name__}: {(str(e).splitlines() or [''])[0][:160]}); "
                            f"{fix}") from None


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
    # ERROR: Ray's warnings (e.g. that token authentication is on, which it is by design)
    # would drown the search's own one-line messages.
    if not address or _is_loopback(address):
        bind_to_loopback()
    with _keep_sigterm_handler():
        if address:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            return True
        require_token_auth()
        before = reaper.children(os.getpid())
        ray.init(address="local", num_cpus=max(1, os.cpu_count() or 1), include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR", resources=_local_gpu_memory(),
                 object_store_memory=max(128 * 2**20, object_store_bytes))
    reaper.start(reaper.children(os.getpid()) - before)
    return True


# Ray's single-machine mode, the one it uses on macOS and Windows: the node's IP is 127.0.0.1.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def bind_to_loopback() -> None:
    """Make the Ray this process starts (or joins on 127.0.0.1) listen on loopback only.

    On Linux Ray takes the LAN address as the node IP, and its gRPC servers (GCS, raylet,
    driver, workers) listen on every interface, the runtime-env agent on the LAN address;
    ``_node_ip_address="127.0.0.1"`` alone is rewritten to the LAN address by ``ray.init``.
    Ray's single-machine mode (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) keeps 127.0.0.1 as
    the node IP, and then every one of them binds 127.0.0.1 (measured with Ray 2.60). The
    variable is set for the processes Ray starts, and Ray's constant for this process, which
    may have read it when ray was first imported.
    """
    os.environ[LOOPBACK_ENV] = "0"
    import ray._private.ray_constants as ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def require_token_auth() -> None:
    """Token authentication for the local Ray, always: Ray's default for a new local cluster,
    unless the environment switched it off (``RAY_AUTH_MODE=disabled``). Set for the processes
    Ray starts, and Ray's configuration re-read for this one (as Ray does when it turns the
    default on), since it was read when ray was first imported."""
    os.environ["RAY_AUTH_MODE"] = "token"
    from ray._raylet import Config

    Config.initialize("")


def _is_loopback(address: str) -> bool:
    parts = _split_address(address)
    return parts is not None and (parts[0] in ("localhost", "::1") or parts[0].startswith("127."))


@contextlib.contextmanager
def _keep_sigterm_handler() -> Iterator[None]:
    """Put the process's SIGTERM handler back after ``ray.init``, which replaces it with
    ``sys.exit`` (and its C++ core adds a handler that dumps a stack trace and aborts): the
    ``engine search`` command stops on SIGTERM as on Ctrl-C, through its own handler."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if previous is not None:  # None: set outside Python, nothing to put back
            signal.signal(signal.SIGTERM, previous)


def stop_ray(started: bool) -> None:
    """Shut down the Ray this process started (its own processes only); a joined one stays.
    Then the reaper is released: what ``ray.shutdown`` left running, it stops."""
    if started:
        import ray

        ray.shutdown()
        reaper.stop()


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


def cluster_gpus() -> tuple[float, float | None]:
    """(GPUs in the cluster, memory of the smallest GPU in MiB or None) from Ray's resources:
    a node's ``gpu_mem_mb`` divided by its ``GPU`` count."""
    import ray

    per_device = [n["Resources"][GPU_MEM] / n["Resources"]["GPU"] for n in ray.nodes()
                  if n.get("Alive") and n["Resources"].get("GPU") and n["Resources"].get(GPU_MEM)]
    return ray.cluster_resources().get("GPU", 0.0), (min(per_device) if per_device else None)


def trial_resources(cpus: float, plan: HardwarePlan) -> dict[str, float] | Callable[[dict], dict]:
    """Per-trial Ray resources: CPUs, the plan's GPU share, and where the cluster offers
    gpu_mem_mb, the predicted memory (so trials sharing a GPU fit it together)."""
    import ray

    packs = GPU_MEM in ray.cluster_resources()
    if plan.device != "cuda" and not packs:
        return {"cpu": cpus, "gpu": 0.0}

    def per_trial(config: dict[str, Any]) -> dict[str, float]:
        predicted = Assignment.from_tune(config).prediction.peak_memory_mb
        out = {"cpu": cpus, "gpu": plan.gpu_share(predicted)}
        if packs:
            # Rounded up: Ray wants whole quantities, and a rounding must never over-pack.
            out[GPU_MEM] = max(1, math.ceil(predicted))
        return out

    return per_trial


def check_resources(cpus: float) -> None:
    """Refuse a per-trial CPU request that no node can ever satisfy (GPUs: plan_hardware).

    Raises:
        ResourceError: naming the setting, what the cluster has, and the fix.
    """
    import ray

    have = ray.cluster_resources()
    if cpus > have.get("CPU", 0.0):
        raise ResourceError(
            f"resources.cpus = {cpus} per trial, but the Ray cluster has {have.get('CPU', 0.0):g} "
            "CPUs; lower resources.cpus")

"""The Ray Tune trainable: the thin adapter between Ray and the plain training function.

It builds the candidate, trains it while reporting every epoch to Tune, and on the last epoch
uploads the weights to the study's artifact store (reachable by URL from any machine). Every
message is a :class:`~engine.protocol.Report`; failures are reported as outcomes with a
reason, never raised, so the driver records them and the study goes on.
"""

from __future__ import annotations

import io
import os
import platform
import tempfile
import time
import traceback
from typing import Any

import torch

from engine.data import DataBundle
from engine.errors import TrialFailure, WaveSearchError
from engine.models.probe import probe_logits
from engine.protocol import (
    Assignment,
    Complete,
    Failed,
    FinalMetrics,
    Infeasible,
    Prediction,
    Progress,
    Pruned,
    Report,
    RunInfo,
    SearchContext,
)
from engine.train import EpochReport, StepProgress, TrainResult, train_model

__all__ = ["enforce_cap", "oom_outcome", "run_trial", "serialize_weights"]


def serialize_weights(model: torch.nn.Module) -> bytes:
    """The model's state_dict as bytes that ``torch.load(weights_only=True)`` reads safely."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def _upload_weights(ctx: SearchContext, optuna_trial_id: int, blob: bytes) -> str:
    import optuna

    from storage import SQLArtifactStore, open_storage

    storage = open_storage(ctx.storage_url)
    trial = storage.get_trial(optuna_trial_id)
    store = SQLArtifactStore(ctx.storage_url)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"trial-{trial.number}-weights.pt")
        with open(path, "wb") as f:
            f.write(blob)
        try:
            return optuna.artifacts.upload_artifact(
                artifact_store=store, file_path=path, study_or_trial=trial, storage=storage,
                mimetype="application/octet-stream")
        finally:
            store.dispose()


def run_trial(config: dict[str, Any], data: DataBundle, ctx: SearchContext) -> None:
    """Ray Tune function trainable; ``config`` is an :class:`Assignment` in Tune's form."""
    from ray import tune

    t0 = time.perf_counter()
    job = Assignment.from_tune(config)
    cfg = job.config
    use_cuda = ctx.device == "cuda" and torch.cuda.is_available()
    device = "cuda" if use_cuda else "cpu"
    torch.set_num_threads(max(1, int(ctx.cpus)))
    torch.manual_seed(cfg.train.seed)  # the same config rebuilds the same initial weights
    run = RunInfo(device=device, host=platform.node(), started_at=time.time(),
                  node=_ray_node_id())
    last = Report(epoch=0, val_accuracy=float("nan"), run=run)

    def finish(outcome) -> None:
        tune.report(Report(epoch=last.epoch, val_accuracy=last.val_accuracy, run=run,
                           phase=last.phase, outcome=outcome).to_tune())

    try:
        from engine.models import create_model

        model = create_model(cfg.family, **cfg.model_kwargs(data))
        if use_cuda:
            enforce_cap(ctx.caps.gpu_ram_mb)
            torch.cuda.reset_peak_memory_stats()

        def on_epoch(r: EpochReport) -> None:
            nonlocal last
            last = Report(epoch=r.epoch, val_accuracy=r.val_accuracy, run=run, phase=r.optimizer,
                          train_loss=r.train_loss, epoch_s=r.seconds)
            if r.epoch < cfg.train.epochs:  # the last epoch is reported with its outcome
                tune.report(last.to_tune())
                if ctx.deadline is not None and time.time() + r.seconds > ctx.deadline:
                    raise _OutOfTime(f"cut at the time budget after epoch {r.epoch} of "
                                     f"{cfg.train.epochs}: the next epoch would end after the "
                                     "deadline")

        def on_step(p: StepProgress) -> None:
            tune.report(Progress(p.epoch, p.step, p.steps, p.seconds, p.images_per_s,
                                 last.epoch, last.val_accuracy).to_tune())

        result = train_model(model, data, cfg.train, device=device, on_epoch=on_epoch,
                             on_step=on_step)
        finish(Complete(_final_metrics(ctx, job, model, result, use_cuda, t0,
                                       (data.in_channels, data.image_size))))
    except _OutOfTime as e:
        finish(Pruned(str(e)))
    except TrialFailure as e:
        finish(Failed(str(e)))
    except torch.OutOfMemoryError as e:
        # Over the cap (or the device): recorded infeasible so the sampler learns from it;
        # Tune discards this worker process, and with it the CUDA caching allocator's state.
        finish(oom_outcome(e, device, ctx.caps.gpu_ram_mb, job.prediction))
    except WaveSearchError as e:
        finish(Failed(str(e)))
    except Exception as e:  # recorded, not raised: a failed trial must not end the study
        where = traceback.extract_tb(e.__traceback__)[-1]
        finish(Failed(f"{type(e).__name__}: {e} (at {os.path.basename(where.filename)}:"
                      f"{where.lineno})"))


def _ray_node_id() -> str:
    import ray

    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray (a test calling run_trial directly): no node
        return ""


class _OutOfTime(Exception):
    """Raised from the epoch callback to end training at the time budget."""


def enforce_cap(gpu_ram_mb: float | None) -> None:
    """Limit this process's CUDA allocations to the cap (MiB): beyond it PyTorch raises
    OutOfMemoryError, which the trial records as infeasible (:func:`oom_outcome`)."""
    if gpu_ram_mb is None or not torch.cuda.is_available():
        return
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, gpu_ram_mb * 2**20 / total))


def oom_outcome(error: torch.OutOfMemoryError, device: str, gpu_ram_mb: float | None,
                prediction: Prediction) -> Infeasible:
    """The record of a trial that ran out of memory: infeasible, with what it had allocated."""
    cuda = device == "cuda" and torch.cuda.is_available()
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0
    cap = gpu_ram_mb if gpu_ram_mb is not None else peak
    return Infeasible(
        reason=f"out of memory while training on {device} (allocated {peak:.0f} MB at the "
               f"failure): {str(error).splitlines()[0]}",
        violations={"gpu_ram_mb": max(1.0, peak - cap)}, param_count=prediction.param_count,
        peak_memory_mb=prediction.peak_memory_mb, memory_method=prediction.memory_method)


def _final_metrics(ctx: SearchContext, job: Assignment, model: torch.nn.Module,
                   result: TrainResult, use_cuda: bool, t0: float,
                   probe_shape: tuple[int, int]) -> FinalMetrics:
    pred = job.prediction
    peak_mb, method, reserved = pred.peak_memory_mb, pred.memory_method, None
    if use_cuda:
        peak_mb, method = torch.cuda.max_memory_allocated() / 2**20, "measured"
        reserved = torch.cuda.max_memory_reserved() / 2**20
    return FinalMetrics(
        val_accuracy=result.val_accuracy, param_count=pred.param_count, peak_memory_mb=peak_mb,
        memory_method=method, violations=ctx.caps.violations(peak_mb, pred.param_count),
        weights_artifact_id=_upload_weights(ctx, job.optuna_trial_id, serialize_weights(model)),
        probe_logits=probe_logits(model, *probe_shape),
        wall_time_s=time.perf_counter() - t0, switched_at=result.switched_at,
        peak_reserved_mb=reserved)

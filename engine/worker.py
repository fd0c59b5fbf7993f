"""The Ray Tune trainable: the thin adapter between Ray and the plain training function.

It builds the candidate, checks it against the caps before training, trains it while
reporting every epoch to Tune, and on the last epoch uploads the weights to the study's
artifact store (reachable by URL from any machine). Failures are reported as results with a
reason, never raised, so the driver records them and the study goes on.
"""

from __future__ import annotations

import io
import os
import platform
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Any

import torch

from engine.data import DataBundle
from engine.errors import TrialFailure, WaveSearchError
from engine.screen import cap_violations
from engine.space import TrialConfig
from engine.train import EpochReport, train_model

__all__ = ["TrialContext", "run_trial", "serialize_weights"]


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a search shares (picklable, sent once through the object store)."""

    storage_url: str
    study_name: str
    cpus: float = 1.0
    gpus: float = 0.0
    gpu_ram_mb: float | None = None
    max_params: int | None = None


def serialize_weights(model: torch.nn.Module) -> bytes:
    """The model's state_dict as bytes that ``torch.load(weights_only=True)`` reads safely."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def _upload_weights(ctx: TrialContext, optuna_trial_id: int, blob: bytes) -> str:
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


def run_trial(config: dict[str, Any], data: DataBundle, ctx: TrialContext) -> None:
    """Ray Tune function trainable. ``config`` holds ``trial`` (a TrialConfig dict) and ids."""
    from ray import tune

    t0 = time.perf_counter()
    cfg = TrialConfig.from_dict(config["trial"])
    optuna_trial_id = int(config["optuna_trial_id"])
    use_cuda = ctx.gpus > 0 and torch.cuda.is_available()
    device = "cuda" if use_cuda else "cpu"
    torch.set_num_threads(max(1, int(ctx.cpus)))
    torch.manual_seed(cfg.train.seed)  # the same config rebuilds the same initial weights
    # Tune checks that every result carries the search metric; NaN marks "not measured".
    base = {"device": device, "host": platform.node(), "val_accuracy": float("nan"),
            "run_started_at": time.time()}
    last_epoch = 0
    try:
        from engine.models import create_model

        model = create_model(cfg.family, **cfg.model, in_channels=data.in_channels,
                             num_classes=data.num_classes, image_size=data.image_size)
        # Size and predicted memory come from the driver's screening (engine.screen).
        base.update(config["screen"])
        if use_cuda:
            _enforce_cap(ctx)
            torch.cuda.reset_peak_memory_stats()

        def on_epoch(r: EpochReport) -> None:
            nonlocal last_epoch
            last_epoch = r.epoch
            metrics = {**base, "epoch": r.epoch, "val_accuracy": r.val_accuracy,
                       "train_loss": r.train_loss, "phase": r.optimizer, "epoch_s": r.seconds}
            if r.epoch == cfg.train.epochs:  # last epoch: everything the trial leaves behind
                metrics.update(_final_metrics(ctx, model, optuna_trial_id, use_cuda, base, t0,
                                              (data.in_channels, data.image_size)))
            tune.report(metrics)

        train_model(model, data, cfg.train, device=device, on_epoch=on_epoch,
                    augment=_augmenter(cfg))
    except TrialFailure as e:
        tune.report({**base, "epoch": last_epoch, "failed": True, "fail_reason": str(e)})
    except torch.OutOfMemoryError as e:
        # Over the cap (or the device): recorded infeasible so the sampler learns from it;
        # Tune discards this worker process, and with it the CUDA caching allocator's state.
        peak = torch.cuda.max_memory_allocated() / 2**20 if use_cuda else 0.0
        cap = ctx.gpu_ram_mb if ctx.gpu_ram_mb is not None else peak
        tune.report({**base, "epoch": last_epoch, "infeasible": True,
                     "state_reason": f"out of memory while training on {device} (allocated "
                                     f"{peak:.0f} MB at the failure): {str(e).splitlines()[0]}",
                     "constraint_violations": {"gpu_ram_mb": max(1.0, peak - cap)}})
    except WaveSearchError as e:
        tune.report({**base, "epoch": last_epoch, "failed": True, "fail_reason": str(e)})
    except Exception as e:  # recorded, not raised: the study must go on (STYLE rule 8)
        where = traceback.extract_tb(e.__traceback__)[-1]
        tune.report({**base, "epoch": last_epoch, "failed": True,
                     "fail_reason": f"{type(e).__name__}: {e} (at {os.path.basename(where.filename)}:"
                                    f"{where.lineno})"})


def _enforce_cap(ctx: TrialContext) -> None:
    """Limit this process's CUDA allocations to the spec's cap: beyond it PyTorch raises
    OutOfMemoryError, which the trial records as infeasible."""
    if ctx.gpu_ram_mb is None or not torch.cuda.is_available():
        return
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, ctx.gpu_ram_mb * 2**20 / total))


def _augmenter(cfg: TrialConfig):
    """The batch augmentation of a trial, or None when every option is off."""
    from engine.augment import AugmentConfig, BatchAugment

    aug = AugmentConfig(**cfg.train.augment)
    if not (aug.crop_padding or aug.flip or aug.cutout):
        return None
    return BatchAugment(aug)


def probe_logits(model: torch.nn.Module, in_channels: int, image_size: int) -> list[list[float]]:
    """Logits of ``model`` (eval mode) on the fixed probe input that its checkpoint carries."""
    from engine.export import probe_input

    device = next(iter(model.parameters())).device
    with torch.no_grad():
        return model.eval()(probe_input(in_channels, image_size).to(device)).float().cpu().tolist()


def _final_metrics(ctx: TrialContext, model: torch.nn.Module, optuna_trial_id: int,
                   use_cuda: bool, base: dict[str, Any], t0: float,
                   probe_shape: tuple[int, int]) -> dict[str, Any]:
    out: dict[str, Any] = {"completed": True}  # ("done" is reserved by Tune)
    peak_mb = base["peak_memory_mb"]
    if use_cuda:
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
        out.update(peak_memory_mb=peak_mb, memory_method="measured",
                   peak_reserved_mb=torch.cuda.max_memory_reserved() / 2**20)
    out["constraint_violations"] = cap_violations(peak_mb, base["param_count"],
                                                  gpu_ram_mb=ctx.gpu_ram_mb,
                                                  max_params=ctx.max_params)
    out["weights_artifact_id"] = _upload_weights(ctx, optuna_trial_id, serialize_weights(model))
    out["probe_logits"] = probe_logits(model, *probe_shape)
    out["wall_time_s"] = time.perf_counter() - t0
    return out

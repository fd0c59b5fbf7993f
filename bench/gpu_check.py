"""One GPU check: the figures only a CUDA device can give, in one command under 8 minutes.

    PYTHONUNBUFFERED=1 python bench/gpu_check.py --data cifar10-jpeg.zip --out gpu_check.json

Steps (each with its own time allowance; the table says what ran and what was cut):

1. **memory**: predicted peak (fake tensors, CUDA's multi-tensor optimizer) against
   ``torch.cuda.max_memory_allocated`` of a real step, per family (goal: within 15%).
2. **oom**: a candidate over a per-process cap really runs out of memory and is recorded
   infeasible by the worker's own code (``engine.search.worker.oom_outcome``).
3. **packing**: two trials' processes on one GPU at once, each capped to its share.
4. **precision**: WaveMix-Lite-64/6 training throughput, fp32 against bf16 autocast.
5. **cifar**: WaveMix-Lite-64/6 with DualOpT on CIFAR-10 towards 90% test accuracy: the time
   to reach it, or the accuracy reached when the allowance runs out.

Needs torch, numpy, pydantic, PyWavelets, pytorch_wavelets and Pillow; no Ray, no Optuna.
``--plan`` prints the steps and their allowances and exits (works without a GPU).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# (step, seconds allowed) - 7.5 min in all, under the 8-minute goal.
PLAN: list[tuple[str, float]] = [("memory", 60), ("oom", 20), ("packing", 40),
                                 ("precision", 40), ("cifar", 290)]
MEMORY_CASES: dict[str, dict[str, Any]] = {
    "wavemix": {"final_dim": 64, "depth": 6, "level": 1, "ff_channel": 64, "mult": 2},
    "wavemix-l3": {"final_dim": 64, "depth": 4, "level": 3, "ff_channel": 64, "mult": 2},
    "cxv-nystrom": {"dim": 64, "depth": 2, "heads": 2, "head_dim": 32, "attention": "nystrom"},
    "cxv-efficient": {"dim": 64, "depth": 2, "heads": 2, "head_dim": 32,
                      "attention": "efficient"},
    "resnet18": {}, "convmixer": {"dim": 128, "depth": 4}, "vit": {},
}
GOAL_MEMORY_ERROR = 0.15
GOAL_ACCURACY = 0.90


@dataclass
class Row:
    """One line of the table (and one entry of the JSON)."""

    step: str
    what: str
    figure: str
    ok: bool | None = None  # None: a measurement without a goal
    detail: dict[str, Any] = field(default_factory=dict)


def family_of(case: str) -> str:
    """The registered family a memory case uses ("cxv-nystrom" -> "cxv")."""
    return case.split("-", 1)[0]


def memory_error(predicted: float, measured: float) -> float:
    """Relative error of a prediction against a measurement (0.1 = 10%)."""
    return abs(predicted - measured) / max(measured, 1.0)


def format_table(rows: list[Row]) -> str:
    """The rows as one markdown table."""
    out = ["| step | what | figure | goal met |", "|---|---|---|---|"]
    for r in rows:
        met = "-" if r.ok is None else ("yes" if r.ok else "no")
        out.append(f"| {r.step} | {r.what} | {r.figure} | {met} |")
    return "\n".join(out)


def run_steps(steps: list[tuple[str, float]], runners: dict[str, Callable[[float], list[Row]]],
              clock: Callable[[], float] = time.monotonic) -> list[Row]:
    """Run each step within its allowance; a step that raises is reported, not fatal, and
    the time a step leaves unused goes to the next."""
    rows: list[Row] = []
    carry = 0.0
    for name, allowance in steps:
        budget = allowance + carry
        start = clock()
        try:
            rows.extend(runners[name](budget))
        except Exception as e:  # one broken step must not cost the others
            rows.append(Row(name, "failed", f"{type(e).__name__}: {str(e).splitlines()[0][:120]}",
                            ok=False))
        carry = max(0.0, budget - (clock() - start))
    return rows


# -- the steps (CUDA) ---------------------------------------------------------------------
def _step_memory(budget: float) -> list[Row]:
    import torch

    from engine.memory import CudaCalibration, MemoryPredictor, measure_training_peak_cuda
    from engine.models import create_model
    from engine.train import TrainConfig
    from engine.train.optim import build_optimizer

    rows, deadline = [], time.monotonic() + budget
    with MemoryPredictor(calibration=CudaCalibration()) as predictor:
        for case, config in MEMORY_CASES.items():
            if time.monotonic() > deadline:
                rows.append(Row("memory", case, "not run (time)", ok=None))
                continue
            family = family_of(case)
            dims = {"in_channels": 3, "image_size": 32, "num_classes": 10}
            pred = predictor.predict(family, config, batch_size=128, optimizer="adamw",
                                     **dims).peak_bytes
            model = create_model(family, **config, **dims).cuda().train()
            opt = build_optimizer("adamw", model.parameters(), TrainConfig(epochs=1))
            batch = (torch.randn(128, 3, 32, 32, device="cuda"),
                     torch.randint(0, 10, (128,), device="cuda"))
            measure_training_peak_cuda(model, batch, opt)  # warm-up: optimizer state exists
            measured = measure_training_peak_cuda(model, batch, opt).peak_bytes
            err = memory_error(pred, measured)
            rows.append(Row("memory", f"{case}, batch 128", f"predicted {pred / 2**20:.0f} MB, "
                            f"allocated {measured / 2**20:.0f} MB ({err:.1%})",
                            ok=err <= GOAL_MEMORY_ERROR,
                            detail={"predicted": pred, "measured": measured}))
            del model, opt, batch
            torch.cuda.empty_cache()
    return rows


def _oom_child(cap_mb: float, queue) -> None:
    import torch

    from engine.models import create_model
    from engine.protocol import Prediction
    from engine.search.worker import enforce_cap, oom_outcome

    enforce_cap(cap_mb)
    model = create_model("wavemix", final_dim=256, depth=8, level=1, ff_channel=256,
                         image_size=32).cuda()
    try:
        x = torch.randn(1024, 3, 32, 32, device="cuda")
        model(x).sum().backward()
        queue.put({"infeasible": False})
    except torch.OutOfMemoryError as e:
        out = oom_outcome(e, "cuda", cap_mb, Prediction(0, 0.0))
        queue.put({"infeasible": True, "reason": out.reason, "violations": out.violations})


def _in_child(target, *args, timeout: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")  # a fresh CUDA context per process, as Ray workers have
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        raise TimeoutError(f"{target.__name__} took longer than {timeout:.0f} s")
    return queue.get(timeout=5)


def _step_oom(budget: float) -> list[Row]:
    got = _in_child(_oom_child, 512.0, timeout=budget)
    return [Row("oom", "over a 512 MB cap", got.get("reason", "trained (no OOM)")[:100],
                ok=got["infeasible"], detail=got)]


def _pack_child(cap_mb: float, seconds: float, queue) -> None:
    import torch

    from engine.models import create_preset
    from engine.search.worker import enforce_cap

    enforce_cap(cap_mb)
    model = create_preset("wavemix-lite-64-6").cuda()
    opt = torch.optim.AdamW(model.parameters())
    x = torch.randn(128, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (128,), device="cuda")
    start, steps = time.time(), 0
    while time.time() - start < seconds:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        steps += 1
    torch.cuda.synchronize()
    queue.put({"start": start, "end": time.time(), "steps": steps,
               "peak_mb": torch.cuda.max_memory_allocated() / 2**20})


def _step_packing(budget: float) -> list[Row]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    seconds = max(5.0, budget / 3)
    procs = [ctx.Process(target=_pack_child, args=(4096.0, seconds, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(budget)
    runs = [queue.get(timeout=5) for _ in procs]
    overlap = min(r["end"] for r in runs) - max(r["start"] for r in runs)
    return [Row("packing", "two capped trials on one GPU",
                f"overlap {overlap:.1f} s, peaks {runs[0]['peak_mb']:.0f} + "
                f"{runs[1]['peak_mb']:.0f} MB, steps {runs[0]['steps']} + {runs[1]['steps']}",
                ok=overlap > 0 and all(r["peak_mb"] <= 4096 for r in runs), detail={"runs": runs})]


def _step_precision(budget: float) -> list[Row]:
    import torch

    from engine.models import create_preset

    rows, images = [], {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        model = create_preset("wavemix-lite-64-6").cuda()
        opt = torch.optim.AdamW(model.parameters())
        x = torch.randn(256, 3, 32, 32, device="cuda")
        y = torch.randint(0, 10, (256,), device="cuda")
        for timed in (False, True):
            torch.cuda.synchronize()
            start, steps = time.perf_counter(), 0
            while time.perf_counter() - start < (budget / 5 if timed else 2.0):
                with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                    loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                steps += 1
            torch.cuda.synchronize()
        images[name] = steps * 256 / (time.perf_counter() - start)
        rows.append(Row("precision", f"WaveMix-Lite-64/6 {name}, batch 256",
                        f"{images[name]:,.0f} img/s", detail={"images_per_s": images[name]}))
    rows.append(Row("precision", "bf16 / fp32", f"{images['bf16'] / images['fp32']:.2f}x",
                    ok=None))
    return rows


def _step_cifar(budget: float, data_path: str | None = None) -> list[Row]:
    import torch

    from engine.data import DataConfig, load_data
    from engine.models import create_preset
    from engine.train import DeviceData, TrainConfig, evaluate, train_model

    if not data_path:
        return [Row("cifar", "WaveMix-Lite-64/6 to 90%", "not run: pass --data", ok=None)]
    data = load_data(DataConfig(dataset="imagefolder", root=data_path, val_fraction=0.02))
    test = DeviceData(data.test_x, data.test_y, data.mean, data.std, torch.device("cuda"))
    model = create_preset("wavemix-lite-64-6")
    start, reached, curve = time.monotonic(), None, []

    def on_epoch(r) -> None:
        nonlocal reached
        acc = evaluate(model, test, amp_dtype=torch.bfloat16)
        curve.append((r.epoch, round(time.monotonic() - start, 1), acc))
        if acc >= GOAL_ACCURACY and reached is None:
            reached = time.monotonic() - start
            raise StopIteration
        if time.monotonic() - start + r.seconds > budget:
            raise StopIteration

    epochs = 40  # DualOpT switch at 2/3, cosine within each phase
    cfg = TrainConfig(epochs=epochs, batch_size=256, optimizer="dualopt", switch_epoch=27,
                      lr=3e-3, sgd_lr=3e-2, lr_schedule="cosine", label_smoothing=0.1,
                      amp="bf16", channels_last=True,
                      augment={"crop_padding": 4, "flip": True})
    try:
        train_model(model, data, cfg, device="cuda", on_epoch=on_epoch)
    except StopIteration:
        pass
    best = max((c[2] for c in curve), default=0.0)
    figure = (f"90% in {reached:.0f} s" if reached is not None
              else f"{best:.1%} after {curve[-1][1] if curve else 0:.0f} s")
    return [Row("cifar", "WaveMix-Lite-64/6, DualOpT, bf16", figure, ok=reached is not None,
                detail={"curve": curve})]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="the CIFAR-10 JPEG zip (cifar10-jpeg.zip) for the cifar step")
    p.add_argument("--out", default="gpu_check.json", help="where to write the JSON")
    p.add_argument("--plan", action="store_true", help="print the steps and exit")
    args = p.parse_args(argv)
    if args.plan:
        for name, seconds in PLAN:
            print(f"{name:<10} {seconds:>4.0f} s")
        print(f"{'total':<10} {sum(s for _, s in PLAN):>4.0f} s")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("error: gpu_check needs a CUDA device (torch.cuda.is_available() is False); run "
              "it on a GPU machine, or pass --plan", file=sys.stderr)
        return 2
    runners = {"memory": _step_memory, "oom": _step_oom, "packing": _step_packing,
               "precision": _step_precision,
               "cifar": lambda budget: _step_cifar(budget, args.data)}
    t0 = time.monotonic()
    rows = run_steps(PLAN, runners)
    report = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "seconds": time.monotonic() - t0,
              "rows": [r.__dict__ for r in rows]}
    Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    print(f"{report['device']}, torch {report['torch']}, {report['seconds']:.0f} s\n")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

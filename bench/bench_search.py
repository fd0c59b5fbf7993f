"""Search quality: hypervolume of the feasible (accuracy, memory) front at an equal budget.

Compares the default sampler with ASHA early stopping (tpe + asha) against random search
without early stopping (random + fifo), over several seeds, on digits and on a CIFAR-10 slice:
at an equal number of trials, and with twice the trials for tpe + asha, which is about equal
compute (ASHA stops most trials early; the epochs each search trained are reported). Hypervolume is taken in the plane (peak memory / cap,
validation accuracy) against the reference point (1, 0): the area of the region the front
dominates, so 1.0 would be a perfect model using no memory. Prints a markdown table.

    .venv/bin/python bench/bench_search.py --seeds 0 1 2 --trials 16
    .venv/bin/python bench/bench_search.py --datasets cifar --cifar-zip ../shared/data/cifar10-jpeg.zip
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import ray

from engine.search import run_search
from engine.spec import SearchSpec
from storage import load_study, schema

METHODS = {"tpe+asha": ("tpe", "asha"), "tpe+pareto_asha": ("tpe", "pareto_asha"),
           "random+fifo": ("random", "fifo")}


def _space(dataset: str, cifar_zip: str | None) -> dict:
    if dataset == "digits":
        data = {"dataset": "digits", "train_size": 1000, "val_fraction": 0.25}
        model = {"final_dim": {"type": "int", "low": 8, "high": 48, "step": 8},
                 "depth": {"type": "int", "low": 1, "high": 5}, "level": 1,
                 "dropout": {"type": "float", "low": 0.0, "high": 0.4}}
        train = {"epochs": 6, "batch_size": 32}
        cap = 4.0
    else:
        data = {"dataset": "imagefolder", "root": cifar_zip, "train_size": 1500, "val_size": 500}
        model = {"final_dim": {"type": "int", "low": 8, "high": 32, "step": 8},
                 "depth": {"type": "int", "low": 1, "high": 3},
                 "level": {"type": "int", "low": 1, "high": 2},
                 "dropout": {"type": "float", "low": 0.0, "high": 0.3}}
        train = {"epochs": 4, "batch_size": 64}
        cap = 60.0
    train.update({"optimizer": "dualopt", "switch_epoch": {"type": "int", "low": 1, "high": 4},
                  "lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
                  "sgd_lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}})
    return {"data": data, "model": {"wavemix": model}, "train": train,
            "objectives": [{"metric": "val_accuracy", "direction": "maximize"},
                           {"metric": "peak_memory_mb", "direction": "minimize"}],
            "constraints": {"gpu_ram_mb": cap}}


def hypervolume(points: list[tuple[float, float]], cap: float) -> float:
    """Area dominated by (memory, accuracy) points, memory scaled by the cap, ref (1, 0)."""
    front, best = [], -1.0
    for mem, acc in sorted(points):  # memory ascending; keep the points that raise accuracy
        if mem <= cap and acc > best:
            front.append((mem / cap, acc))
            best = acc
    area = 0.0
    for i, (m, a) in enumerate(front):
        nxt = front[i + 1][0] if i + 1 < len(front) else 1.0
        area += (nxt - m) * a
    return area


def run_one(dataset: str, method: str, seed: int, trials: int, cifar_zip: str | None,
            workdir: Path, tag: str = "") -> tuple[float, float, dict]:
    sampler, scheduler = METHODS[method]
    raw = _space(dataset, cifar_zip)
    name = f"{dataset}-{method.replace('+', '-')}{tag}-{seed}"
    raw.update({"study": {"name": name},
                "search": {"sampler": sampler, "scheduler": scheduler, "n_trials": trials,
                           "max_concurrent": 2, "seed": seed,
                           "asha": {"grace_period": 1, "reduction_factor": 2}},
                "resources": {"cpus": 1, "gpus": 0}})
    spec = SearchSpec.model_validate(raw)
    url = f"sqlite:///{workdir / (name + '.db')}"
    t0 = time.perf_counter()
    run_search(spec, storage_url=url, progress=lambda _: None)
    seconds = time.perf_counter() - t0
    study = load_study(url, name)
    pts, states = [], {}
    for t in study.trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
        if t.state.name == "COMPLETE" and all(v <= 0 for v in t.constraints.values()):
            pts.append((t.user_attrs[schema.TRIAL_PEAK_MEMORY_MB], t.values[0]))
    epochs = sum(len(t.intermediate_values) for t in study.trials)
    return hypervolume(pts, spec.constraints.gpu_ram_mb), seconds, {**states, "epochs": epochs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["digits"], choices=["digits", "cifar"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--cifar-zip", default="../shared/data/cifar10-jpeg.zip")
    ap.add_argument("--arms", nargs="+", default=["tpe+asha:1", "tpe+asha:2"],
                    help="METHOD:K, compared with random+fifo at K times its trials")
    args = ap.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=256 * 2**20)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            arms = [(m, int(k)) for m, k in (a.split(":") for a in args.arms)]
            print(f"{args.trials} trials per search (xK: K times as many), 2 concurrent, 2-core "
                  "CPU; HV with memory scaled by the cap, reference (cap, 0); "
                  "in brackets: epochs trained, trials pruned\n")
            print("| data | seed | random+fifo HV | " + " | ".join(
                f"{m} x{k} HV | ratio" for m, k in arms) + " |")
            print("|---|---|---|" + "---|---|" * len(arms))
            for ds in args.datasets:
                ratios: dict[int, list[float]] = {i: [] for i in range(len(arms))}
                for seed in args.seeds:
                    r, _, r_info = run_one(ds, "random+fifo", seed, args.trials, args.cifar_zip, Path(tmp))
                    cells = [f"{r:.4f} ({r_info['epochs']})"]
                    for i, (method, k) in enumerate(arms):
                        v, _, info = run_one(ds, method, seed, k * args.trials, args.cifar_zip,
                                             Path(tmp), tag=f"x{k}")
                        ratios[i].append(v / r if r else float("inf"))
                        cells += [f"{v:.4f} ({info['epochs']}, {info.get('PRUNED', 0)})",
                                  f"{ratios[i][-1]:.2f}x"]
                    print(f"| {ds} | {seed} | " + " | ".join(cells) + " |", flush=True)
                print(f"| {ds} | mean | | " + " | ".join(
                    f"| {statistics.mean(ratios[i]):.2f}x" for i in range(len(arms))) + " |",
                    flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()

"""Search quality: hypervolume of the feasible (accuracy, memory) front at an equal budget.

Compares TPE with successive-halving early stopping against random search without early
stopping (random + fifo), over several seeds, on digits and on a CIFAR-10 slice: at an equal
number of trials, and at an equal number of training epochs (the compute: the early-stopping
arm gets `search.budget_epochs` = the epochs random trained in the same seed). Hypervolume is
taken in the plane (peak memory / cap, validation accuracy) against the reference point (1, 0):
the area of the region the front dominates, so 1.0 would be a perfect model using no memory.
Prints a markdown table.

    .venv/bin/python bench/bench_search.py --space broad --seeds 0 1 2 --trials 16
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


# Upper ends of the (final_dim, depth, level) ranges; each starts at 8 / 1 / 1.
_RANGES = {("digits", "narrow"): (48, 5, 1), ("digits", "broad"): (64, 8, 2),
           ("cifar", "narrow"): (32, 3, 2), ("cifar", "broad"): (48, 5, 3)}


def _space(dataset: str, cifar_zip: str | None, breadth: str = "narrow",
           epochs: int | None = None) -> dict:
    """The benchmark's search space. "narrow": ranges already trimmed to small models, as
    someone who knows the device would write them; "broad": the ranges a user writes before
    knowing which models fit (wider final_dim, depth, ff_channel), so most candidates are over
    the cap and the sampler has to find the feasible region."""
    top_dim, top_depth, top_level = _RANGES[(dataset, breadth)]
    model = {"final_dim": {"type": "int", "low": 8, "high": top_dim, "step": 8},
             "depth": {"type": "int", "low": 1, "high": top_depth},
             "level": {"type": "int", "low": 1, "high": top_level} if top_level > 1 else 1,
             "dropout": {"type": "float", "low": 0.0, "high": 0.4 if dataset == "digits" else 0.3}}
    if breadth == "broad":
        model["ff_channel"] = {"type": "categorical", "choices": [8, 16, 32, 64]}
    if dataset == "digits":
        data = {"dataset": "digits", "train_size": 1000, "val_fraction": 0.25}
        train, cap = {"epochs": 6, "batch_size": 32}, 4.0
    else:
        data = {"dataset": "imagefolder", "root": cifar_zip, "train_size": 1500, "val_size": 500}
        train, cap = {"epochs": 4, "batch_size": 64}, 60.0
    if epochs:
        train["epochs"] = epochs
    train.update({"optimizer": "dualopt",
                  "switch_epoch": {"type": "int", "low": 1, "high": min(train["epochs"], 4)},
                  "lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
                  "sgd_lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}})
    return {"data": data, "model": {"wavemix": model}, "train": train,
            "objectives": [{"metric": "val_accuracy", "direction": "maximize"},
                           {"metric": "peak_memory_mb", "direction": "minimize"}],
            "constraints": {"gpu_ram_mb": cap}}


def _front(points: list[tuple[float, float]], cap: float) -> list[tuple[float, float]]:
    """The feasible (memory / cap, accuracy) staircase: memory ascending, each point raising
    the accuracy of those before it."""
    front, best = [], -1.0
    for mem, acc in sorted(p for p in points if p[0] <= cap):
        if acc > best:
            front.append((mem / cap, acc))
            best = acc
    return front


def hypervolume(points: list[tuple[float, float]], cap: float,
                ref: tuple[float, float] = (1.0, 0.0)) -> float:
    """Area dominated by (memory, accuracy) points and bounded by ``ref`` = (memory / cap,
    accuracy); memory scaled by the cap. The default reference is (cap, 0)."""
    ref_m, ref_a = ref
    front = [(m, a) for m, a in _front(points, cap) if m < ref_m and a > ref_a]
    area = 0.0
    for i, (m, a) in enumerate(front):
        nxt = front[i + 1][0] if i + 1 < len(front) else ref_m
        area += (nxt - m) * (a - ref_a)
    return area


def nadir_reference(points: list[tuple[float, float]], cap: float) -> tuple[float, float]:
    """A reference point just beyond the nadir of the points' front (10% of each range): the
    usual choice in multi-objective benchmarks, so the area measures only where fronts differ."""
    front = _front(points, cap)
    ms, accs = [m for m, _ in front], [a for _, a in front]
    return (min(1.0, max(ms) + 0.1 * (max(ms) - min(ms))),
            max(0.0, min(accs) - 0.1 * (max(accs) - min(accs))))


def ceiling(dataset: str, breadth: str) -> tuple[float, float]:
    """The highest HV any search of this space can reach, and the smallest model's memory: a
    100%-accurate model at the smallest predicted memory (every range at its low end; memory
    grows with each of these parameters) dominates everything the space can offer."""
    from engine.memory import predict_training_peak

    raw = _space(dataset, None, breadth)
    smallest = {k: (min(v["choices"]) if v.get("type") == "categorical" else v["low"])
                if isinstance(v, dict) else v for k, v in raw["model"]["wavemix"].items()}
    shape = (1, 8) if dataset == "digits" else (3, 32)
    mb = predict_training_peak("wavemix", smallest, batch_size=raw["train"]["batch_size"],
                               in_channels=shape[0], image_size=shape[1], num_classes=10,
                               optimizer="dualopt").peak_mb
    cap = raw["constraints"]["gpu_ram_mb"]
    return 1.0 - mb / cap, mb


def run_one(dataset: str, method: str, seed: int, budget: dict, cifar_zip: str | None,
            workdir: Path, breadth: str, tag: str = "",
            epochs: int | None = None) -> tuple[float, list, dict]:
    """One search; ``budget`` holds n_trials and/or budget_epochs. Returns its HV, the
    (memory, accuracy) points of its feasible complete trials, and counts."""
    sampler, scheduler = METHODS[method]
    raw = _space(dataset, cifar_zip, breadth, epochs)
    name = f"{dataset}-{breadth}-{method.replace('+', '-')}{tag}-{seed}"
    raw.update({"study": {"name": name},
                "search": {"sampler": sampler, "scheduler": scheduler, **budget,
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
    states["trials"] = len(study.trials)
    states["infeasible"] = sum(1 for t in study.trials if t.user_attrs.get(schema.TRIAL_TRAINED) is False)
    states["epochs"] = sum(len(t.intermediate_values) for t in study.trials)
    states["seconds"] = seconds
    return hypervolume(pts, spec.constraints.gpu_ram_mb), pts, states


def _cell(hv: float, info: dict) -> str:
    return (f"{hv:.4f} ({info['trials']} trials, {info['infeasible']} over cap, "
            f"{info.get('PRUNED', 0)} pruned, {info['epochs']} ep)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["digits"], choices=["digits", "cifar"])
    ap.add_argument("--space", default="broad", choices=["narrow", "broad"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--cifar-zip", default="../shared/data/cifar10-jpeg.zip")
    ap.add_argument("--arms", nargs="+", default=["tpe+pareto_asha:1", "tpe+pareto_asha:epochs"],
                    help="METHOD:K runs K times random's trials; METHOD:epochs runs until it has "
                         "trained as many epochs as random did in the same seed (at most "
                         "8x its trials); METHOD:epochs:E does so with E epochs per trial")
    args = ap.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=256 * 2**20)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            arms = [(a.split(":") + [""])[:3] for a in args.arms]
            print(f"{args.space} space, random+fifo: {args.trials} trials; 2 concurrent, 2-core "
                  "CPU; HV with memory scaled by the cap, reference (cap, 0); best known = HV "
                  "of the union of every search's points in that row; ref nadir: the ratio "
                  "with the reference just beyond the nadir of that union's front\n")
            for ds in args.datasets:
                top, mb = ceiling(ds, args.space)
                print(f"{ds}: no search of this space can exceed HV {top:.4f} (its smallest "
                      f"model needs {mb:.3f} MB; a 100%-accurate one there would score that)")
            print()
            print("| data | seed | random+fifo HV | " + " | ".join(
                f"{m} {'=epochs' if k == 'epochs' else 'x' + k}{' ' + e + ' ep/trial' if e else ''}"
                " HV | ratio (ref (cap, 0) / ref nadir)" for m, k, e in arms)
                + " | best known HV | most any search could reach |")
            print("|---|---|---|" + "---|---|" * len(arms) + "---|---|")
            for ds in args.datasets:
                top, _ = ceiling(ds, args.space)
                ratios: dict[int, list[float]] = {i: [] for i in range(len(arms))}
                nadir_ratios: dict[int, list[float]] = {i: [] for i in range(len(arms))}
                for seed in args.seeds:
                    r, pts, r_info = run_one(ds, "random+fifo", seed, {"n_trials": args.trials},
                                             args.cifar_zip, Path(tmp), args.space)
                    union, arm_pts = list(pts), []
                    cells = [_cell(r, r_info)]
                    for i, (method, k, e) in enumerate(arms):
                        budget = ({"budget_epochs": r_info["epochs"], "n_trials": 8 * args.trials}
                                  if k == "epochs" else {"n_trials": int(k) * args.trials})
                        v, p, info = run_one(ds, method, seed, budget, args.cifar_zip, Path(tmp),
                                             args.space, tag=f"-{k}{e}", epochs=int(e) if e else None)
                        union += p
                        arm_pts.append(p)
                        ratios[i].append(v / r if r else float("inf"))
                        cells += [_cell(v, info), f"{ratios[i][-1]:.2f}x"]
                    cap = _space(ds, None, args.space)["constraints"]["gpu_ram_mb"]
                    best = hypervolume(union, cap)
                    nadir = nadir_reference(union, cap)
                    r_n = hypervolume(pts, cap, nadir)
                    for i, p in enumerate(arm_pts):
                        n_ratio = hypervolume(p, cap, nadir) / r_n if r_n else float("inf")
                        nadir_ratios[i].append(n_ratio)
                        cells[2 + 2 * i] += f" / {n_ratio:.2f}x"
                    cells += [f"{best:.4f} ({best / r:.2f}x)", f"{top / r:.2f}x random"]
                    print(f"| {ds} | {seed} | " + " | ".join(cells) + " |", flush=True)
                print(f"| {ds} | mean | | " + " | ".join(
                    f"| {statistics.mean(ratios[i]):.2f}x / {statistics.mean(nadir_ratios[i]):.2f}x"
                    for i in range(len(arms))) + " | | |",
                    flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()

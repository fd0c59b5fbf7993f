"""Search quality: hypervolume of the feasible (accuracy, memory) front for the compute spent.

Each arm is a real ``run_search`` (real Ray), compared with random search without early
stopping (random + fifo, ``--trials`` trained trials) in the same seed, on digits and on a
CIFAR-10 slice (the JPEG zip through the imagefolder loader): at an equal number of trials
("METHOD:K", K times random's) or of training epochs ("METHOD:epochs": the arm gets
``search.budget_epochs`` = the epochs random trained in that seed). Hypervolume is taken in the
plane (peak memory / cap, validation accuracy):

- against the reference (cap, 0): the area the front dominates, 1.0 for a perfect model using
  no memory (the figures of docs/BENCHMARKS.md section 6);
- against a nadir reference, stated in the output: just beyond the nadir of the union of every
  front of that data set (all seeds, all arms; 10% of each range), so the area counts only
  where fronts differ. The per-seed and median ratios and "epochs to 95%" use this one.

"Epochs to 95%": the trials are replayed in the order they finished; the epochs trained by
the trials finished so far, when the front of the finished ones first reaches 95% of the best
nadir-referenced hypervolume any run of that data set found (">N": never, N epochs in all).
"Epochs to random's front": likewise, until the arm's front is as good as random's final one
in the same seed, as a fraction of random's epochs (the speed-up at random's quality; a target
that does not depend on the luckiest run of the benchmark).

Prints one line per search as it ends, then markdown tables; ``--out`` saves every run (its
points in finishing order) as JSON, so the tables can be recomputed.

    .venv/bin/python bench/bench_search.py --datasets digits --seeds 0 1 2 3 4 --trials 16
    .venv/bin/python bench/bench_search.py --datasets cifar --cifar-zip ../shared/data/cifar10-jpeg.zip
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ray

from engine.samplers.cost_aware import INFO_ATTR
from engine.search import run_search
from engine.spec import SearchSpec
from storage import load_study, read_trials

# Method -> (sampler, scheduler, extra search settings).
HEDGED = {"cost_aware": {"transfer_recipes": 2, "stratified_recipes": True, "explore_every": 4}}
METHODS = {"tpe+asha": ("tpe", "asha", {}), "tpe+pareto_asha": ("tpe", "pareto_asha", {}),
           "tpe+fifo": ("tpe", "fifo", {}), "random+fifo": ("random", "fifo", {}),
           "cost_aware+fifo": ("cost_aware", "fifo", {}),
           "cost_aware+pareto_asha": ("cost_aware", "pareto_asha", {}),
           # the search.cost_aware settings against a model that learnt the wrong thing early
           "cost_aware.hedged+pareto_asha": ("cost_aware", "pareto_asha", HEDGED)}
BASELINE = "random+fifo"


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
    # At equal memory the most accurate point comes first, so a dominated point at the same
    # memory never joins (it would set the nadir's accuracy corner: the tie bug of issue 20).
    for mem, acc in sorted((p for p in points if p[0] <= cap), key=lambda p: (p[0], -p[1])):
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


@dataclass
class Run:
    """One search of the benchmark and what it left.

    Attributes:
        trace: One entry per finished trial in finishing order: (epochs it trained, its peak
            memory MB and accuracy if it is a feasible COMPLETE trained point, else None).
        suggest_s: Seconds the cost-aware sampler spent choosing each candidate.
    """

    dataset: str
    arm: str
    seed: int
    cap: float
    trace: list[tuple[int, float | None, float | None]] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    suggest_s: list[float] = field(default_factory=list)
    screens: int = 0
    phases: dict = field(default_factory=dict)

    @property
    def points(self) -> list[tuple[float, float]]:
        return [(m, a) for _, m, a in self.trace if m is not None]

    @property
    def epochs(self) -> int:
        return sum(e for e, _, _ in self.trace)

    def hv(self, ref: tuple[float, float] = (1.0, 0.0)) -> float:
        return hypervolume(self.points, self.cap, ref)

    def epochs_to(self, target: float, ref: tuple[float, float]) -> int | None:
        """Epochs trained when the finished trials' front first reached ``target``."""
        spent, pts = 0, []
        for e, m, a in self.trace:
            spent += e
            if m is not None:
                pts.append((m, a))
                if hypervolume(pts, self.cap, ref) >= target:
                    return spent
        return None


def run_one(dataset: str, method: str, seed: int, budget: dict, cifar_zip: str | None,
            workdir: Path, breadth: str, tag: str = "", epochs: int | None = None,
            max_concurrent: int = 2, cifar_val: int | None = None) -> Run:
    """One search; ``budget`` holds n_trials and/or budget_epochs; ``cifar_val`` replaces the
    CIFAR slice's 500 validation images."""
    sampler, scheduler, extra = METHODS[method]
    raw = _space(dataset, cifar_zip, breadth, epochs)
    if cifar_val and dataset == "cifar":
        raw["data"]["val_size"] = cifar_val
    name = f"{dataset}-{breadth}-{method.replace('+', '-')}{tag}-{seed}"
    raw.update({"study": {"name": name},
                "search": {"sampler": sampler, "scheduler": scheduler, **budget, **extra,
                           "max_concurrent": max_concurrent, "seed": seed,
                           "asha": {"grace_period": 1, "reduction_factor": 2}},
                "resources": {"cpus": 1, "gpus": 0}})
    spec = SearchSpec.model_validate(raw)
    url = f"sqlite:///{workdir / (name + '.db')}"
    t0 = time.perf_counter()
    run_search(spec, storage_url=url, progress=lambda _: None)
    seconds = time.perf_counter() - t0
    study = load_study(url, name)
    run = Run(dataset, method + tag, seed, spec.constraints.gpu_ram_mb)
    counts: dict = {}
    for t in study.trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
        info = t.system_attrs.get(INFO_ATTR)
        if info:
            run.suggest_s.append(info["seconds"])
            run.screens += info["screens"]
            run.phases[info["phase"]] = run.phases.get(info["phase"], 0) + 1
    records = read_trials(study)
    done = sorted((r for r in records if r.finished and r.datetime_complete),
                  key=lambda r: (r.datetime_complete, r.number))
    for r in done:
        point = r.state.name == "COMPLETE" and not r.screened_out and r.feasible
        run.trace.append((r.epochs_trained, r.peak_memory_mb if point else None,
                          r.values[0] if point else None))
    counts["trials"] = len(records)
    counts["infeasible"] = sum(1 for r in records if r.screened_out)
    counts["seconds"] = round(seconds, 1)
    run.counts = counts
    return run


def _describe(run: Run) -> str:
    c = run.counts
    text = (f"{run.dataset} seed {run.seed} {run.arm}: HV {run.hv():.4f} (ref (cap, 0)); "
            f"{c['trials']} trials, {c['infeasible']} over cap, {c.get('PRUNED', 0)} pruned, "
            f"{run.epochs} epochs, {c['seconds']:.0f} s")
    if run.suggest_s:
        trained = max(1, c["trials"] - c["infeasible"])
        text += (f"; choosing: median {statistics.median(run.suggest_s):.1f} s, max "
                 f"{max(run.suggest_s):.1f} s a candidate, {run.screens / trained:.1f} "
                 f"memory predictions per trained trial; phases {run.phases}")
        if set(run.phases) == {"random"}:
            text += (" -- WARNING: the sampler never had the screen (costs unknown, so it drew "
                     "at random): the driver must call sampler.attach(screen)")
    return text


def _ratio(a: int | None, b: int | None, a_total: int, b_total: int) -> tuple[float, str]:
    """a / b for epochs-to-95% figures where None means never (a bound then)."""
    if a is not None and b is not None:
        return a / b, f"{a / b:.2f}x"
    if a is not None:
        return a / b_total, f"<{a / b_total:.2f}x"
    if b is not None:
        return a_total / b, f">{a_total / b:.2f}x"
    return math.nan, "n/a"


def _median_cell(ratios: list[float]) -> str:
    """Median of catch-up ratios where inf means "never within the arm's epochs" (a bound)."""
    m = statistics.median(ratios)
    return f"**{m:.2f}x**" if math.isfinite(m) else "**never (median)**"


def _epochs_cell(e: int | None, total: int) -> str:
    return str(e) if e is not None else f">{total}"


def report(runs: list[Run], arms: list[str]) -> dict:
    """Print the tables for one data set's runs; returns its reference and best HV."""
    ds, cap = runs[0].dataset, runs[0].cap
    union = [p for r in runs for p in r.points]
    ref = nadir_reference(union, cap)
    best = max(r.hv(ref) for r in runs)
    target = 0.95 * best
    print(f"\n{ds}: nadir reference (memory / cap, accuracy) = ({ref[0]:.4f}, {ref[1]:.4f}); "
          f"best HV any run found {best:.4f}; 95% of it = {target:.4f}\n")
    print("| seed | random HV (cap, 0) | random HV nadir | random epochs to 95% | " + " | ".join(
        f"{a} HV nadir | ratio | {a} epochs to 95% | ratio | epochs to random's front"
        for a in arms) + " |")
    print("|---|---|---|---|" + "---|---|---|---|---|" * len(arms))
    hv_ratios: dict[str, list[float]] = {a: [] for a in arms}
    ep_ratios: dict[str, list[float]] = {a: [] for a in arms}
    catch_up: dict[str, list[float]] = {a: [] for a in arms}
    by_seed: dict[int, dict[str, Run]] = {}
    for r in runs:
        by_seed.setdefault(r.seed, {})[r.arm] = r
    for seed, got in sorted(by_seed.items()):
        base = got[BASELINE]
        b_hv, b_ep = base.hv(ref), base.epochs_to(target, ref)
        cells = [f"{base.hv():.4f}", f"{b_hv:.4f}", _epochs_cell(b_ep, base.epochs)]
        for a in arms:
            r = got.get(a)
            if r is None:
                cells += ["", "", "", "", ""]
                continue
            v, e = r.hv(ref), r.epochs_to(target, ref)
            hv_ratios[a].append(v / b_hv if b_hv else math.inf)
            value, text = _ratio(e, b_ep, r.epochs, base.epochs)
            ep_ratios[a].append(value)
            c = r.epochs_to(b_hv, ref) if b_hv > 0 else 0
            catch_up[a].append(c / base.epochs if c is not None else math.inf)
            cells += [f"{v:.4f}", f"{hv_ratios[a][-1]:.2f}x", _epochs_cell(e, r.epochs), text,
                      f"{c} ({c / base.epochs:.2f}x)" if c is not None
                      else f">{r.epochs} (>{r.epochs / base.epochs:.2f}x)"]
        print(f"| {seed} | " + " | ".join(cells) + " |")
    base_runs = [r for r in runs if r.arm == BASELINE]
    med = [f"{statistics.median(r.hv() for r in base_runs):.4f}",
           f"{statistics.median(r.hv(ref) for r in base_runs):.4f}", ""]
    for a in arms:
        arm_runs = [r for r in runs if r.arm == a]
        if not arm_runs:
            med += ["", "", "", "", ""]
            continue
        eps = [e for e in ep_ratios[a] if not math.isnan(e)]
        med += [f"{statistics.median(r.hv(ref) for r in arm_runs):.4f}",
                f"**{statistics.median(hv_ratios[a]):.2f}x**", "",
                f"**{statistics.median(eps):.2f}x**" if eps else "n/a",
                _median_cell(catch_up[a])]
    print("| median | " + " | ".join(med) + " |")
    print("\n(ratios: the arm over random in the same seed; epochs-to-95% ratios with < or > are "
          "bounds, a run that never reached 95% counted with all its epochs)\n")
    _per_seed(by_seed, arms)
    for r in runs:
        print("- " + _describe(r))
    return {"dataset": ds, "nadir_reference": ref, "best_hv": best}


def _per_seed(by_seed: dict[int, dict[str, Run]], arms: list[str]) -> None:
    """The same comparison seed by seed: HV at (cap, 0), which no run moves, and HV and epochs
    to 95% of the seed's best at a nadir reference of that seed's runs alone. The reference
    and the target above come from all seeds together, so one lucky run can shrink the nadir
    box to its corner of the plane or set a target the other seeds never approach."""
    print("Seed by seed: HV at (cap, 0); HV at the nadir of that seed's runs, and epochs to 95% "
          "of the best of them:\n")
    print("| seed | random HV (cap, 0) | random HV (seed nadir) | random epochs to 95% | "
          + " | ".join(f"{a} HV (cap, 0) | ratio | HV (seed nadir) | ratio | epochs to 95% | ratio"
                       for a in arms) + " |")
    print("|---|---|---|---|" + "---|---|---|---|---|---|" * len(arms))
    cols: dict[str, list[list[float]]] = {a: [[], [], []] for a in arms}
    for seed, got in sorted(by_seed.items()):
        base = got[BASELINE]
        ref = nadir_reference([p for r in got.values() for p in r.points], base.cap)
        target = 0.95 * max(r.hv(ref) for r in got.values())
        b_ep = base.epochs_to(target, ref)
        cells = [f"{base.hv():.4f}", f"{base.hv(ref):.4f}", _epochs_cell(b_ep, base.epochs)]
        for a in arms:
            r = got.get(a)
            if r is None:
                cells += [""] * 6
                continue
            cap_ratio = r.hv() / base.hv() if base.hv() else math.inf
            nadir_ratio = r.hv(ref) / base.hv(ref) if base.hv(ref) else math.inf
            e = r.epochs_to(target, ref)
            value, text = _ratio(e, b_ep, r.epochs, base.epochs)
            for col, v in zip(cols[a], (cap_ratio, nadir_ratio, value), strict=True):
                col.append(v)
            cells += [f"{r.hv():.4f}", f"{cap_ratio:.2f}x", f"{r.hv(ref):.4f}",
                      f"{nadir_ratio:.2f}x", _epochs_cell(e, r.epochs), text]
        print(f"| {seed} | " + " | ".join(cells) + " |")
    med = []
    for a in arms:
        cap_r, nadir_r, eps = cols[a][0], cols[a][1], [v for v in cols[a][2] if not math.isnan(v)]
        med += ["", f"**{statistics.median(cap_r):.2f}x**" if cap_r else "n/a",
                "", f"**{statistics.median(nadir_r):.2f}x**" if nadir_r else "n/a",
                "", f"**{statistics.median(eps):.2f}x**" if eps else "n/a"]
    print("| median | | | | " + " | ".join(med) + " |\n")


def reprint(paths: list[Path], seeds: list[int] | None = None) -> None:
    """The tables of saved benchmarks (``--out``), each data set's runs as they were run.

    Several files are read as one benchmark: a search that two files both hold (same data set,
    arm and seed; e.g. random, which is deterministic) is taken once, after checking that both
    copies trained the same points, so arms run in different files are compared against the
    same baseline. ``seeds`` keeps those seeds only."""
    runs: dict[tuple[str, str, int], Run] = {}
    for path in paths:
        for r in json.loads(path.read_text())["runs"]:
            run = Run(**{**r, "trace": [tuple(t) for t in r["trace"]]})
            if seeds is not None and run.seed not in seeds:
                continue
            key = (run.dataset, run.arm, run.seed)
            if key in runs:
                same = (sorted(runs[key].points) == sorted(run.points)
                        and runs[key].epochs == run.epochs)
                print(f"{run.dataset} seed {run.seed} {run.arm}: in several files, "
                      + ("the same points and epochs in each (taken once)" if same else
                         "DIFFERENT runs (the first file's is used)"))
                continue
            runs[key] = run
    for ds in dict.fromkeys(r.dataset for r in runs.values()):
        mine = [r for r in runs.values() if r.dataset == ds]
        report(mine, list(dict.fromkeys(r.arm for r in mine if r.arm != BASELINE)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["digits", "cifar"], choices=["digits", "cifar"])
    ap.add_argument("--space", default="broad", choices=["narrow", "broad"])
    ap.add_argument("--seeds", nargs="+", type=int,
                    help="seeds to run (default 0-4); with --report, the seeds to report")
    ap.add_argument("--trials", type=int, default=16, help="random search's trained trials")
    ap.add_argument("--cifar-zip", default="../shared/data/cifar10-jpeg.zip")
    ap.add_argument("--arms", nargs="+",
                    default=["cost_aware+fifo:epochs", "cost_aware+pareto_asha:epochs"],
                    help="METHOD:K runs K times random's trials; METHOD:epochs runs until it has "
                         "trained as many epochs as random did in the same seed (at most "
                         "8x its trials); METHOD:epochs:E does so with E epochs per trial; "
                         f"methods: {', '.join(METHODS)}")
    ap.add_argument("--max-concurrent", type=int, default=2)
    ap.add_argument("--cifar-val", type=int, default=500,
                    help="validation images of the CIFAR slice (500: one image is 0.2%% of "
                         "accuracy, so fronts differ by a few images)")
    ap.add_argument("--out", help="write every run as JSON here")
    ap.add_argument("--report", metavar="JSON", nargs="+",
                    help="print the tables of runs saved by --out (several files: one benchmark, "
                         "a search in several files taken once), running nothing")
    args = ap.parse_args()
    if args.report:
        reprint([Path(p) for p in args.report], args.seeds)
        return
    args.seeds = args.seeds or [0, 1, 2, 3, 4]
    arms = [(a.split(":") + [""])[:3] for a in args.arms]
    labels = [f"{m}-{k}{e}" for m, k, e in arms]
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=256 * 2**20)
    print(f"{args.space} space; {BASELINE}: {args.trials} trained trials; arms: "
          f"{', '.join(args.arms)}; {args.max_concurrent} concurrent; seeds {args.seeds}\n")
    for ds in args.datasets:
        top, mb = ceiling(ds, args.space)
        print(f"{ds}: no search of this space can exceed HV {top:.4f} at reference (cap, 0) (its "
              f"smallest model needs {mb:.3f} MB)")
    results: list[dict] = []
    every: list[Run] = []

    def save() -> None:  # after every search: a long benchmark keeps what it has done
        if args.out:
            Path(args.out).write_text(json.dumps(
                {"args": vars(args), "datasets": results, "runs": [asdict(r) for r in every]},
                indent=1))

    try:
        with tempfile.TemporaryDirectory() as tmp:
            for ds in args.datasets:
                runs: list[Run] = []
                for seed in args.seeds:
                    base = run_one(ds, BASELINE, seed, {"n_trials": args.trials}, args.cifar_zip,
                                   Path(tmp), args.space, max_concurrent=args.max_concurrent,
                                   cifar_val=args.cifar_val)
                    base.arm = BASELINE
                    runs.append(base)
                    every.append(base)
                    save()
                    print(_describe(base), flush=True)
                    for (method, k, e), label in zip(arms, labels, strict=True):
                        budget = ({"budget_epochs": base.epochs, "n_trials": 8 * args.trials}
                                  if k == "epochs" else {"n_trials": int(k) * args.trials})
                        r = run_one(ds, method, seed, budget, args.cifar_zip, Path(tmp),
                                    args.space, tag=f"-{k}{e}", epochs=int(e) if e else None,
                                    max_concurrent=args.max_concurrent, cifar_val=args.cifar_val)
                        r.arm = label
                        runs.append(r)
                        every.append(r)
                        save()
                        print(_describe(r), flush=True)
                results.append(report(runs, labels))
                save()
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()

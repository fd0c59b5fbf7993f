"""Replay searches against the tabulated benchmark (issue 20 item 2): minutes, not hours.

The production pieces run as they do in ``engine search``, on a simulated clock instead of Ray:
the sampler (``make_sampler``), the scheduler (``make_scheduler``), the Optuna bridge with its
budget gate and study recorder, and the study record. Only training is replaced: a trial's
epochs are looked up in the table (bench/build_table.py), arriving after the table's recorded
seconds per epoch, on ``--workers`` simulated workers at once. Each lookup draws one of the
configuration's training seeds; configurations trained once get the seed-to-seed difference
of a randomly drawn retrained configuration added, so the replay sees realistic noise.

Scoring, fixed before any run (issue 20 item 4): after 48, 96 and 192 epochs (every epoch any
trial trained, pruned ones included), the feasible front chosen by validation accuracy among
the trials finished by then is scored by its test accuracy: its hypervolume in the plane
(memory / cap, test accuracy) against the reference (cap, chance accuracy = 0.1), divided by
the hypervolume of the table's true front (every trained feasible configuration's mean test
accuracy over its seeds).

    .venv/bin/python bench/replay.py --seeds 50 --arms random+fifo default+fifo --out r.json
    .venv/bin/python bench/replay.py --report r.json
"""

from __future__ import annotations

import argparse
import gzip
import heapq
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.build_table import EPOCHS, GRID, key  # noqa: E402
from engine.caps import CapsConfig  # noqa: E402
from engine.protocol import (  # noqa: E402
    Assignment,
    Complete,
    FinalMetrics,
    Infeasible,
    Prediction,
    Report,
    RunInfo,
    Screening,
)
from engine.spec import SearchSpec  # noqa: E402

HORIZONS = (48, 96, 192)
CHANCE = 0.1  # ten classes
CAP_MB = 60.0  # the benchmark's cap (bench_search's CIFAR slice)
TABLE = ROOT / "bench" / "tables" / "cifar_slice.json.gz"


@dataclass(frozen=True)
class Run:
    """One training of a configuration: validation accuracy by epoch, test accuracy, pace."""

    val: tuple[float, ...]
    test: float
    epoch_s: float


class Table:
    """The tabulated benchmark, looked up by configuration."""

    def __init__(self, doc: dict):
        self.meta = doc["meta"]
        self.entries = {key(c["params"]): c for c in doc["configs"]}
        # Seed-to-seed differences of the retrained configurations: (val curve, test).
        self.noise = []
        for c in doc["configs"]:
            runs = c["runs"]
            if "0" in runs and "1" in runs and _usable(runs["0"]) and _usable(runs["1"]):
                a, b = runs["0"], runs["1"]
                self.noise.append((tuple(y - x for x, y in zip(a["val"], b["val"], strict=True)),
                                   b["test"] - a["test"]))

    @classmethod
    def load(cls, path: Path) -> Table:
        with gzip.open(path, "rt") as f:
            return cls(json.load(f))

    def memory(self, params: dict) -> float:
        return self.entries[key(params)]["memory_mb"]

    def param_count(self, params: dict) -> int:
        return self.entries[key(params)]["param_count"]

    def trained(self, params: dict) -> bool:
        return "0" in self.entries[key(params)]["runs"]

    def draw(self, params: dict, rng: np.random.Generator) -> Run:
        """One training of ``params``: one of its seeds, or seed 0 shifted by another
        configuration's seed-to-seed difference."""
        runs = {s: r for s, r in self.entries[key(params)]["runs"].items() if _usable(r)}
        seeds = sorted(runs)
        pick = runs[seeds[int(rng.integers(len(seeds)))]]
        val, test = tuple(pick["val"]), pick["test"]
        if len(seeds) == 1 and self.noise and rng.random() < 0.5:
            dv, dt = self.noise[int(rng.integers(len(self.noise)))]
            val = tuple(min(1.0, max(0.0, v + d)) for v, d in zip(val, dv, strict=True))
            test = min(1.0, max(0.0, test + dt))
        return Run(val, test, float(pick["epoch_s"]))

    def true_front_hv(self, cap: float) -> float:
        """Hypervolume of the best front the table holds (mean test accuracy over seeds)."""
        points = []
        for c in self.entries.values():
            tests = [r["test"] for r in c["runs"].values() if _usable(r)]
            if tests and c["memory_mb"] <= cap:
                points.append((c["memory_mb"], float(np.mean(tests))))
        return hypervolume(points, cap)


def _usable(run: dict) -> bool:
    return run.get("test") is not None and len(run["val"]) == EPOCHS and run.get("epoch_s")


def hypervolume(points: list[tuple[float, float]], cap: float) -> float:
    """Area in (memory / cap, accuracy) dominated by ``points`` (memory MB, accuracy) and
    bounded by the reference (cap, chance accuracy)."""
    area, best, front = 0.0, CHANCE, []  # the staircase, memory ascending
    for mem, acc in sorted(p for p in points if p[0] <= cap and p[1] > CHANCE):
        if acc > best:
            front.append((mem / cap, acc))
            best = acc
    for i, (m, a) in enumerate(front):
        nxt = front[i + 1][0] if i + 1 < len(front) else 1.0
        area += (nxt - m) * (a - CHANCE)
    return area


# -- the arms ----------------------------------------------------------------------------------
HEDGED = {"transfer_recipes": 2, "stratified_recipes": True, "explore_every": 4}
SOURCE_CAP_MB = 90.0  # warm start: the finished study it learns from ran at this cap
SAMPLER_ARMS = {"random": ("random", {}), "tpe": ("tpe", {}), "nsga2": ("nsga2", {}),
                "gp": ("gp", {}),
                "cost_aware": ("cost_aware", {}), "cost_aware.hedged": ("cost_aware", HEDGED),
                # a new cap, the model seeded by a finished search of the same space at 90 MB
                "cost_aware.warm": ("cost_aware", {"warm_start": "source"})}


def arm_spec(arm: str, seed: int, cap: float) -> SearchSpec:
    """The spec of arm ``SAMPLER+SCHEDULER`` (``default`` = the spec's default sampler)."""
    sampler_name, scheduler = arm.split("+")
    search: dict = {"scheduler": scheduler, "seed": seed, "max_concurrent": 8,
                    "budget_epochs": HORIZONS[-1], "max_rejected": 100_000,
                    "asha": {"grace_period": 1, "reduction_factor": 2}}
    if sampler_name != "default":
        sampler, extra = SAMPLER_ARMS[sampler_name]
        search["sampler"] = sampler
        if extra:
            search["cost_aware"] = extra

    def choices(p: str) -> dict:
        return {"type": "categorical", "choices": GRID[p]}

    raw = {"study": {"name": f"replay-{arm.replace('+', '-')}-{seed}"},
           "data": {"dataset": "digits"},  # never loaded: training is the table
           "model": {"wavemix": {p.split(".", 1)[1]: choices(p) for p in GRID
                                 if p.startswith("wavemix.")}},
           "train": {"epochs": EPOCHS, "batch_size": 64, "optimizer": "dualopt",
                     **{p.split(".", 1)[1]: choices(p) for p in GRID if p.startswith("train.")}},
           "objectives": [{"metric": "val_accuracy", "direction": "maximize"},
                          {"metric": "peak_memory_mb", "direction": "minimize"}],
           "constraints": {"gpu_ram_mb": cap},
           "search": search}
    return SearchSpec.model_validate(raw)


class TableScreen:
    """The driver's screen, answered from the table (the memory the real screen predicted)."""

    def __init__(self, table: Table, caps: CapsConfig):
        self.table, self.caps = table, caps

    def param_count(self, cfg) -> int:
        return self.table.param_count(_params(cfg))

    def __call__(self, cfg) -> Screening:
        params = _params(cfg)
        mem, size = self.table.memory(params), self.table.param_count(params)
        pred = Prediction(size, mem)
        violations = self.caps.violations(mem, size)
        if any(v > 0 for v in violations.values()) or not self.table.trained(params):
            return Screening(pred, Infeasible("; ".join(self.caps.reasons(mem, size)) or
                                              "not trained in the table (over its cap)",
                                              violations or {"table": 1.0}, size, mem))
        return Screening(pred)


def _params(cfg) -> dict:
    """A candidate's configuration in the table's names."""
    return {**{f"wavemix.{k}": v for k, v in cfg.model.items()},
            **{f"train.{k}": getattr(cfg.train, k) for k in ("lr", "switch_epoch", "sgd_lr")}}


# -- one replayed search ---------------------------------------------------------------------
def replay(table: Table, arm: str, seed: int, *, workers: int, cap: float = CAP_MB,
           storage: optuna.storages.BaseStorage | None = None) -> dict:
    """One search of ``arm`` with ``workers`` simulated workers; its share of the true
    front's hypervolume at each horizon, and the epochs it took to reach 95% of it.

    A ``cost_aware.warm`` arm first runs the cost-aware search of the same seed at
    ``SOURCE_CAP_MB`` (study ``source``) in the same in-memory storage; only the second search,
    at ``cap``, is scored (its epochs do not include the source's)."""
    from engine.samplers.registry import make_sampler, make_scheduler
    from engine.search.bridge import OptunaBridge
    from engine.search.budget import SearchBudget
    from engine.search.driver import prepare_sampler
    from engine.space import SearchSpace
    from storage import write_study

    spec = arm_spec(arm, seed, cap)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = storage or optuna.storages.InMemoryStorage()
    if spec.search.cost_aware.warm_start is not None:
        replay(table, "cost_aware+" + arm.split("+")[1], seed, workers=workers,
               cap=SOURCE_CAP_MB, storage=storage)
    name = "source" if cap == SOURCE_CAP_MB else spec.study.name
    study = optuna.create_study(study_name=name, storage=storage, directions=spec.directions,
                                sampler=make_sampler(spec))
    write_study(study, objectives=list(spec.objective_names), spec=spec.model_dump(mode="json"),
                constraints=spec.constraints.model_dump())
    screen = TableScreen(table, spec.constraints)
    space = SearchSpace(spec)
    # As the driver does: the cost-aware sampler gets the screen; tpe and nsga2 a start-up
    # design under the caps.
    prepare_sampler(study, spec, space, screen, "sqlite:///:memory:", lambda _: None)
    budget = SearchBudget(n_trials=None, budget_epochs=HORIZONS[-1], epochs_per_trial=EPOCHS,
                          max_rejected=100_000)
    bridge = OptunaBridge(study, space, spec.objective_names, budget=budget,
                          progress=lambda _: None, screen=screen, max_concurrent=workers)
    scheduler = make_scheduler(spec)
    rng = np.random.default_rng([seed, 1])
    clock, spent, events, live, finished = 0.0, 0, [], {}, []
    run_info = RunInfo(device="table", host="replay", started_at=0.0)
    serial = 0

    def launch() -> bool:
        nonlocal serial
        tid = f"t{serial}"
        serial += 1
        cfg = bridge.suggest(tid)
        if not isinstance(cfg, dict):
            return False
        a = Assignment.from_tune(cfg)
        run = table.draw(_params(a.config), rng)
        live[tid] = (SimpleNamespace(trial_id=tid, config=cfg), a, run)
        heapq.heappush(events, (clock + run.epoch_s, serial, tid, 1))
        return True

    while True:
        while len(live) < workers and launch():
            pass
        if not events:
            break
        clock, _, tid, epoch = heapq.heappop(events)
        trial, a, run = live[tid]
        spent += 1
        phase = "sgd" if a.config.train.switch_epoch < epoch else "adamw"
        last = epoch == EPOCHS
        outcome = None
        if last:
            outcome = Complete(FinalMetrics(
                val_accuracy=run.val[-1], param_count=a.prediction.param_count,
                peak_memory_mb=a.prediction.peak_memory_mb, memory_method="predicted",
                violations=spec.constraints.violations(a.prediction.peak_memory_mb,
                                                       a.prediction.param_count),
                weights_artifact_id="", probe_logits=[], wall_time_s=run.epoch_s * EPOCHS))
        result = Report(epoch=epoch, val_accuracy=run.val[epoch - 1], run=run_info, phase=phase,
                        epoch_s=run.epoch_s, outcome=outcome).to_tune()
        bridge.on_trial_result(tid, result)
        decision = scheduler.on_trial_result(None, trial, result)
        if last or decision == "STOP":
            del live[tid]
            bridge.on_trial_complete(tid, result)
            if last:
                finished.append((spent, a.prediction.peak_memory_mb, run.val[-1], run.test))
        else:
            heapq.heappush(events, (clock + run.epoch_s, serial, tid, epoch + 1))
            serial += 1
    return score(finished, table.true_front_hv(cap), cap)


def score(finished: list[tuple[int, float, float, float]], true_hv: float, cap: float) -> dict:
    """Share of the true front's hypervolume at each horizon: the val-chosen front of the
    trials finished by then, scored on test accuracy; epochs to 95% of the true front."""
    share, to95 = {}, None
    for h in HORIZONS:
        done = [f for f in finished if f[0] <= h]
        share[str(h)] = _test_hv_of_val_front(done, cap) / true_hv
    for i in range(len(finished)):
        if _test_hv_of_val_front(finished[:i + 1], cap) >= 0.95 * true_hv:
            to95 = finished[i][0]
            break
    return {"share": share, "epochs_to_95": to95, "finished": len(finished)}


def _test_hv_of_val_front(done: list[tuple[int, float, float, float]], cap: float) -> float:
    feasible = [(m, v, t) for _, m, v, t in done if m <= cap]
    front = [(m, t) for m, v, t in feasible
             if not any(m2 <= m and v2 >= v and (m2 < m or v2 > v) for m2, v2, _ in feasible)]
    return hypervolume(front, cap)


# -- the report ---------------------------------------------------------------------------------
BASELINE = "random+fifo"
OPTUNA_SAMPLERS = ("tpe", "nsga2", "gp")


def paired(a: list[float], b: list[float], *, n_boot: int = 10_000) -> dict:
    """``a`` against ``b`` seed by seed: median ratio, its bootstrap 90% interval (resampling
    seeds, fixed seed), and the two-sided Wilcoxon signed-rank p of the differences."""
    from scipy.stats import wilcoxon

    ratios = np.array([x / y for x, y in zip(a, b, strict=True) if y > 0])
    rng = np.random.default_rng(0)
    boot = np.median(rng.choice(ratios, size=(n_boot, len(ratios))), axis=1)
    diffs = np.array(a) - np.array(b)
    p = float(wilcoxon(diffs).pvalue) if np.any(diffs != 0) else 1.0
    return {"median_ratio": float(np.median(ratios)),
            "ci90": (float(np.quantile(boot, 0.05)), float(np.quantile(boot, 0.95))),
            "wilcoxon_p": p, "wins": int(np.sum(diffs > 0)), "n": len(diffs)}


def report(docs: list[dict]) -> str:
    """Markdown tables of saved replays: every arm's shares, then each arm against random and
    against the best of Optuna's samplers, paired by seed."""
    runs = [r for d in docs for r in d["runs"]]
    groups: dict[tuple[str, int], dict[int, dict]] = {}
    for r in runs:
        groups.setdefault((r["arm"], r["workers"]), {})[r["seed"]] = r
    lines = ["| arm | workers | seeds | share 48 | share 96 | share 192 | epochs to 95% |",
             "|---|---|---|---|---|---|---|"]
    for (arm, w), by_seed in sorted(groups.items()):
        rs = list(by_seed.values())
        med = {h: float(np.median([r["share"][h] for r in rs])) for h in ("48", "96", "192")}
        reached = [r["epochs_to_95"] for r in rs if r["epochs_to_95"] is not None]
        e95 = (f"{np.median(reached):.0f} ({len(reached)} of {len(rs)})" if reached
               else f">{HORIZONS[-1]} (0 of {len(rs)})")
        lines.append(f"| {arm} | {w} | {len(rs)} | {med['48']:.3f} | {med['96']:.3f} | "
                     f"{med['192']:.3f} | {e95} |")
    lines += ["", "| arm | workers | against | epochs | median ratio | 90% interval | "
              "Wilcoxon p | wins |", "|---|---|---|---|---|---|---|---|"]
    for (arm, w), by_seed in sorted(groups.items()):
        rivals = [BASELINE]
        optuna_arms = [(a, s) for (a, ww), s in groups.items()
                       if ww == w and a.split("+")[0] in OPTUNA_SAMPLERS]
        if optuna_arms:
            best = max(optuna_arms, key=lambda x: np.median([r["share"]["192"]
                                                             for r in x[1].values()]))
            rivals.append(best[0])
        for rival in rivals:
            other = groups.get((rival, w))
            if other is None or rival == arm:
                continue
            seeds = sorted(set(by_seed) & set(other))
            for h in ("96", "192"):
                st = paired([by_seed[k]["share"][h] for k in seeds],
                            [other[k]["share"][h] for k in seeds])
                lines.append(f"| {arm} | {w} | {rival} | {h} | {st['median_ratio']:.3f}x | "
                             f"{st['ci90'][0]:.3f}-{st['ci90'][1]:.3f} | "
                             f"{st['wilcoxon_p']:.2g} | {st['wins']} of {st['n']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50, help="seeds 0..N-1 per arm")
    ap.add_argument("--report", nargs="+", metavar="FILE", help="print saved replays' tables")
    ap.add_argument("--arms", nargs="+",
                    help="SAMPLER+SCHEDULER: random, tpe, nsga2, gp, cost_aware, "
                         "cost_aware.hedged or default; fifo or pareto_asha")
    ap.add_argument("--workers", type=int, nargs="+", default=[2])
    ap.add_argument("--table", default=str(TABLE))
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.report:
        print(report([json.loads(Path(f).read_text()) for f in args.report]))
        return
    if not args.arms or not args.out:
        ap.error("--arms and --out are required to replay (or --report FILE to print)")
    table = Table.load(Path(args.table))
    runs = []
    warnings.simplefilter("ignore")
    for arm in args.arms:
        for workers in args.workers:
            t0 = time.perf_counter()
            for seed in range(args.seeds):
                r = replay(table, arm, seed, workers=workers)
                runs.append({"arm": arm, "seed": seed, "workers": workers, **r})
            shares = [r["share"]["192"] for r in runs if r["arm"] == arm
                      and r["workers"] == workers]
            print(f"{arm} x{workers}: median share at 192 epochs "
                  f"{float(np.median(shares)):.3f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    doc = {"table": {"configs": len(table.entries),
                     "reseeded": sum(1 for c in table.entries.values() if "1" in c["runs"]),
                     "path": str(args.table)},
           "runs": runs}
    Path(args.out).write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()

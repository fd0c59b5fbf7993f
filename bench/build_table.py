"""The tabulated benchmark of our own space (the NAS-Bench method, issue 20 item 1).

The CIFAR-10 slice space of bench/bench_search.py, discretised: every configuration
(architecture x training recipe) of a fixed grid is trained once by the real engine (one
``engine search`` into a study: the configurations are enqueued in a fixed shuffled order and
trained by the production driver, worker and screen), and a fixed subset of them again with
another training seed, so a replay can draw realistic noise. What it records per
configuration: the validation accuracy after every epoch, the top-1 on held-out test images
(the official test split, which the search never sees), the parameter count, the predicted
peak memory, and the wall time per epoch (one thread per trial, two trials at once on the
two cores of the build machine).

Everything that decides the table is fixed here, before any run: the grid, the data split and
its seed, the test subset and its seed, the reseeded subset and its seed.

Resumable: each call trains for at most ``--hours`` and stops cleanly; the next call goes on
where it stopped (the study in ``--workdir`` is the record). ``--export`` evaluates the test
subset from each trial's stored weights (cached, resumable too) and writes the compact table
(bench/tables/cifar_slice.json.gz) with the build's command, machine and cost, merged with
what that file already held; a build on another machine (a fresh work folder) skips every
configuration the file already holds, so the committed table carries the build across
sessions and machines.

    .venv/bin/python bench/build_table.py --cifar-zip ../shared/data/cifar10-jpeg.zip --hours 2
    .venv/bin/python bench/build_table.py --cifar-zip ../shared/data/cifar10-jpeg.zip --export
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import platform
import random
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.spec import SearchSpec  # noqa: E402
from storage import StudyRecord, load_study, read_trials  # noqa: E402

EPOCHS = 4
# The grid. switch_epoch = EPOCHS means AdamW throughout, where sgd_lr is inert: only the
# first sgd_lr is trained there (the replay maps the others onto it).
GRID = {
    "wavemix.final_dim": [8, 16, 24, 32],
    "wavemix.depth": [1, 2, 3, 4],
    "wavemix.level": [1, 2],
    "wavemix.dropout": [0.0, 0.2],
    "train.lr": [3e-4, 1e-3, 3e-3, 1e-2],
    "train.switch_epoch": [2, 3, EPOCHS],
    "train.sgd_lr": [1e-2, 1e-1],
}
# Configurations predicted above this peak are recorded (memory, size) but not trained: the
# table serves caps up to here (the benchmark's cap is 60 MB).
TRAIN_CAP_MB = 90.0
DATA = {"dataset": "imagefolder", "train_size": 1500, "val_size": 2000, "seed": 0}
SHUFFLE_SEED = 2026  # order in which the grid is enqueued (a partial table is a random subset)
TEST_SEED, TEST_IMAGES = 7, 2000  # the held-out images each trained model is scored on
RESEED_SEED, RESEEDED = 11, 250  # configurations trained again with train.seed = 1
STUDY = "table-cifar-slice"


def configs() -> list[dict]:
    """Every distinct configuration of the grid, in the enqueue order."""
    names = list(GRID)
    out = []
    for values in itertools.product(*GRID.values()):
        params = dict(zip(names, values, strict=True))
        if params["train.switch_epoch"] == EPOCHS and params["train.sgd_lr"] != GRID["train.sgd_lr"][0]:
            continue  # SGD never runs: the same training as the first sgd_lr
        out.append(params)
    random.Random(SHUFFLE_SEED).shuffle(out)
    return out


def canonical(params: dict) -> dict:
    """The configuration that trains exactly like ``params`` (inert sgd_lr folded)."""
    p = dict(params)
    if p["train.switch_epoch"] >= EPOCHS:
        p["train.sgd_lr"] = GRID["train.sgd_lr"][0]
    return p


def key(params: dict) -> str:
    """A configuration's name in the table."""
    return json.dumps(canonical(params), sort_keys=True)


def spec(cifar_zip: str, *, seed: int, n_trials: int, name: str) -> SearchSpec:
    """The search that trains the grid: every parameter a categorical of the grid's values."""
    def choices(param: str) -> dict:
        return {"type": "categorical", "choices": GRID[param]}

    train = {"epochs": EPOCHS, "batch_size": 64, "optimizer": "dualopt", "seed": seed,
             **{p.split(".", 1)[1]: choices(p) for p in GRID if p.startswith("train.")}}
    raw = {"study": {"name": name},
           "data": {**DATA, "root": cifar_zip},
           "model": {"wavemix": {p.split(".", 1)[1]: choices(p) for p in GRID
                                 if p.startswith("wavemix.")}},
           "train": train,
           "objectives": [{"metric": "val_accuracy", "direction": "maximize"},
                          {"metric": "peak_memory_mb", "direction": "minimize"}],
           "constraints": {"gpu_ram_mb": TRAIN_CAP_MB},
           "search": {"sampler": "random", "scheduler": "fifo", "n_trials": n_trials,
                      "max_concurrent": 2, "max_rejected": 100_000, "seed": 0},
           "resources": {"cpus": 1, "gpus": 0}}
    return SearchSpec.model_validate(raw)


def reseeded(trained: list[dict]) -> list[dict]:
    """The fixed subset trained again with seed 1: RESEEDED configurations drawn with
    RESEED_SEED from those the grid trains (under TRAIN_CAP_MB), in grid order."""
    return random.Random(RESEED_SEED).sample(trained, min(RESEEDED, len(trained)))


def _enqueue_once(sp: SearchSpec, url: str, todo: list[dict]) -> None:
    """Create the study and enqueue ``todo`` (only when the study is new)."""
    from engine.data import load_data
    from engine.search import prepare_study
    from storage import list_studies, prepare_database

    prepare_database(url)
    if any(s.name == sp.study.name for s in list_studies(url)):
        return
    study = prepare_study(sp, url, load_data(sp.data))
    for params in todo:
        study.enqueue_trial(params, skip_if_exists=False)


def _predicted(cifar_zip: str) -> dict[str, tuple[float, int]]:
    """Predicted peak MB and parameter count of every architecture of the grid."""
    from engine.memory import predict_training_peak
    from engine.models import create_model

    out = {}
    arch = [p for p in GRID if p.startswith("wavemix.")]
    for values in itertools.product(*(GRID[p] for p in arch)):
        m = {p.split(".", 1)[1]: v for p, v in zip(arch, values, strict=True)}
        mb = predict_training_peak("wavemix", m, batch_size=64, in_channels=3, image_size=32,
                                   num_classes=10, optimizer="dualopt").peak_mb
        n = sum(p.numel() for p in create_model("wavemix", **m, image_size=32).parameters())
        out[json.dumps(m, sort_keys=True)] = (mb, n)
    return out


def _arch(params: dict) -> str:
    return json.dumps({p.split(".", 1)[1]: v for p, v in params.items()
                       if p.startswith("wavemix.")}, sort_keys=True)


def _saved_runs(table: Path) -> dict[str, dict]:
    """Configuration -> its runs by seed in an exported table ({} when there is none): a build
    on another machine goes on from what the repository already holds."""
    if not table.exists():
        return {}
    with gzip.open(table, "rt") as f:
        return {key(c["params"]): c["runs"] for c in json.load(f)["configs"]}


def build(cifar_zip: str, workdir: Path, hours: float | None, table: Path) -> None:
    """Train what is left of the grid, then of the reseeded subset, for at most ``hours``.

    The time limit is a Ctrl-C at the deadline (SIGINT to this process): the trial then running
    is interrupted and its configuration queued again, so every configuration in the table
    trained all its epochs. (The search's own time budget would record it as pruned.)
    """
    from engine.search import run_search

    if hours is not None:  # from the start: the set-up below counts too
        timer = threading.Timer(3600 * hours, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.daemon = True
        timer.start()
    workdir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{workdir / 'table.db'}"
    sizes = _predicted(cifar_zip)
    grid = configs()
    trained = [p for p in grid if sizes[_arch(p)][0] <= TRAIN_CAP_MB]
    saved = _saved_runs(table)
    for name, seed, todo in ((STUDY, 0, grid), (STUDY + "-seed1", 1, reseeded(trained))):
        todo = [p for p in todo if str(seed) not in saved.get(key(p), {})]
        n = sum(1 for p in todo if sizes[_arch(p)][0] <= TRAIN_CAP_MB)
        if n == 0:
            continue
        sp = spec(cifar_zip, seed=seed, n_trials=n, name=name)
        _enqueue_once(sp, url, todo)
        out = run_search(sp, storage_url=url, progress=lambda line: print(line, flush=True))
        if out.stopped:
            break


def _test_accuracy(url: str, study: str, cache: Path, cifar_zip: str) -> dict[str, float]:
    """Top-1 of each finished trial's stored weights on the fixed test subset (cached)."""
    import io

    import numpy as np
    import torch

    from engine.data import DataConfig, load_data
    from engine.models import create_model
    from engine.train import DeviceData, evaluate
    from engine.trial import TrialConfig
    from storage import SQLArtifactStore

    done = json.loads(cache.read_text()) if cache.exists() else {}
    s = load_study(url, study)
    record = StudyRecord.read(s)
    bundle = load_data(DataConfig.model_validate({**DATA, "root": cifar_zip}))
    pick = np.sort(np.random.default_rng(TEST_SEED).permutation(len(bundle.test_y))[:TEST_IMAGES])
    data = DeviceData(bundle.test_x[pick], bundle.test_y[pick], bundle.mean, bundle.std,
                      torch.device("cpu"))
    store = SQLArtifactStore(url)
    for r in read_trials(s):
        if r.state.name != "COMPLETE" or r.screened_out or str(r.number) in done:
            continue
        cfg = TrialConfig.from_dict(r.config)
        torch.manual_seed(0)
        model = create_model(cfg.family, **cfg.model_kwargs(record.data))
        with store.open_reader(r.weights_artifact_id) as f:
            model.load_state_dict(torch.load(io.BytesIO(f.read()), map_location="cpu",
                                             weights_only=True))
        done[str(r.number)] = evaluate(model, data)
        cache.write_text(json.dumps(done))
    return done


def export(cifar_zip: str, workdir: Path, out: Path, command: str) -> dict:
    """Write the compact table; returns its summary."""
    url = f"sqlite:///{workdir / 'table.db'}"
    sizes = _predicted(cifar_zip)
    saved = _saved_runs(out)  # what earlier builds (other machines) exported
    table: dict[str, dict] = {}
    for params in configs():
        mb, n = sizes[_arch(params)]
        table[key(params)] = {"params": canonical(params), "memory_mb": round(mb, 3),
                              "param_count": n, "runs": dict(saved.get(key(params), {}))}
    for name, seed in ((STUDY, 0), (STUDY + "-seed1", 1)):
        try:
            s = load_study(url, name)
        except Exception:  # not started yet
            continue
        test = _test_accuracy(url, name, workdir / f"test-{name}.json", cifar_zip)
        for r in read_trials(s):
            if r.state.name != "COMPLETE" or r.screened_out or r.config is None:
                continue
            entry = table[key(r.params)]
            epochs = r.epochs_run or EPOCHS
            entry["runs"][str(seed)] = {
                "val": [round(v, 5) for v in r.learning_curve],
                "test": None if str(r.number) not in test else round(test[str(r.number)], 5),
                "epoch_s": None if r.wall_time_s is None else round(r.wall_time_s / epochs, 3),
                "peak_memory_mb": round(r.peak_memory_mb, 3)}
    import torch

    meta = {"space": GRID, "epochs": EPOCHS, "train_cap_mb": TRAIN_CAP_MB,
            "data": DATA, "test": {"seed": TEST_SEED, "images": TEST_IMAGES,
                                   "split": "the official CIFAR-10 test split"},
            "reseed": {"seed": RESEED_SEED, "n": RESEEDED, "train_seed": 1},
            "command": command, "machine": f"{platform.machine()}, {platform.node()}",
            "python": platform.python_version(), "torch": torch.__version__,
            # every run's seconds, whichever machine and session trained it
            "train_seconds": round(sum((run["epoch_s"] or 0.0) * EPOCHS for e in table.values()
                                       for run in e["runs"].values()), 1),
            "exported_at": time.strftime("%Y-%m-%d")}
    trained = sum(1 for e in table.values() if "0" in e["runs"])
    summary = {"configs": len(table), "trained": trained,
               "reseeded": sum(1 for e in table.values() if "1" in e["runs"]),
               "over_train_cap": sum(1 for e in table.values() if e["memory_mb"] > TRAIN_CAP_MB)}
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wt") as f:
        json.dump({"meta": {**meta, **summary}, "configs": list(table.values())}, f)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cifar-zip", required=True)
    ap.add_argument("--workdir", default=str(ROOT / "bench" / "tables" / "work"))
    ap.add_argument("--hours", type=float, default=None, help="train for at most this long")
    ap.add_argument("--export", action="store_true", help="write the table from what is trained")
    ap.add_argument("--out", default=str(ROOT / "bench" / "tables" / "cifar_slice.json.gz"))
    args = ap.parse_args()
    workdir = Path(args.workdir)
    if args.export:
        print(json.dumps(export(args.cifar_zip, workdir, Path(args.out),
                                " ".join(["bench/build_table.py", *sys.argv[1:]]))))
    else:
        build(args.cifar_zip, workdir, args.hours, Path(args.out))


if __name__ == "__main__":
    main()

"""A study of N trials shaped like a real search's, written through the study record.

Every trial goes through the steps the driver's recorder takes (``engine/search/recorder.py``):
ask, the candidate's config and predicted size, the run's place, one intermediate value per
epoch, the curve, then COMPLETE (with its constraint violations), screened out over the
memory cap, PRUNED, FAIL or interrupted. Only :func:`storage.write_study` and
:func:`storage.write_trial` write attributes, so the app reads it as it reads a search's.

The study is written to a SQLite file on ``/dev/shm`` when there is one (each write is a
commit: on a disk 1,000 trials take minutes, in memory seconds), then copied to ``path``.
"""

from __future__ import annotations

import math
import random
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import optuna
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from storage import (
    BudgetRecord,
    DriverInfo,
    open_storage,
    optuna_api,
    schema,
    write_study,
    write_trial,
)

__all__ = ["build_study"]

ROOT = Path(__file__).resolve().parent.parent

OBJECTIVES = ["val_accuracy", "peak_memory_mb"]
CAP_MB = 400.0
EPOCHS = 6
FAMILIES = ("wavemix", "cxv")
SPACE = {
    "family": CategoricalDistribution(list(FAMILIES)),
    "model.depth": IntDistribution(1, 8),
    "model.final_dim": IntDistribution(16, 256, step=16),
    "model.dropout": FloatDistribution(0.0, 0.3),
    "train.lr": FloatDistribution(1e-4, 1e-1, log=True),
    "train.batch_size": CategoricalDistribution([32, 64, 128]),
    "train.switch_epoch": IntDistribution(2, EPOCHS),
}


def _spec(name: str, n_trials: int) -> tuple[dict, str]:
    """The quickstart spec under this study's name, budget and cap, validated and stored as
    ``engine search`` stores one (the app's Resume tab reads it), and its hash."""
    from engine.spec import parse_spec, spec_hash

    raw = yaml.safe_load((ROOT / "search_spaces" / "quickstart.yaml").read_text())
    raw["study"]["name"] = name
    raw["search"]["n_trials"] = n_trials
    raw["constraints"]["gpu_ram_mb"] = CAP_MB
    raw["train"]["epochs"] = EPOCHS
    spec = parse_spec(raw)
    return spec.model_dump(mode="json"), spec_hash(spec)


def _one(study: optuna.Study, rng: random.Random, fate: str) -> None:
    """One trial from ask to tell, as the recorder writes it; ``fate`` is how it ends."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trial = study.ask(SPACE)
    tid = optuna_api.trial_id(trial)
    p = trial.params
    size = p["model.depth"] * p["model.final_dim"]
    params = int(1200 * size + rng.randint(0, 5000))
    mem = 20.0 + 0.25 * size * (p["train.batch_size"] / 64) + rng.random() * 10
    if fate == "screened":
        mem = CAP_MB * (1.1 + rng.random())
    write_trial(study, tid, driver_id="bench",
                config={"family": p["family"],
                        "model": {"depth": p["model.depth"], "final_dim": p["model.final_dim"],
                                  "dropout": p["model.dropout"]},
                        "train": {"epochs": EPOCHS, "lr": p["train.lr"],
                                  "batch_size": p["train.batch_size"],
                                  "switch_epoch": p["train.switch_epoch"]}},
                param_count=params, peak_memory_mb=mem, memory_method="predicted")
    if fate == "screened":
        write_trial(study, tid, trained=False, curve=[],
                    state_reason=f"predicted peak {mem:.0f} MB over the cap {CAP_MB:.0f} MB",
                    constraint_violations={"gpu_ram_mb": mem - CAP_MB})
        trial.set_constraint("gpu_ram_mb", mem - CAP_MB)
        study.tell(trial, values=[0.0, mem])
        return
    write_trial(study, tid, device="cuda:0", host="bench-host", run_started_at=time.time())
    ceiling = 0.55 + 0.4 * (1 - math.exp(-size / 400)) - rng.random() * 0.08
    epochs = {"complete": EPOCHS, "pruned": rng.randint(1, EPOCHS - 1),
              "fail": rng.randint(0, 2), "interrupted": 1}[fate]
    curve = [ceiling * (1 - 0.5 ** (e + 1)) for e in range(epochs)]
    for e, v in enumerate(curve, start=1):
        optuna_api.set_intermediate(study, tid, e, v)
    switch = p["train.switch_epoch"] if p["train.switch_epoch"] <= epochs else None
    write_trial(study, tid, curve=curve, epochs_run=epochs, switched_at=switch,
                val_accuracy=curve[-1] if curve else None)
    if fate == "complete":
        write_trial(study, tid, wall_time_s=3.0 + size * 0.05 * rng.uniform(0.8, 1.2),
                    memory_method="measured", trained=True,
                    constraint_violations={"gpu_ram_mb": mem - CAP_MB})
        trial.set_constraint("gpu_ram_mb", mem - CAP_MB)
        study.tell(trial, values=[curve[-1], mem])
    elif fate == "pruned":
        write_trial(study, tid, state_reason=f"stopped by the scheduler after epoch {epochs}")
        study.tell(trial, state=TrialState.PRUNED)
    elif fate == "fail":
        write_trial(study, tid, fail_reason="non-finite loss (nan) at epoch 1; lower train.lr")
        study.tell(trial, state=TrialState.FAIL)
    else:
        write_trial(study, tid, fail_reason=schema.INTERRUPTED_REASON,
                    state_reason="the driver was stopped")
        study.tell(trial, state=TrialState.FAIL)


def _fate(rng: random.Random) -> str:
    x = rng.random()
    return ("complete" if x < 0.82 else "screened" if x < 0.88 else "pruned" if x < 0.95
            else "fail" if x < 0.98 else "interrupted")


def build_study(path: str | Path, name: str, n_trials: int, *, seed: int = 0,
                live: bool = False) -> str:
    """Write a study of ``n_trials`` trials to the SQLite file ``path``; returns its URL.

    Args:
        path: The database file (created; an existing study of that name is an error).
        name: The study's name.
        n_trials: Trials to write (about 82% complete, 6% screened out over the cap, 7%
            pruned, 3% failed, 2% interrupted).
        seed: The random stream of the parameters and fates.
        live: Also leave one trial RUNNING after its first epoch and a driver beating now.
    """
    path = Path(path).resolve()
    scratch = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    try:
        db = scratch / "study.db"
        if path.exists():
            shutil.copy(path, db)
        url = f"sqlite:///{db}"
        study = optuna.create_study(study_name=name, storage=open_storage(url),
                                    directions=["maximize", "minimize"],
                                    sampler=optuna.samplers.RandomSampler(seed=seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(OBJECTIVES)
        spec, digest = _spec(name, n_trials)
        write_study(study, spec=spec, spec_hash=digest, objectives=OBJECTIVES,
                    constraints={"gpu_ram_mb": CAP_MB, "max_params": None},
                    budget=BudgetRecord(n_trials=n_trials, epochs_per_trial=EPOCHS))
        rng = random.Random(seed)
        for _ in range(n_trials):
            _one(study, rng, _fate(rng))
        if live:
            trial = study.ask(SPACE)
            optuna_api.set_intermediate(study, optuna_api.trial_id(trial), 1, 0.3)
            now = time.time()
            write_study(study, driver=DriverInfo(id="bench", host="bench-host", pid=1,
                                                 started_at=now - 60, heartbeat_at=now,
                                                 state="running", running_trials=1))
        open_storage.cache_clear()  # release the scratch file before copying it
        shutil.copy(db, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return f"sqlite:///{path}"

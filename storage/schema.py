"""The keys WaveSearch stores on Optuna studies and trials, and a few shared constants.

Only :mod:`storage.record` reads or writes attributes under these keys (the engine, the app,
export and the benchmarks use its typed records); tests use them to craft what an older
version or another tool left on disk. Values are JSON-serialisable.
"""

from __future__ import annotations

__all__ = [
    "CAP_OF",
    "DEFAULT_STORAGE_URL",
    "INTERRUPTED_REASON",
    "METRICS",
    "DRIVER_PREFIX",
    "DRIVER_STALE_S",
    "STUDY_BUDGET",
    "STUDY_DRIVERS",
    "STUDY_CONSTRAINTS",
    "STUDY_DATA",
    "STUDY_OBJECTIVES",
    "STUDY_RETRAINS",
    "STUDY_SPEC",
    "STUDY_SPEC_HASH",
    "TRIAL_CONFIG",
    "TRIAL_CONSTRAINT_VIOLATIONS",
    "TRIAL_CURVE",
    "TRIAL_DEVICE",
    "TRIAL_HOST",
    "TRIAL_NODE",
    "TRIAL_EPOCHS_RUN",
    "TRIAL_FAIL_REASON",
    "TRIAL_MEMORY_METHOD",
    "TRIAL_PARAM_COUNT",
    "TRIAL_PROBE_LOGITS",
    "TRIAL_RUN_STARTED_AT",
    "TRIAL_PEAK_MEMORY_MB",
    "TRIAL_STATE_REASON",
    "TRIAL_SWITCHED_AT",
    "TRIAL_TUNE_ID",
    "TRIAL_TRAINED",
    "TRIAL_VAL_ACCURACY",
    "TRIAL_WALL_TIME_S",
    "TRIAL_WEIGHTS",
    "TRIAL_DRIVER",
]

# Where studies live unless a spec or a command says otherwise (a file in the working folder).
DEFAULT_STORAGE_URL = "sqlite:///wavesearch.db"

# Metrics a spec may use as objectives (the spec's Literal is derived from this tuple).
METRICS = ("val_accuracy", "peak_memory_mb", "param_count")
# Which cap (a field of the spec's ``constraints``) bounds which metric; uncapped ones absent.
CAP_OF = {"peak_memory_mb": "gpu_ram_mb", "param_count": "max_params"}

# Study user attributes.
STUDY_OBJECTIVES = "objectives"  # list[str], metric name of each objective, in order
STUDY_SPEC = "spec"  # the validated spec as JSON
STUDY_SPEC_HASH = "spec_hash"  # engine.spec.spec_hash of the spec that began the study
STUDY_CONSTRAINTS = "constraints"  # {"gpu_ram_mb": float|None, "max_params": int|None}
STUDY_DATA = "data"  # {"in_channels", "image_size", "num_classes", "classes", "mean", "std"}
# The budget of the search, as the last driver that ran it was given it:
# {"n_trials": int|None, "budget_epochs": int|None, "budget_minutes": float|None,
#  "epochs_per_trial": int}
STUDY_BUDGET = "budget"
# How many driver processes have opened the study (int; a study begun before it was kept
# counts as opened once): the next driver's sampler draws from stream number STUDY_DRIVERS.
STUDY_DRIVERS = "drivers_opened"
# Every `engine retrain` of the study's architectures (engine.export.retrain), oldest first:
# list of {"trial_number": int, "epochs": int, "switch_epoch": int|None, "train_images": int,
# "test_accuracy": float|None, "seconds": float, "path": str (absolute), "device": str,
# "finished_at": float (Unix s)}.
STUDY_RETRAINS = "retrains"
# One study user attribute per driver process (engine search) that works on the study, keyed
# DRIVER_PREFIX + its id: {"host", "pid", "started_at", "heartbeat_at" (Unix s), "state"
# ("running" | "finished" | "stopped"), "deadline" (Unix s or None), "eta_s" (s or None),
# "running_trials" (int)}. A driver refreshes its heartbeat every few seconds while it runs;
# one whose heartbeat is older than DRIVER_STALE_S is dead.
DRIVER_PREFIX = "driver:"
DRIVER_STALE_S = 30.0

# Trial user attributes.
TRIAL_CONFIG = "config"  # TrialConfig.to_dict(): family, model kwargs, train settings
TRIAL_VAL_ACCURACY = "val_accuracy"
TRIAL_CURVE = "val_curve"  # list[float], validation accuracy after each epoch
TRIAL_PARAM_COUNT = "param_count"
TRIAL_PEAK_MEMORY_MB = "peak_memory_mb"
TRIAL_MEMORY_METHOD = "memory_method"  # "predicted" | "measured"
TRIAL_WALL_TIME_S = "wall_time_s"
TRIAL_RUN_STARTED_AT = "run_started_at"  # Unix time the worker began (asked-at is datetime_start)
TRIAL_EPOCHS_RUN = "epochs_run"
TRIAL_SWITCHED_AT = "switched_at"  # first epoch trained with SGD (DualOpT), or None
TRIAL_DEVICE = "device"
TRIAL_HOST = "host"  # the machine the trial ran on
TRIAL_NODE = "ray_node"  # the Ray node id the trial ran on (several nodes may share a host)
TRIAL_TRAINED = "trained"  # False for candidates rejected before training (over a cap)
TRIAL_FAIL_REASON = "fail_reason"
# The fail_reason of a trial cut off by a stopped search (Ctrl-C, kill -9 of the driver): its
# parameters are queued again, and it does not count towards the trial budget.
INTERRUPTED_REASON = "interrupted: the search stopped while this trial was running; re-queued"
TRIAL_STATE_REASON = "state_reason"  # why a trial was pruned or is infeasible
TRIAL_CONSTRAINT_VIOLATIONS = "constraint_violations"  # list[float], <= 0 means satisfied
TRIAL_WEIGHTS = "weights_artifact_id"
TRIAL_TUNE_ID = "tune_trial_id"
TRIAL_DRIVER = "driver_id"  # the driver (engine search process) that runs the trial
# Logits of the trained model on a fixed probe input (see engine.export.probe_input), so an
# exported checkpoint can prove it rebuilds exactly the model the trial trained.
TRIAL_PROBE_LOGITS = "probe_logits"

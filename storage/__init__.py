"""Study storage: Optuna RDB storages by URL, an SQL artifact store, and read-only views.

This package imports neither torch nor ray: the app reads studies through it alone.
"""

from storage.artifacts import SQLArtifactStore
from storage.backend import (
    StudySummary,
    list_studies,
    load_study,
    normalize_url,
    open_storage,
    redact,
)
from storage.views import (
    DriverInfo,
    SearchProgress,
    TrialRow,
    best_accuracy_trial,
    drivers,
    is_feasible,
    memory_cap_mb,
    pareto_numbers,
    search_progress,
    trial_rows,
)

__all__ = [
    "DriverInfo",
    "SQLArtifactStore",
    "SearchProgress",
    "StudySummary",
    "TrialRow",
    "best_accuracy_trial",
    "drivers",
    "is_feasible",
    "list_studies",
    "load_study",
    "memory_cap_mb",
    "normalize_url",
    "open_storage",
    "pareto_numbers",
    "redact",
    "search_progress",
    "trial_rows",
]

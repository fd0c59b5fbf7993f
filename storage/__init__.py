"""Study storage: Optuna RDB storages by URL, the typed study record, an SQL artifact store,
and read-only views.

This package imports neither torch nor ray: the app reads studies through it alone.
"""

from storage.artifacts import SQLArtifactStore
from storage.backend import (
    StudySummary,
    check_search_storage,
    list_studies,
    load_study,
    normalize_url,
    open_storage,
    redact,
)
from storage.front import front_2d, front_numbers
from storage.live import ChangeMark, StudySnapshot, activity, change_mark, listing, snapshot
from storage.prepare import prepare_database
from storage.record import (
    BudgetRecord,
    DriverInfo,
    StudyRecord,
    TrialRecord,
    cap_for,
    read_trials,
    write_study,
    write_trial,
)
from storage.views import (
    SearchProgress,
    TrialRow,
    best_accuracy_trial,
    drivers,
    is_feasible,
    memory_cap_mb,
    pareto_numbers,
    progress_of,
    rows_of,
    search_progress,
    trial_rows,
)

__all__ = [
    "BudgetRecord",
    "ChangeMark",
    "StudySnapshot",
    "activity",
    "change_mark",
    "front_2d",
    "front_numbers",
    "listing",
    "progress_of",
    "rows_of",
    "snapshot",
    "DriverInfo",
    "SQLArtifactStore",
    "SearchProgress",
    "StudyRecord",
    "StudySummary",
    "TrialRecord",
    "TrialRow",
    "best_accuracy_trial",
    "cap_for",
    "check_search_storage",
    "drivers",
    "is_feasible",
    "list_studies",
    "load_study",
    "memory_cap_mb",
    "normalize_url",
    "open_storage",
    "pareto_numbers",
    "prepare_database",
    "read_trials",
    "redact",
    "search_progress",
    "trial_rows",
    "write_study",
    "write_trial",
]

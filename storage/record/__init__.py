"""The study record: what WaveSearch stores on an Optuna study and on each of its trials, typed.

Optuna keeps a study's and a trial's extra data as "user attributes", a bag of JSON values
under string keys. This package is the only code that reads or writes them (the key names are
in :mod:`storage.schema`): the engine, the app, export and the benchmarks see a frozen
:class:`StudyRecord` and :class:`TrialRecord` instead, each with one read
(:meth:`StudyRecord.read`, :meth:`TrialRecord.read`) and one write (:func:`write_study`,
:func:`write_trial`).

The rule of which trials count as trained lives here too (:attr:`TrialRecord.counts_as_trained`):
the search budget, the app's progress and export's choices all ask it.

Adding a trial field: declare it on :class:`TrialRecord` (type, meaning; it is stored under its
own name) and write it where it is produced; every reader then has it. A study field: declare
it on :class:`StudyRecord` and give it its key in ``_STUDY_KEYS``.
"""

from storage.record.study import (
    BudgetRecord,
    DriverInfo,
    StudyRecord,
    cap_for,
    name_objectives,
    summary_objectives,
    write_study,
)
from storage.record.trial import TrialRecord, read_trials, write_trial

__all__ = ["BudgetRecord", "DriverInfo", "StudyRecord", "TrialRecord", "cap_for",
           "name_objectives", "read_trials", "summary_objectives", "write_study", "write_trial"]

"""Preparing a study database: every table WaveSearch uses, created once."""

from __future__ import annotations

from storage.artifacts import create_artifact_table
from storage.backend import normalize_url, open_storage
from storage.locks import database_lock

__all__ = ["prepare_database"]


def prepare_database(url: str) -> None:
    """Create everything WaveSearch stores in the database (Optuna's tables and the artifact
    table), idempotently and under the database lock, so concurrent drivers never race and
    no worker ever creates a table."""
    url = normalize_url(url)
    open_storage(url)  # Optuna's tables (created under the same lock)
    with database_lock(url):
        create_artifact_table(url)

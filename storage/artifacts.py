"""An Optuna artifact store that keeps blobs in the study's own SQL database.

Trial weights then live wherever the study lives (SQLite file or PostgreSQL server), so
every machine of a cluster that can reach the study can also store and fetch weights; no
shared file system is assumed.
"""

from __future__ import annotations

import io
from datetime import datetime, timezone
from typing import BinaryIO

import sqlalchemy as sa

from engine.errors import StorageError
from storage.backend import call_with_retry, engine_kwargs, normalize_url, redact

__all__ = ["SQLArtifactStore", "create_artifact_table"]

_META = sa.MetaData()
_TABLE = sa.Table(
    "wavesearch_artifacts",
    _META,
    sa.Column("artifact_id", sa.String(128), primary_key=True),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def create_artifact_table(url: str) -> None:
    """Create the artifact table if it is missing (called once, when a study is prepared)."""
    engine = sa.create_engine(url, **engine_kwargs(url))
    try:
        _META.create_all(engine, checkfirst=True)
    finally:
        engine.dispose()


class SQLArtifactStore:
    """Implements ``optuna.artifacts``' ArtifactStore protocol on a SQL table.

    Args:
        url: The SQLAlchemy URL of the database (normally the study's storage URL).
    """

    def __init__(self, url: str):
        self._url = normalize_url(url)
        self._engine = sa.create_engine(self._url, **engine_kwargs(self._url))

    def open_reader(self, artifact_id: str) -> BinaryIO:
        """A readable file object of the artifact's bytes."""
        try:
            with self._engine.connect() as conn:
                row = conn.execute(sa.select(_TABLE.c.body)
                                   .where(_TABLE.c.artifact_id == artifact_id)).first()
        except sa.exc.SQLAlchemyError as e:
            raise self._error(f"cannot read artifact {artifact_id!r}", e) from e
        if row is None:
            raise StorageError(f"artifact {artifact_id!r} is not in the store; was the trial's "
                               "weights upload interrupted?")
        return io.BytesIO(row[0])

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        """Store the bytes read from ``content_body`` under ``artifact_id`` (one transaction)."""
        body = content_body.read()

        def insert() -> None:
            with self._engine.begin() as conn:
                conn.execute(_TABLE.insert().values(artifact_id=artifact_id, body=body,
                                                    created_at=datetime.now(timezone.utc)))

        try:
            # A write cut off by a database restart is retried; if the cut-off one was
            # committed after all, the retry's IntegrityError means it is stored.
            call_with_retry(insert, "artifact write", already_done=sa.exc.IntegrityError)
        except sa.exc.IntegrityError as e:
            raise StorageError(f"artifact {artifact_id!r} already exists; artifacts are write-once, "
                               "remove it first") from e
        except sa.exc.SQLAlchemyError as e:
            raise self._error(f"cannot store artifact {artifact_id!r}", e) from e

    def _error(self, what: str, e: Exception) -> StorageError:
        if "wavesearch_artifacts" in str(e) and ("no such table" in str(e) or "does not exist"
                                                  in str(e)):
            return StorageError(f"{what}: the database {redact(self._url)} has no artifact table; "
                                "it is created when a search prepares its study (engine search)")
        return StorageError(f"{what}: {type(e).__name__}: {str(e).splitlines()[0]}")

    def remove(self, artifact_id: str) -> None:
        """Delete the artifact (missing ids are ignored)."""
        with self._engine.begin() as conn:
            conn.execute(_TABLE.delete().where(_TABLE.c.artifact_id == artifact_id))

    def dispose(self) -> None:
        """Close pooled connections."""
        self._engine.dispose()

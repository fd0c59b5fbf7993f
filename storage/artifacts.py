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
from storage.backend import engine_kwargs, normalize_url

__all__ = ["SQLArtifactStore"]

_META = sa.MetaData()
_TABLE = sa.Table(
    "wavesearch_artifacts",
    _META,
    sa.Column("artifact_id", sa.String(128), primary_key=True),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


class SQLArtifactStore:
    """Implements ``optuna.artifacts``' ArtifactStore protocol on a SQL table.

    Args:
        url: The SQLAlchemy URL of the database (normally the study's storage URL).
    """

    def __init__(self, url: str):
        url = normalize_url(url)
        self._engine = sa.create_engine(url, **engine_kwargs(url))
        _META.create_all(self._engine, checkfirst=True)

    def open_reader(self, artifact_id: str) -> BinaryIO:
        """A readable file object of the artifact's bytes."""
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(_TABLE.c.body).where(_TABLE.c.artifact_id == artifact_id)).first()
        if row is None:
            raise StorageError(f"artifact {artifact_id!r} is not in the store; was the trial's "
                               "weights upload interrupted?")
        return io.BytesIO(row[0])

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        """Store the bytes read from ``content_body`` under ``artifact_id`` (one transaction)."""
        body = content_body.read()
        try:
            with self._engine.begin() as conn:
                conn.execute(_TABLE.insert().values(artifact_id=artifact_id, body=body,
                                                    created_at=datetime.now(timezone.utc)))
        except sa.exc.IntegrityError as e:
            raise StorageError(f"artifact {artifact_id!r} already exists; artifacts are write-once, "
                               "remove it first") from e
        except sa.exc.SQLAlchemyError as e:
            raise StorageError(f"cannot store artifact {artifact_id!r}: {type(e).__name__}: "
                               f"{str(e).splitlines()[0]}") from e

    def remove(self, artifact_id: str) -> None:
        """Delete the artifact (missing ids are ignored)."""
        with self._engine.begin() as conn:
            conn.execute(_TABLE.delete().where(_TABLE.c.artifact_id == artifact_id))

    def dispose(self) -> None:
        """Close pooled connections."""
        self._engine.dispose()

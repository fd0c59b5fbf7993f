"""Output files of export and retrain: refused before any work, written atomically.

An output path is checked before a checkpoint is built or a model retrained (minutes of work
must not end in "permission denied"), and a file is written to a temporary name beside it and
renamed, so a failure never leaves a partial file, nor folders created for it.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

from engine.errors import CheckpointError

__all__ = ["check_output_path", "write_atomic"]


def _existing_ancestor(path: Path) -> Path:
    """The nearest folder above ``path`` that exists (where new files or folders would go)."""
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path(path.anchor or ".")


def check_output_path(out: str | os.PathLike) -> Path:
    """Refuse an output path that cannot be written; leaves nothing behind.

    Args:
        out: The file to write (missing parent folders are allowed: they are made on write).

    Returns:
        ``out`` as an absolute path.

    Raises:
        CheckpointError: ``out`` is a directory, sits under a file, or its folder refuses
            new files (read-only, a virtual file system such as /proc).
    """
    path = Path(out).expanduser().absolute()
    if path.is_dir():
        raise CheckpointError(f"output path {out} is a directory; name a file in it, e.g. "
                              f"{Path(out) / 'model.safetensors'}")
    base = _existing_ancestor(path)
    if not base.is_dir():
        raise CheckpointError(f"cannot write {out}: {base} is a file, not a folder; choose "
                              "another output path")
    try:  # the only reliable test: os.access says yes for root even on /proc
        fd, probe = tempfile.mkstemp(dir=base, prefix=".wavesearch-write-test-")
    except OSError as e:
        raise CheckpointError(f"cannot write {out}: {base} does not accept new files "
                              f"({e.strerror}); choose a writable folder") from None
    os.close(fd)
    os.unlink(probe)
    return path


def write_atomic(out: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``out`` through a temporary file and a rename.

    Returns:
        ``out`` as an absolute path.

    Raises:
        CheckpointError: see :func:`check_output_path`, or the write itself failed (disk
            full); then neither the file nor any folder made for it is left behind.
    """
    path = check_output_path(out)
    made = [p for p in reversed(path.parents) if not p.exists()]  # outermost first
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A plain exclusive create, not mkstemp: the file gets the usual umask permissions.
        tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:
                break
        raise CheckpointError(f"cannot write {out} ({e.strerror or e}); choose another output "
                              "path or free some space") from None
    return path

"""What ``--data PATH`` means: which loader reads the path, decided by the path alone.

A user who names data on the command line wants to train on it, so the path picks the loader
whatever dataset the spec names (see :func:`resolve_data_source` for the rules). This covers
the two common cases: the CIFAR-10 spec given the JPEG zip of CIFAR-10 (read by
``imagefolder``), and the digits quickstart given one's own images. The spec's dataset only
decides what an empty folder means: ``cifar10`` downloads into it; nothing else can read it.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.data.cifar import ARCHIVE_NAME, FOLDER_NAME, find_cifar10
from engine.errors import DataError

__all__ = ["ACCEPTED", "resolve_data_source"]

ACCEPTED = (f"a .zip or folder of class folders (imagefolder), or {ARCHIVE_NAME} or its "
            f"extracted {FOLDER_NAME} folder (cifar10)")
_ZIP = (".zip",)
_TAR = (".tar.gz", ".tgz", ".tar")


def _visible(name: str) -> bool:
    return not name.startswith(".") and name != "__MACOSX"


def _kind(path: Path) -> tuple[str | None, str]:
    """(the loader that reads ``path`` or None, what the path is in words)."""
    name = path.name.lower()  # X.ZIP and x.Zip are zips too
    if path.is_file():
        if name.endswith(_ZIP):
            return "imagefolder", "a zip"
        if name.endswith(_TAR):
            return "cifar10", "a tar archive"
        return None, "a file that is neither a .zip nor a .tar.gz"
    if not path.is_dir():
        return None, "neither a file nor a folder"
    if find_cifar10(path) is not None:
        return "cifar10", "a CIFAR-10 folder"
    try:
        entries = [e for e in path.iterdir() if _visible(e.name)]
    except OSError as e:
        return None, f"an unreadable folder ({e.strerror})"
    if any(e.is_dir() for e in entries):
        return "imagefolder", "a folder of folders"
    return None, "a folder with no class folders" if entries else "an empty folder"


def resolve_data_source(path: str, dataset: str) -> tuple[str, str]:
    """The (dataset, root) that read the data ``--data`` names.

    =====================================================  ===========================
    ``path`` is                                            read by
    =====================================================  ===========================
    missing                                                refused (DataError)
    a file ending ``.zip`` (any case)                      ``imagefolder``
    a file ending ``.tar.gz``, ``.tgz``, ``.tar``          ``cifar10``
    a folder that is or holds ``cifar-10-batches-py``,
    or holds ``cifar-10-python.tar.gz``                    ``cifar10``
    a folder with sub-folders (class folders, or
    ``train/`` and ``test/``)                              ``imagefolder``
    an empty folder, when ``dataset`` is ``cifar10``       ``cifar10`` (downloads into it)
    anything else                                          refused (DataError)
    =====================================================  ===========================

    Only names are looked at here; the loader checks the contents (its ``prepare`` step).

    Args:
        path: The value of ``--data`` as the user typed it (``~`` is expanded).
        dataset: The spec's ``data.dataset``.

    Returns:
        (dataset, root): the loader's name and the absolute path for ``data.root``.

    Raises:
        DataError: the path does not exist or no loader reads it; the message names the path
            and what is accepted.
    """
    where = f"--data {path!r}"
    if not path.strip():  # Path("") is the current folder: never what an empty value meant
        raise DataError(f"{where}: empty path; fix: give {ACCEPTED}")
    p = Path(path).expanduser()
    if not p.exists():
        fix = "correct the path"
        if dataset == "cifar10":
            fix += " (or create an empty folder there to download CIFAR-10 into)"
        raise DataError(f"{where}: no such file or folder; fix: {fix}; accepted: {ACCEPTED}")
    kind, what = _kind(p)
    if kind is None and what == "an empty folder" and dataset == "cifar10":
        kind = "cifar10"
    if kind is None:
        raise DataError(f"{where}: is {what}, which no data loader reads; fix: give {ACCEPTED}")
    return kind, os.path.abspath(p)

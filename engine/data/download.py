"""Fetching a file over the network (or a ``file://`` URL) into the cache, md5-checked.

The bytes stream into a temporary file next to the destination while their md5 is computed;
only a file whose md5 matches is renamed to its final name (atomically), so an interrupted or
corrupted download never sits in the cache looking finished.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from engine.errors import DataError

__all__ = ["download", "file_md5"]

_CHUNK = 1 << 20  # 1 MiB


def file_md5(path: Path) -> str:
    """Hex md5 of a file's bytes (md5 because that is what data-set authors publish)."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: Path, md5: str, *, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` unless ``dest`` exists, checking the md5 of the bytes.

    Args:
        url: ``https://``, ``http://`` or ``file://`` address.
        dest: final path; its folder is created.
        md5: expected hex md5 of the file.
        timeout: seconds to wait for the connection and for each read.

    Returns:
        ``dest``.

    Raises:
        DataError: the address cannot be reached (no network) or the md5 differs; nothing is
            left at ``dest`` in either case.
    """
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}-", suffix=".part", dir=dest.parent)
    try:
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(_CHUNK):
                h.update(chunk)
                f.write(chunk)
        if h.hexdigest() != md5.lower():
            raise DataError(f"{url}: downloaded file has md5 {h.hexdigest()}, expected {md5}; "
                            "rule: a download must match its published checksum; fix: retry "
                            "later (the transfer may have been corrupted) or place a verified "
                            f"copy at {dest}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(f"{url}: download failed ({reason}); fix: check the network, or copy "
                        f"the file to {dest} by hand, or point data.root at an existing "
                        "copy") from e
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest

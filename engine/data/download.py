"""Fetching a file over the network (or a ``file://`` URL) into the cache, md5-checked.

The bytes stream into a temporary file next to the destination while their md5 is computed;
only a file whose md5 matches is renamed to its final name (atomically), so an interrupted or
corrupted download never sits in the cache looking finished. Folders created for a download
that fails are removed again, so a failed first run leaves the disk as it found it.
"""

from __future__ import annotations

import hashlib
import http.client
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


def download(url: str, dest: Path, md5: str, *, timeout: float = 30.0,
             offline_fix: str | None = None) -> Path:
    """Download ``url`` to ``dest`` unless ``dest`` exists, checking the md5 of the bytes.

    Args:
        url: ``https://``, ``http://`` or ``file://`` address.
        dest: final path; its folder is created (and removed again if the download fails).
        md5: expected hex md5 of the file.
        timeout: seconds to wait for the connection and for each read.
        offline_fix: what to tell the user when ``url`` cannot be reached (the ``fix:`` part
            of the message); by default: check the network or copy the file by hand.

    Returns:
        ``dest``.

    Raises:
        DataError: the address cannot be reached (no network) or the md5 differs; nothing is
            left at ``dest`` in either case.
    """
    if dest.is_file():
        return dest
    created = [d for d in (dest.parent, *dest.parent.parents) if not d.exists()]  # deepest first
    try:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}-", suffix=".part", dir=dest.parent)
        except OSError as e:
            raise DataError(f"{dest.parent}: cannot write the download there ({e.strerror or e}); "
                            "fix: point data.root or data.cache_dir at a writable folder") from e
        _fetch(url, (fd, Path(tmp)), dest, md5, timeout, offline_fix)
    except BaseException:
        for d in created:
            try:
                d.rmdir()  # only while empty: never removes what someone else put there
            except OSError:
                break
        raise
    return dest


def _fetch(url: str, part: tuple[int, Path], dest: Path, md5: str, timeout: float,
           offline_fix: str | None) -> None:
    """Stream ``url`` into the open temporary file ``part`` (descriptor, path) beside
    ``dest``; rename it to ``dest`` if the md5 fits, else remove it."""
    fd, tmp = part
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
    # URLError and timeouts are OSErrors; a connection cut mid-body is an HTTPException; a
    # malformed address (e.g. a mistyped mirror) is a ValueError.
    except (OSError, http.client.HTTPException, ValueError) as e:
        reason = " ".join(str(getattr(e, "reason", e) or type(e).__name__).split())  # one line
        fix = offline_fix or (f"check the network, or copy the file to {dest} by hand, or point "
                              "data.root at an existing copy")
        raise DataError(f"{url}: download failed ({reason}); fix: {fix}") from e
    finally:
        tmp.unlink(missing_ok=True)

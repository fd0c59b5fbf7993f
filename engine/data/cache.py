"""The decoded-array cache: decode a source once, then load uint8 arrays from one ``.npz``.

Layout under the cache root (``request.cache_dir``, else ``$WAVESEARCH_CACHE``, else
``~/.cache/wavesearch``)::

    downloads/<archive>            files fetched from the network (md5-checked)
    decoded/<name>-<key>.npz       uncompressed npz of uint8 images, int64 labels, class names

The key is a sha256 over the loader's *key parts*: the cache format version, the decoding
options (e.g. the resize) and a content fingerprint of the source:

- a single file (a ``.zip``, a ``.tar.gz``) is fingerprinted by the sha256 of its bytes:
  ~0.1 s for the 60 MB CIFAR-10 zip, ~0.25 s for the 170 MB official archive, cheap next to
  decoding, and a copied or renamed file hits the same entry;
- a folder of many small files (an ImageFolder tree of 60,000 JPEGs) is fingerprinted by the
  sorted list of (relative path, size, mtime in ns) of its files, since opening every file
  would cost as much as half a decode. Editing a file in place updates its mtime.

Entries are written to a temporary file in the same folder and renamed over the final name
(``os.replace`` is atomic on POSIX), so a crash or a decode error midway never leaves a
partial entry that a later load would use. An entry that fails to load is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

__all__ = ["CACHE_ENV", "CACHE_FORMAT", "cache_root", "cached_arrays", "file_sha256",
           "tree_fingerprint"]

CACHE_ENV = "WAVESEARCH_CACHE"
CACHE_FORMAT = 1  # bump when the meaning of a cached array changes
_CHUNK = 1 << 20  # 1 MiB reads: large enough that hashing runs at memory speed

log = logging.getLogger(__name__)


def cache_root(cache_dir: str | None) -> Path:
    """The cache folder: ``cache_dir`` if given, else ``$WAVESEARCH_CACHE``, else ~/.cache."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "wavesearch"


def file_sha256(paths: Iterable[Path]) -> str:
    """sha256 over the bytes of ``paths`` in order (each path's name and size included)."""
    h = hashlib.sha256()
    for path in paths:
        h.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def tree_fingerprint(root: Path, files: Iterable[str]) -> str:
    """sha256 of the sorted (relative path, size, mtime_ns) of ``files`` under ``root``."""
    h = hashlib.sha256()
    for rel in sorted(files):
        st = (root / rel).stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _entry_path(cache_dir: Path, name: str, key_parts: dict) -> Path:
    blob = json.dumps({"format": CACHE_FORMAT, **key_parts}, sort_keys=True).encode()
    return cache_dir / "decoded" / f"{name}-{hashlib.sha256(blob).hexdigest()[:24]}.npz"


def _read_entry(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a cache entry, or None when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        # Only reachable if someone damaged the file by hand: our writes are atomic.
        log.warning("cache entry %s is unreadable (%s); decoding the source again", path, e)
        return None


def _write_entry(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically: temp file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # uncompressed: loads at disk speed, images barely compress
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache should stay readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


Arrays = dict[str, np.ndarray]


def cached_arrays(cache_dir: Path, name: str, key_parts: dict,
                  build: Callable[[], Arrays]) -> tuple[Arrays, Path, bool]:
    """Load the entry for ``key_parts`` or build it with ``build()`` and store it.

    Args:
        cache_dir: the cache root.
        name: a readable prefix of the entry's file name (the loader's name).
        key_parts: JSON-serialisable values that determine the arrays (source fingerprint,
            decoding options). Two requests with equal key parts share an entry.
        build: decodes the source; its exceptions propagate and nothing is written.

    Returns:
        (arrays, entry path, True when read from the cache).
    """
    path = _entry_path(cache_dir, name, key_parts)
    arrays = _read_entry(path)
    if arrays is not None:
        return arrays, path, True
    arrays = build()
    try:
        _write_entry(path, arrays)
    except OSError as e:
        # A read-only or full cache must not stop the run: the arrays are in memory already.
        log.warning("could not write cache entry %s (%s); set data.cache_dir or $%s to a "
                    "writable folder to decode only once", path, e, CACHE_ENV)
    return arrays, path, False

"""CIFAR-10 from the official python archive (``cifar-10-python.tar.gz``).

Where the archive comes from:

- with ``data.root``: the archive itself, a folder holding it, or its extracted
  ``cifar-10-batches-py`` folder (or a folder holding that); a root folder that is missing or
  empty (hidden files aside) is downloaded into, as ``<root>/cifar-10-python.tar.gz``;
- without: ``<cache>/downloads/cifar-10-python.tar.gz``, downloaded on first use.

Downloads come from the canonical address, or from ``$WAVESEARCH_CIFAR10_URL`` (a mirror of
the same file), and are md5-checked. Offline, the error names the way out: the JPEG copy of
CIFAR-10 (``cifar10-jpeg.zip``), read by the ``imagefolder`` loader through ``--data``.

A local copy under ``root`` is not md5-checked (a re-packed copy is legitimate); it is
checked for structure instead: every batch present, 10,000 images of 3x32x32 each, labels
0..9. The pickles are read with an unpickler that only builds numpy arrays, so a tampered
archive cannot run code. Decoded arrays are cached by the archive's sha256
(see :mod:`engine.data.cache`).
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import shlex
import tarfile
import zlib
from pathlib import Path

import numpy as np

from engine.data.base import DataBundle, DataConfig, Progress, make_bundle, register_dataset
from engine.data.cache import cache_root, cached_arrays, file_sha256
from engine.data.download import download
from engine.errors import DataError

__all__ = ["CIFAR10_MD5", "CIFAR10_URL", "SHARED_JPEG_ZIP", "URL_ENV", "cifar10_url",
           "fetch_cifar10", "find_cifar10", "load_cifar10", "locate_cifar10", "read_cifar10"]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
URL_ENV = "WAVESEARCH_CIFAR10_URL"  # a mirror of the official archive (same bytes, same md5)
# The JPEG class-folder copy of CIFAR-10 kept beside the repository (read by imagefolder):
# the offline way out that the download error points to. parents[3] = the repository's parent.
SHARED_JPEG_ZIP = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-jpeg.zip"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
FOLDER_NAME = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
_MEMBERS = (*TRAIN_BATCHES, TEST_BATCH, META)

# What the official pickles (Python 2 cPickle of numpy arrays) and numpy 2 pickles reference.
_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]  # numpy's _reconstruct, whatever its module
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 protocol-2 pickles spell bytes
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can build dicts, lists, bytes and numpy arrays, and nothing else."""

    def find_class(self, module: str, name: str):  # noqa: D102 - pickle API
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def _unpickle(data: bytes, name: str) -> dict[str, object]:
    """A batch pickle as a dict with str keys (the official files use py2 byte-string keys)."""
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise DataError(f"{name}: not a readable CIFAR-10 batch ({e}); fix: delete the file "
                        "and download the archive again") from e
    if not isinstance(obj, dict):
        raise DataError(f"{name}: expected a pickled dict, found {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _batch_arrays(batch: dict[str, object], name: str) -> tuple[np.ndarray, np.ndarray]:
    """(x uint8 (N, 3, 32, 32), y int64 (N,)) of one batch dict, structure-checked."""
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32 or labels is None or len(labels) != len(data):
        raise DataError(f"{name}: expected 'data' uint8 (N, 3072) and N 'labels'; the file is "
                        "not a CIFAR-10 batch; fix: delete it and download the archive again")
    y = np.asarray(labels, dtype=np.int64)
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{name}: labels outside 0..9; fix: download the archive again")
    # Rows are 1024 red, 1024 green, 1024 blue values, each row-major 32x32: already CHW.
    return data.reshape(-1, 3, 32, 32), y


def _source_files(source: Path) -> list[Path]:
    """The files a source consists of: the archive, or the batch files of a folder."""
    if not source.is_dir():
        return [source]
    missing = [m for m in _MEMBERS if not (source / m).is_file()]
    if missing:
        raise DataError(f"{source}: missing {', '.join(missing)}; rule: the extracted "
                        f"{FOLDER_NAME} folder holds {', '.join(_MEMBERS)}; fix: extract the "
                        "archive again")
    return [source / m for m in _MEMBERS]


def _read_members(source: Path) -> dict[str, bytes]:
    """The raw bytes of the batch files, from the archive or the extracted folder."""
    if source.is_dir():
        return {f.name: f.read_bytes() for f in _source_files(source)}
    found: dict[str, bytes] = {}
    try:
        # Iterate in archive order: getmember() would scan the whole gzip stream first and
        # then seek backwards, decompressing it twice.
        with tarfile.open(source, "r:*") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in _MEMBERS and base not in found:
                    found[base] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"{source}: truncated or corrupt archive ({e}); fix: delete it and "
                        f"download {CIFAR10_URL} again (md5 {CIFAR10_MD5})") from e
    missing = [m for m in _MEMBERS if m not in found]
    if missing:
        raise DataError(f"{source}: archive lacks {', '.join(missing)}; it is truncated or not "
                        f"the CIFAR-10 python archive; fix: download {CIFAR10_URL} again")
    return found


def read_cifar10(source: Path) -> dict[str, np.ndarray]:
    """Decode an archive or extracted folder into train/test uint8 arrays and class names."""
    raw = _read_members(source)
    parts = [_batch_arrays(_unpickle(raw[m], f"{source}:{m}"), f"{source}:{m}")
             for m in TRAIN_BATCHES]
    test_x, test_y = _batch_arrays(_unpickle(raw[TEST_BATCH], f"{source}:{TEST_BATCH}"),
                                   f"{source}:{TEST_BATCH}")
    names = _unpickle(raw[META], f"{source}:{META}").get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise DataError(f"{source}:{META}: expected 10 'label_names'; fix: download again")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return {
        "train_x": np.concatenate([p[0] for p in parts]),
        "train_y": np.concatenate([p[1] for p in parts]),
        "test_x": np.ascontiguousarray(test_x),
        "test_y": test_y,
        "classes": np.array(classes),
    }


def find_cifar10(root: Path) -> Path | None:
    """The archive or batches folder that ``root`` is or holds, or None when it has neither."""
    if root.is_file():
        return root
    if root.is_dir():
        if (root / TRAIN_BATCHES[0]).is_file():
            return root
        for candidate in (root / FOLDER_NAME, root / ARCHIVE_NAME):
            if candidate.exists():
                return candidate
    return None


def _is_empty(folder: Path) -> bool:
    """No visible entries: hidden files (``.DS_Store``, a killed download's ``.part``) aside."""
    try:
        return not any(not entry.name.startswith(".") for entry in folder.iterdir())
    except OSError as e:
        raise DataError(f"data.root {str(folder)!r} cannot be listed ({e.strerror or e}); fix: "
                        "make it readable or choose another folder") from e


def cifar10_url() -> str:
    """Where the archive is downloaded from: ``$WAVESEARCH_CIFAR10_URL``, else the official
    address (read at each call, so a mirror set after import counts)."""
    return os.environ.get(URL_ENV) or CIFAR10_URL


def _offline_fix(dest: Path) -> str:
    """The ``fix:`` of a failed download: the JPEG zip through --data, or a copy by hand."""
    jpeg = shlex.quote(str(SHARED_JPEG_ZIP)) if SHARED_JPEG_ZIP.is_file() \
        else "<path to cifar10-jpeg.zip>"
    return (f"check the network, or train on the JPEG copy of CIFAR-10 with --data {jpeg}, "
            f"or place {ARCHIVE_NAME} (md5 {CIFAR10_MD5}) at {dest}")


def fetch_cifar10(cache_dir: Path, *, url: str | None = None, md5: str | None = None) -> Path:
    """The cached official archive, downloaded (md5-checked) on first use."""
    return _fetch(cache_dir / "downloads" / ARCHIVE_NAME, url=url, md5=md5)


def _fetch(dest: Path, *, url: str | None = None, md5: str | None = None,
           progress: Progress | None = None) -> Path:
    """The official archive at ``dest``, downloaded unless it is there already.

    Args:
        dest: Where the archive is (to be) stored.
        url: Address to download from (default :func:`cifar10_url`).
        md5: Expected md5 (default :data:`CIFAR10_MD5`, looked up at call time).
        progress: Receives one line before a download starts.
    """
    url = url or cifar10_url()
    if progress is not None and not dest.is_file():
        progress(f"downloading CIFAR-10 (170 MB, once) from {url} to {dest}")
    return download(url, dest, md5 or CIFAR10_MD5, offline_fix=_offline_fix(dest))


def locate_cifar10(request: DataConfig, progress: Progress | None = None) -> Path:
    """The archive or extracted folder a request reads, downloaded first if there is none.

    Raises:
        DataError: ``data.root`` is a folder holding other things, or the download failed
            (the message names ``--data`` with the JPEG zip as the offline way out).
    """
    if not request.root:
        dest = cache_root(request.cache_dir) / "downloads" / ARCHIVE_NAME
        return _fetch(dest, progress=progress)
    root = Path(request.root).expanduser()
    found = find_cifar10(root)
    if found is not None:
        return found
    if root.is_dir() and not _is_empty(root):
        raise DataError(f"data.root {str(root)!r} holds no CIFAR-10 but other files; rule: root "
                        f"is {ARCHIVE_NAME}, its extracted {FOLDER_NAME} folder, a folder holding "
                        "either, or an empty or missing folder to download into; fix: correct "
                        "the path, or remove data.root to download into the cache")
    # A missing root named like the archive is where the archive goes; otherwise a folder.
    dest = root if root.name.lower().endswith((".tar.gz", ".tgz")) else root / ARCHIVE_NAME
    return _fetch(dest, progress=progress)


@register_dataset("cifar10", prepare=locate_cifar10)
def load_cifar10(request: DataConfig) -> DataBundle:
    """CIFAR-10: 50,000 training and 10,000 test RGB images of 32x32, ten classes."""
    source = locate_cifar10(request)
    arrays, entry, hit = cached_arrays(cache_root(request.cache_dir), "cifar10",
                                       {"sha256": file_sha256(_source_files(source))},
                                       lambda: read_cifar10(source))
    return make_bundle(arrays["train_x"], arrays["train_y"], tuple(arrays["classes"].tolist()),
                       request, test_x=arrays["test_x"], test_y=arrays["test_y"],
                       source=f"cifar10 {source} ({'cached' if hit else 'decoded'}: {entry})")

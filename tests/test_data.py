"""The data contract: every registered loader, the cache, downloads and every bad-file case.

All sources are tiny and local: a few dozen members of the shared CIFAR-10 JPEG zip, PNGs
written here, and a fake ``cifar-10-python.tar.gz`` with the official pickle layout served
through ``file://`` and a local HTTP server. No network, CPU only, a few seconds in all.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import pickle
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.data import (
    DATASETS,
    DataConfig,
    cache,
    cifar,
    imagefolder,
    load_data,
    prepare_data,
    resolve_data_source,
)
from engine.data.base import _stratified_cap, channel_stats, stratified_split
from engine.data.download import download
from engine.errors import ConfigError, DataError

# CI clones the repo with shared/ beside it: find the zip relative to the checkout.
SHARED_ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.zip"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]


# ---------------------------------------------------------------- sources built in tmp_path

def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _write_zip(path: Path, files: dict[str, bytes], dirs: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for d in dirs:
            z.writestr(d.rstrip("/") + "/", b"")
        for rel, data in files.items():
            z.writestr(rel, data)
    return path


def _gray_tree(n_per_class: int = 6, size: tuple[int, int] = (10, 12)) -> dict[str, bytes]:
    """PNG class folders (3 classes, train + test), grayscale, non-square (H, W) = size."""
    rng = np.random.default_rng(0)
    files = {}
    for split, n in (("train", n_per_class), ("test", 2)):
        for k, cls in enumerate(("a", "b", "c")):
            for i in range(n):
                files[f"data/{split}/{cls}/{i}.png"] = _png(
                    rng.integers(0, 50, size, dtype=np.uint8) + 60 * k)
    return files


@pytest.fixture(scope="module")
def jpeg_members() -> dict[str, bytes]:
    """60 members of the shared zip: 3 classes x (16 train + 4 test)."""
    if not SHARED_ZIP.is_file():
        pytest.fail(f"{SHARED_ZIP} is missing: the repository must sit beside shared/ (CI's layout)")
    with zipfile.ZipFile(SHARED_ZIP) as z:
        return {f"cifar10/{split}/{cls}/{i:04d}.jpg": z.read(f"cifar10/{split}/{cls}/{i:04d}.jpg")
                for split, n in (("train", 16), ("test", 4))
                for cls in ("airplane", "cat", "ship") for i in range(n)}


def _batch(n: int, seed: int) -> dict[bytes, object]:
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"fake", b"labels": [int(v) for v in np.arange(n) % 10],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [b"x.png"] * n}


def _fake_cifar_files(n: int = 20) -> dict[str, bytes]:
    """The official member layout, with byte-string keys as in the real (Python 2) pickles."""
    files = {f"cifar-10-batches-py/data_batch_{i}": pickle.dumps(_batch(n, i), protocol=2)
             for i in range(1, 6)}
    files["cifar-10-batches-py/test_batch"] = pickle.dumps(_batch(n, 9), protocol=2)
    files["cifar-10-batches-py/batches.meta"] = pickle.dumps(
        {b"label_names": [c.encode() for c in CIFAR_CLASSES], b"num_cases_per_batch": n},
        protocol=2)
    return files


def _write_tgz(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for rel, data in files.items():
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _no_cache_entries(cache: Path) -> bool:
    return not any(p.is_file() for p in cache.rglob("*")) if cache.exists() else True


# ------------------------------------------------------------------------- the contract

def test_registry_holds_every_kind():
    assert set(DATASETS.names()) == {"cifar10", "digits", "imagefolder", "synthetic"}
    from engine.data.base import PREPARERS

    assert set(PREPARERS) == {"cifar10", "imagefolder"}  # the loaders that read files


def _request(kind: str, tmp_path: Path, members: dict[str, bytes] | None) -> DataConfig:
    cache = str(tmp_path / "cache")
    if kind in ("digits", "synthetic"):
        return DataConfig(dataset=kind, cache_dir=cache)
    if kind == "jpeg-zip":
        root = _write_zip(tmp_path / "c.zip", members)
    elif kind == "png-dir":
        root = _write_tree(tmp_path / "t", _gray_tree()) / "data"
    elif kind == "cifar-archive":
        root = _write_tgz(tmp_path / "a.tar.gz", _fake_cifar_files())
    else:
        assert kind == "cifar-folder"
        root = _write_tree(tmp_path, _fake_cifar_files())
    dataset = "cifar10" if kind.startswith("cifar") else "imagefolder"
    return DataConfig(dataset=dataset, root=str(root), cache_dir=cache, val_fraction=0.25)


@pytest.mark.parametrize("kind", ["digits", "synthetic", "jpeg-zip", "png-dir", "cifar-archive",
                                  "cifar-folder"])
def test_every_source_fills_the_bundle_contract(kind, tmp_path, request):
    members = request.getfixturevalue("jpeg_members") if kind == "jpeg-zip" else None
    b = load_data(_request(kind, tmp_path, members))
    for x, y in ((b.train_x, b.train_y), (b.val_x, b.val_y)):
        assert x.dtype == np.uint8 and x.ndim == 4 and x.shape[1] in (1, 3)
        assert y.dtype == np.int64 and len(y) == len(x) and 0 <= y.min() and y.max() < b.num_classes
    assert b.val_x.shape[1:] == b.train_x.shape[1:]
    assert set(np.unique(b.val_y)) == set(np.unique(b.train_y))  # stratified: every class in both
    assert len(b.mean) == len(b.std) == b.in_channels
    assert np.allclose(b.mean, (b.train_x / 255.0).mean(axis=(0, 2, 3)))  # stats of train only
    if kind not in ("digits", "synthetic"):
        assert b.test_x.shape[1:] == b.train_x.shape[1:] and b.test_y.dtype == np.int64
    if kind == "jpeg-zip":
        assert b.classes == ("airplane", "cat", "ship") and b.train_x.shape[1:] == (3, 32, 32)
        assert len(b.train_x) + len(b.val_x) == 48 and len(b.test_x) == 12
    if kind == "png-dir":
        assert b.train_x.shape[1:] == (1, 10, 12)  # grayscale, (H, W) kept
    if kind.startswith("cifar"):
        assert b.classes == tuple(CIFAR_CLASSES) and len(b.test_x) == 20
        raw = pickle.loads(_fake_cifar_files()["cifar-10-batches-py/test_batch"])[b"data"]
        assert np.array_equal(b.test_x.reshape(20, -1), raw)  # CHW layout of the rows


def test_split_is_seeded_disjoint_stratified_and_caps_are_exact():
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    tr, va = stratified_split(y, 0.2, seed=3)
    assert not set(tr) & set(va) and len(tr) + len(va) == len(y)
    assert np.array_equal(np.bincount(y[va]), [10, 6, 3, 1])
    assert np.array_equal(tr, stratified_split(y, 0.2, seed=3)[0])
    assert not np.array_equal(tr, stratified_split(y, 0.2, seed=4)[0])
    keep = _stratified_cap(y, 17, seed=0)
    assert len(keep) == 17 and np.array_equal(np.bincount(y[keep]), [8, 5, 3, 1])


def test_caps_and_resize_apply_to_every_loader():
    b = load_data(DataConfig(dataset="digits", train_size=100, val_size=30, image_size=16))
    assert b.train_x.shape == (100, 1, 16, 16) and b.val_x.shape == (30, 1, 16, 16)


def test_channel_stats_are_exact():
    x = np.random.default_rng(0).integers(0, 256, (7, 3, 5, 4), dtype=np.uint8)
    mean, std = channel_stats(x)
    assert np.allclose(mean, (x / 255.0).mean(axis=(0, 2, 3)))
    assert np.allclose(std, (x / 255.0).std(axis=(0, 2, 3)))


def test_mixed_sizes_need_image_size_and_mixed_modes_widen_to_rgb(tmp_path):
    files = _gray_tree()
    files["data/train/a/big.png"] = _png(np.zeros((20, 20, 3), np.uint8))
    root = str(_write_tree(tmp_path, files) / "data")
    with pytest.raises(DataError, match=r"big\.png: image is 20x20 .*image_size"):
        load_data(DataConfig(dataset="imagefolder", root=root, cache_dir=str(tmp_path / "c")))
    b = load_data(DataConfig(dataset="imagefolder", root=root, cache_dir=str(tmp_path / "c"),
                              image_size=8))
    assert b.train_x.shape[1:] == (3, 8, 8) and b.test_x.shape[1:] == (3, 8, 8)


def test_class_folder_layout_without_splits(tmp_path):
    files = {k.replace("data/train/", "x/"): v for k, v in _gray_tree().items() if "/train/" in k}
    b = load_data(DataConfig(dataset="imagefolder", root=str(_write_tree(tmp_path, files) / "x"),
                              cache_dir=str(tmp_path / "c"), val_fraction=0.34))
    assert b.classes == ("a", "b", "c") and b.test_x is None


# --------------------------------------------------------------------------------- cache

def test_second_load_reads_the_cache_without_decoding(tmp_path, jpeg_members, monkeypatch):
    req = DataConfig(dataset="imagefolder", root=str(_write_zip(tmp_path / "c.zip", jpeg_members)),
                      cache_dir=str(tmp_path / "cache"), val_fraction=0.25)
    first = load_data(req)
    assert "decoded" in first.source and len(list((tmp_path / "cache").rglob("*.npz"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(imagefolder, "decode_image", no_decoding)
    second = load_data(req)
    assert "cached" in second.source
    for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
    # The key is the content: a changed zip decodes again (and fails here, proving it tried).
    _write_zip(tmp_path / "c.zip", dict(list(jpeg_members.items())[:-1]))
    with pytest.raises(AssertionError, match="decoded although cached"):
        load_data(req)


def test_cifar_cache_and_unreadable_entry_is_rebuilt(tmp_path, monkeypatch, caplog):
    req = _request("cifar-archive", tmp_path, None)
    first = load_data(req)
    (entry,) = (tmp_path / "cache").rglob("*.npz")
    monkeypatch.setattr(cifar, "read_cifar10", lambda source: pytest.fail("decoded, not cached"))
    assert np.array_equal(load_data(req).train_x, first.train_x)
    monkeypatch.undo()
    entry.write_bytes(entry.read_bytes()[:1000])  # damaged by hand: rebuilt, not trusted
    assert np.array_equal(load_data(req).train_x, first.train_x)
    assert "unreadable" in caplog.text


def test_corrupt_image_midway_leaves_no_cache(tmp_path, jpeg_members):
    members = dict(jpeg_members)
    members["cifar10/train/cat/0005.jpg"] = members["cifar10/train/cat/0005.jpg"][:100]  # truncated
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"c\.zip:cifar10/train/cat/0005\.jpg: cannot decode"):
        load_data(DataConfig(dataset="imagefolder", root=str(_write_zip(tmp_path / "c.zip", members)),
                              cache_dir=str(cache)))
    assert _no_cache_entries(cache)


def test_failed_cache_write_leaves_no_partial_file(tmp_path, monkeypatch, caplog):
    def disk_full(f, **arrays):
        f.write(b"half an npz")
        raise OSError("No space left on device")

    monkeypatch.setattr(cache.np, "savez", disk_full)
    arrays, entry, hit = cache.cached_arrays(tmp_path, "x", {"k": 1}, lambda: {"a": np.ones(3)})
    assert not hit and np.array_equal(arrays["a"], np.ones(3))  # the run goes on, uncached
    assert _no_cache_entries(tmp_path) and "could not write cache entry" in caplog.text


# ----------------------------------------------------------------------------- download

def test_download_from_file_url_checks_md5(tmp_path):
    src = _write_tgz(tmp_path / "a.tar.gz", _fake_cifar_files())
    dest = tmp_path / "cache" / "downloads" / "cifar-10-python.tar.gz"
    with pytest.raises(DataError, match="md5 .* expected 0+"):
        download(src.as_uri(), dest, "0" * 32)
    assert not dest.exists() and _no_cache_entries(tmp_path / "cache")  # no partial file left
    assert download(src.as_uri(), dest, _md5(src)) == dest and dest.read_bytes() == src.read_bytes()


@contextlib.contextmanager
def _serving(folder: Path) -> Iterator[str]:
    """A local HTTP server for the files in ``folder``; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _unreachable_url() -> str:
    """An http address on this machine where nothing listens (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"


def test_cifar_downloads_over_http_then_loads_from_the_cache(tmp_path):
    src = _write_tgz(tmp_path / "srv" / "c.tgz", _fake_cifar_files())
    with _serving(src.parent) as base:
        url = f"{base}/c.tgz"
        path = cifar.fetch_cifar10(tmp_path / "cache", url=url, md5=_md5(src))
        with pytest.raises(DataError, match="download failed"):
            download(url + ".missing", tmp_path / "other.tgz", "0" * 32)
    assert path == tmp_path / "cache" / "downloads" / "cifar-10-python.tar.gz"
    # With no root the registered loader finds the downloaded archive and needs no network.
    b = load_data(DataConfig(dataset="cifar10", cache_dir=str(tmp_path / "cache")))
    assert b.num_classes == 10 and len(b.test_y) == 20


# -------------------------------------------------------------------------- bad sources

def test_bad_zip_and_truncated_zip_name_the_file(tmp_path, jpeg_members):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match=r"bad\.zip: not a readable zip"):
        load_data(DataConfig(dataset="imagefolder", root=str(bad), cache_dir=str(tmp_path / "c")))
    whole = _write_zip(tmp_path / "whole.zip", jpeg_members).read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"cut\.zip: not a readable zip"):
        load_data(DataConfig(dataset="imagefolder", root=str(cut), cache_dir=str(tmp_path / "c")))
    assert _no_cache_entries(tmp_path / "c")


@pytest.mark.parametrize("cut", [0.5, 0.99])
def test_truncated_cifar_archive_names_the_file(tmp_path, cut):
    whole = _write_tgz(tmp_path / "a.tar.gz", _fake_cifar_files()).read_bytes()
    src = tmp_path / "cut.tar.gz"
    src.write_bytes(whole[: int(len(whole) * cut)])
    with pytest.raises(DataError, match=r"cut\.tar\.gz: (truncated|archive lacks)"):
        load_data(DataConfig(dataset="cifar10", root=str(src), cache_dir=str(tmp_path / "c")))
    assert _no_cache_entries(tmp_path / "c")


def test_cifar_pickles_cannot_run_code_or_lie_about_shapes(tmp_path):
    files = _fake_cifar_files()
    files["cifar-10-batches-py/data_batch_2"] = b"cos\nsystem\n(S'echo hacked'\ntR."
    with pytest.raises(DataError, match=r"data_batch_2: not a readable CIFAR-10 batch.*os\.system"):
        load_data(DataConfig(dataset="cifar10", root=str(_write_tree(tmp_path / "a", files)),
                              cache_dir=str(tmp_path / "c")))
    files = _fake_cifar_files()
    batch = _batch(20, 1)
    batch[b"data"] = batch[b"data"][:, :100]
    files["cifar-10-batches-py/data_batch_1"] = pickle.dumps(batch, protocol=2)
    with pytest.raises(DataError, match=r"data_batch_1: expected 'data' uint8 \(N, 3072\)"):
        load_data(DataConfig(dataset="cifar10", root=str(_write_tree(tmp_path / "b", files)),
                              cache_dir=str(tmp_path / "c")))


@pytest.mark.parametrize("case, pattern", [
    ("undecodable", r"train/b/bad\.png: cannot decode this image"),
    ("empty-class-dir", r"train/zzz: class folder has no images"),
    ("loose-image", r"train/loose\.png: image outside a class folder"),
    ("unknown-test-class", r"test/: test classes \['q'\] have no training folder"),
    ("extra-split", r"found folders \['test', 'train', 'valid'\]"),
    ("one-class", r"only 1 class folder"),
])
def test_bad_folders_name_the_culprit(tmp_path, case, pattern):
    files = _gray_tree()
    if case == "undecodable":
        files["data/train/b/bad.png"] = b"\x89PNG\r\n\x1a\n garbage"
    elif case == "loose-image":
        files["data/train/loose.png"] = files["data/train/a/0.png"]
    elif case == "unknown-test-class":
        files["data/test/q/0.png"] = files["data/train/a/0.png"]
    elif case == "extra-split":
        files["data/valid/a/0.png"] = files["data/train/a/0.png"]
    elif case == "one-class":
        files = {k: v for k, v in files.items() if "/a/" in k}
    root = _write_tree(tmp_path / "t", files) / "data"
    if case == "empty-class-dir":
        (root / "train" / "zzz").mkdir()
    zipped = _write_zip(tmp_path / "d.zip", {k.replace("data/", "d/"): v for k, v in files.items()},
                        dirs=("d/train/zzz",) if case == "empty-class-dir" else ())
    for src in (root, zipped):
        with pytest.raises(DataError, match=pattern) as err:
            load_data(DataConfig(dataset="imagefolder", root=str(src), cache_dir=str(tmp_path / "c")))
        assert str(src) in str(err.value)
    assert _no_cache_entries(tmp_path / "c")


def test_missing_roots_say_what_to_give(tmp_path):
    with pytest.raises(DataError, match="needs data.root"):
        load_data(DataConfig(dataset="imagefolder", cache_dir=str(tmp_path)))
    with pytest.raises(DataError, match="does not exist"):
        load_data(DataConfig(dataset="imagefolder", root=str(tmp_path / "nope"), cache_dir=str(tmp_path)))
    (tmp_path / "notes.txt").write_text("not CIFAR-10")  # a folder with other files: no download
    with pytest.raises(DataError, match="holds no CIFAR-10 but other files"):
        load_data(DataConfig(dataset="cifar10", root=str(tmp_path), cache_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match=r"data\.image_size: .*greater than or equal to 4"):
        DataConfig(dataset="digits", image_size=0)


# ------------------------------------------------- cifar10: download into data.root, offline

@pytest.fixture
def cifar_mirror(tmp_path, monkeypatch) -> Iterator[Path]:
    """A fake official archive served over local HTTP, set as the loader's download address
    (``$WAVESEARCH_CIFAR10_URL``) with its md5 as the published one: the real download path."""
    src = _write_tgz(tmp_path / "srv" / "cifar-10-python.tar.gz", _fake_cifar_files())
    monkeypatch.setattr(cifar, "CIFAR10_MD5", _md5(src))
    with _serving(src.parent) as base:
        monkeypatch.setenv(cifar.URL_ENV, f"{base}/{src.name}")
        yield src


@pytest.mark.parametrize("root", ["empty", "missing/nested", "hidden-only", "named.tar.gz"])
def test_cifar_downloads_into_an_empty_or_missing_root(tmp_path, cifar_mirror, root):
    folder = tmp_path / "data" / root
    if root == "empty":
        folder.mkdir(parents=True)
    elif root == "hidden-only":  # what a killed download leaves: still counts as empty
        _write_tree(folder, {".cifar-10-python.tar.gz-x.part": b"half", ".DS_Store": b""})
    lines: list[str] = []
    req = DataConfig(dataset="cifar10", root=str(folder), cache_dir=str(tmp_path / "cache"))
    prepare_data(req, lines.append)
    archive = folder if root.endswith(".tar.gz") else folder / "cifar-10-python.tar.gz"
    assert archive.read_bytes() == cifar_mirror.read_bytes()
    assert len(lines) == 1 and "downloading CIFAR-10" in lines[0] and str(archive) in lines[0]
    cifar_mirror.unlink()  # from now on a second download would fail the md5 or the request
    b = load_data(req)
    assert b.classes == tuple(CIFAR_CLASSES) and len(b.test_y) == 20
    assert f"cifar10 {archive}" in b.source
    prepare_data(req, lines.append)  # found, not downloaded again: no progress line
    assert len(lines) == 1


def test_cifar_root_with_an_extracted_folder_is_read_not_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv(cifar.URL_ENV, _unreachable_url())  # any download attempt would fail
    root = _write_tree(tmp_path / "root", _fake_cifar_files())
    for given in (root, root / "cifar-10-batches-py"):
        b = load_data(DataConfig(dataset="cifar10", root=str(given), cache_dir=str(tmp_path / "c")))
        assert len(b.test_y) == 20


@pytest.mark.parametrize("shared_zip_exists", [True, False])
def test_offline_download_names_data_and_the_jpeg_zip(tmp_path, monkeypatch, shared_zip_exists):
    url = _unreachable_url()
    monkeypatch.setenv(cifar.URL_ENV, url)
    if not shared_zip_exists:
        monkeypatch.setattr(cifar, "SHARED_JPEG_ZIP", tmp_path / "elsewhere" / "cifar10-jpeg.zip")
    root = tmp_path / "new" / "cifar"
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(dataset="cifar10", root=str(root), cache_dir=str(tmp_path / "c")))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{url}: download failed (")
    if shared_zip_exists:
        assert f"--data {SHARED_ZIP}" in msg
    else:
        assert "--data <path to cifar10-jpeg.zip>" in msg and "elsewhere" not in msg
    assert "md5 c58f30108f718f92721af3b95e74349a" in msg  # or a copy by hand, checksum given
    assert not (tmp_path / "new").exists()  # the folders made for the download are gone again
    assert list(tmp_path.iterdir()) == []


def test_md5_mismatch_leaves_neither_file_nor_new_folders(tmp_path, cifar_mirror, monkeypatch):
    monkeypatch.setattr(cifar, "CIFAR10_MD5", "0" * 32)
    root = tmp_path / "fresh" / "cifar"
    with pytest.raises(DataError, match="md5 .* expected 0+"):
        load_data(DataConfig(dataset="cifar10", root=str(root), cache_dir=str(tmp_path / "c")))
    assert not (tmp_path / "fresh").exists() and not (tmp_path / "c").exists()


# ------------------------------------------------------------ --data: which loader reads it

def _layouts(tmp_path: Path, jpeg_members: dict[str, bytes]) -> dict[str, Path]:
    """One path of every kind --data may name."""
    zipped = _write_zip(tmp_path / "my data #1.zip", jpeg_members)
    paths = {"zip": zipped, "tgz": _write_tgz(tmp_path / "cifar-10-python.tar.gz", _fake_cifar_files())}
    for name in ("X.ZIP", "x.Zip"):
        (tmp_path / name).write_bytes(zipped.read_bytes())
        paths[name] = tmp_path / name
    paths["batches"] = _write_tree(tmp_path / "ext", _fake_cifar_files()) / "cifar-10-batches-py"
    paths["holds-batches"] = tmp_path / "ext"
    paths["holds-archive"] = tmp_path / "arch"
    paths["holds-archive"].mkdir()
    (paths["holds-archive"] / "cifar-10-python.tar.gz").write_bytes(paths["tgz"].read_bytes())
    paths["classes"] = _write_tree(tmp_path / "img", _gray_tree()) / "data"
    paths["empty"] = tmp_path / "empty"
    paths["empty"].mkdir()
    paths["loose-files"] = _write_tree(tmp_path / "loose", {"a.png": b"x", "b.txt": b"y"})
    paths["text"] = _write_tree(tmp_path, {"notes.txt": b"hello"}) / "notes.txt"
    return paths


# (path kind, spec dataset, loader expected or None for refused, words in the refusal)
RESOLVE = [
    ("zip", "digits", "imagefolder", ""),
    ("X.ZIP", "digits", "imagefolder", ""),
    ("x.Zip", "cifar10", "imagefolder", ""),
    ("zip", "cifar10", "imagefolder", ""),
    ("tgz", "digits", "cifar10", ""),
    ("tgz", "imagefolder", "cifar10", ""),
    ("batches", "digits", "cifar10", ""),
    ("holds-batches", "imagefolder", "cifar10", ""),
    ("holds-archive", "cifar10", "cifar10", ""),
    ("classes", "digits", "imagefolder", ""),
    ("classes", "cifar10", "imagefolder", ""),
    ("empty", "cifar10", "cifar10", ""),
    ("empty", "digits", None, "is an empty folder"),
    ("empty", "imagefolder", None, "is an empty folder"),
    ("loose-files", "digits", None, "a folder with no class folders"),
    ("text", "digits", None, "neither a .zip nor a .tar.gz"),
    ("missing", "digits", None, "no such file or folder"),
    ("missing", "cifar10", None, "create an empty folder there"),
]


@pytest.mark.parametrize("kind, dataset, expected, words", RESOLVE,
                         ids=[f"{k}-{d}" for k, d, _, _ in RESOLVE])
def test_data_option_picks_the_loader_that_reads_the_path(tmp_path, jpeg_members, kind, dataset,
                                                          expected, words):
    path = _layouts(tmp_path, jpeg_members).get(kind, tmp_path / "missing" / "dir")
    if expected is None:
        with pytest.raises(DataError) as err:
            resolve_data_source(str(path), dataset)
        msg = str(err.value)
        assert msg.startswith(f"--data {str(path)!r}: ") and "\n" not in msg
        assert words in msg and ".zip or folder of class folders" in msg  # what is accepted
        return
    assert resolve_data_source(str(path), dataset) == (expected, str(path))


def test_the_resolved_source_loads(tmp_path, jpeg_members):
    """What resolve_data_source picks is what the loader reads (the path kept whole)."""
    paths = _layouts(tmp_path, jpeg_members)
    for kind in ("zip", "X.ZIP", "tgz", "holds-batches", "classes"):
        dataset, root = resolve_data_source(str(paths[kind]), "digits")
        b = load_data(DataConfig(dataset=dataset, root=root, cache_dir=str(tmp_path / "c"),
                                 val_fraction=0.25))
        assert b.num_classes == (3 if dataset == "imagefolder" else 10)


def test_data_option_expands_home_and_refuses_an_empty_value(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    _write_tgz(tmp_path / "cifar-10-python.tar.gz", _fake_cifar_files())
    assert resolve_data_source("~/cifar-10-python.tar.gz", "digits") == (
        "cifar10", str(tmp_path / "cifar-10-python.tar.gz"))
    with pytest.raises(DataError, match="--data '': empty path"):
        resolve_data_source("", "digits")


def test_prepare_checks_an_image_folder_before_anything_is_decoded(tmp_path, monkeypatch):
    monkeypatch.setattr(imagefolder, "decode_image", lambda *a: pytest.fail("decoded"))
    files = {k: v for k, v in _gray_tree().items() if "/a/" in k}  # one class only
    root = _write_tree(tmp_path / "t", files) / "data"
    with pytest.raises(DataError, match="only 1 class folder"):
        prepare_data(DataConfig(dataset="imagefolder", root=str(root)))
    prepare_data(DataConfig(dataset="imagefolder", root=str(_write_tree(tmp_path / "u", _gray_tree()))))
    prepare_data(DataConfig(dataset="digits"))  # ships with scikit-learn: nothing to prepare
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        prepare_data(DataConfig(dataset="nope"))


def test_a_root_that_cannot_hold_the_download_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(cifar.URL_ENV, _unreachable_url())
    (tmp_path / "a-file").write_text("x")  # a folder cannot be made inside a file
    with pytest.raises(DataError, match=r"a-file/cifar: cannot write the download there .*data\.root"):
        prepare_data(DataConfig(dataset="cifar10", root=str(tmp_path / "a-file" / "cifar")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]

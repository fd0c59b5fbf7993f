"""Hostile data folders and zips: each is refused in one line naming the path, never a hang,
never a traceback, and `engine search` writes nothing (no study database, no lock file)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from engine.data.base import DataConfig
from engine.data.imagefolder import check_imagefolder, read_imagefolder
from engine.errors import DataError
from tests.conftest import tiny_spec_dict, write_spec

pytestmark = pytest.mark.timeout(60)  # a hang is the failure these tests guard against


def _png(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _folder(root: Path) -> Path:
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            (root / c / f"{i}.png").write_bytes(_png(i))
    return root


def _refused(path: Path, words: str) -> str:
    request = DataConfig(dataset="imagefolder", root=str(path))
    with pytest.raises(DataError) as info:
        check_imagefolder(request)
        read_imagefolder(path)
    message = str(info.value)
    assert words in message and "\n" not in message, message
    return message


def test_a_good_folder_still_reads(tmp_path):
    root = _folder(tmp_path / "data")
    arrays = read_imagefolder(root)
    assert arrays["train_x"].shape == (6, 3, 8, 8)


@pytest.mark.parametrize("name", ["/abs/evil.png", "../evil/x.png", "cat/../../x.png",
                                  "cat//x.png", "C:/evil/x.png"])
def test_zip_member_outside_the_tree_is_refused(tmp_path, name):
    path = tmp_path / "data.zip"
    with zipfile.ZipFile(path, "w") as z:
        for c in ("cat", "dog"):
            z.writestr(f"{c}/0.png", _png())
        z.writestr(zipfile.ZipInfo(name), _png())
    with zipfile.ZipFile(path) as z:  # written as given (zipfile keeps the name)
        assert any(i.filename.lstrip("/") != i.filename or ".." in i.filename or "//" in i.filename
                   or ":" in i.filename for i in z.infolist())
    message = _refused(path, "not a relative path inside the archive")
    assert str(path) in message


def test_symlink_loop_is_refused(tmp_path):
    root = _folder(tmp_path / "data")
    os.symlink("..", root / "cat" / "loop")
    message = _refused(root, "loop")
    assert "cat/loop" in message


def test_links_pointing_at_each_other_and_dangling_links_are_refused(tmp_path):
    root = _folder(tmp_path / "data")
    os.symlink("b.png", root / "cat" / "a.png")
    os.symlink("a.png", root / "cat" / "b.png")
    _refused(root, "broken or looping symbolic link")
    (root / "cat" / "a.png").unlink()
    (root / "cat" / "b.png").unlink()
    os.symlink("nowhere.png", root / "dog" / "gone.png")
    _refused(root, "dog/gone.png")


def test_a_fifo_named_like_an_image_is_refused_without_blocking(tmp_path):
    root = _folder(tmp_path / "data")
    os.mkfifo(root / "cat" / "x.png")
    _refused(root, "not a regular file")


def test_a_link_to_a_device_is_refused(tmp_path):
    root = _folder(tmp_path / "data")
    os.symlink("/dev/zero", root / "dog" / "zero.png")
    _refused(root, "not a regular file")


def test_a_linked_folder_that_is_not_a_loop_is_read(tmp_path):
    root = _folder(tmp_path / "data")
    extra = _folder(tmp_path / "more") / "cat"
    os.symlink(extra, root / "cat" / "more")
    assert read_imagefolder(root)["train_x"].shape[0] == 9


# -- engine search: refused before anything is written -----------------------------------
@pytest.mark.parametrize("case", ["fifo", "loop", "absolute-zip-member", "bad-image"])
def test_search_on_hostile_data_writes_nothing(tmp_path, monkeypatch, capsys, case):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    if case == "absolute-zip-member":
        data = tmp_path / "data.zip"
        with zipfile.ZipFile(data, "w") as z:
            z.writestr("cat/0.png", _png())
            z.writestr("dog/0.png", _png())
            z.writestr(zipfile.ZipInfo("/abs/evil.png"), _png())
    else:
        _folder(data)
        if case == "fifo":
            os.mkfifo(data / "cat" / "x.png")
        elif case == "loop":
            os.symlink("..", data / "cat" / "loop")
        else:  # found only while decoding: the names are fine
            (data / "dog" / "9.png").write_bytes(_png()[:40])
    spec = write_spec(tmp_path / "s.yaml", tiny_spec_dict(data={"cache_dir": str(tmp_path / "cache")}))
    before = set(os.listdir(tmp_path))
    rc = main(["search", str(spec), "--data", str(data), "--storage", "sqlite:///study.db"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    written = set(os.listdir(tmp_path)) - before - {"cache"}
    assert not written, written

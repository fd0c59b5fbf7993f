"""'Nothing written' on user errors: reading commands never create a storage (no database,
no lock file, no folder), a damaged database is named, and the servers refuse a bad port in
one line before they open anything."""

from __future__ import annotations

import os
import socket
import sqlite3

import pytest

from engine.cli import main
from engine.cli.servers import check_port
from engine.errors import StorageError, UsageError
from storage.backend import check_existing_storage


def _files(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _one_line_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture
def study_db(tmp_path):
    """An Optuna study database with one study (made by Optuna, no search needed)."""
    import optuna

    url = f"sqlite:///{tmp_path / 'real.db'}"
    optuna.create_study(study_name="real", storage=url)
    return tmp_path / "real.db"


def _junk(tmp_path, kind):
    path = tmp_path / "bad.db"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not a database at all\n")
    elif kind == "truncated-sqlite":
        path.write_bytes(b"SQLite format 3\x00" + b"\x00" * 50)
    elif kind == "other-sqlite":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE notes (x TEXT)")
    return path


READERS = [
    ["studies", "--storage", "{url}"],
    ["export", "--study", "real", "--storage", "{url}", "--out", "{tmp}/m.safetensors"],
    ["retrain", "--study", "real", "--storage", "{url}", "--out", "{tmp}/m.safetensors"],
]


@pytest.mark.parametrize("argv", READERS, ids=lambda a: a[0])
@pytest.mark.parametrize("target", ["typo.db", "missing/folder/typo.db"])
def test_reading_a_mistyped_storage_creates_nothing(tmp_path, monkeypatch, capsys, argv, target):
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path)
    args = [a.format(url=f"sqlite:///{target}", tmp=tmp_path) for a in argv]
    err = _one_line_error(capsys, main(args))
    assert "no study database at" in err and "typo.db" in err, err
    assert _files(tmp_path) == before


@pytest.mark.parametrize("kind", ["empty", "text", "truncated-sqlite", "other-sqlite"])
def test_a_damaged_or_foreign_database_is_named_and_left_alone(tmp_path, capsys, kind):
    path = _junk(tmp_path, kind)
    content = path.read_bytes()
    before = _files(tmp_path)
    err = _one_line_error(capsys, main(["studies", "--storage", f"sqlite:///{path}"]))
    assert str(path) in err, err
    assert _files(tmp_path) == before and path.read_bytes() == content


@pytest.mark.parametrize("kind", ["text", "truncated-sqlite"])
def test_search_on_a_damaged_database_writes_nothing(tmp_path, monkeypatch, capsys, kind):
    from tests.conftest import tiny_spec_dict, write_spec

    path = _junk(tmp_path, kind)
    spec = write_spec(tmp_path / "s.yaml", tiny_spec_dict())
    content, before = path.read_bytes(), _files(tmp_path)
    err = _one_line_error(capsys, main(["search", str(spec), "--storage", f"sqlite:///{path}"]))
    assert str(path) in err and ("SQLite" in err), err
    assert _files(tmp_path) == before and path.read_bytes() == content  # no bad.db.lock


def test_reading_a_real_study_writes_no_lock(tmp_path, capsys, study_db):
    before = _files(tmp_path)
    assert main(["studies", "--storage", f"sqlite:///{study_db}"]) == 0
    assert "real" in capsys.readouterr().out
    assert _files(tmp_path) == before  # no real.db.lock: opening it created nothing


def test_export_of_a_mistyped_study_lists_the_studies_and_writes_nothing(tmp_path, capsys,
                                                                         study_db):
    before = _files(tmp_path)
    err = _one_line_error(capsys, main(["export", "--study", "reall", "--storage",
                                        f"sqlite:///{study_db}", "--out",
                                        str(tmp_path / "m.safetensors")]))
    assert "no study named 'reall'" in err and "real" in err, err
    assert _files(tmp_path) == before


def test_in_memory_storage_has_no_studies_to_read():
    with pytest.raises(StorageError, match="in-memory"):
        check_existing_storage("sqlite://")


# -- server ports ---------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["app", "dashboard"])
@pytest.mark.parametrize("port", ["70000", "-1", "0"])
def test_a_port_out_of_range_is_one_line(tmp_path, monkeypatch, capsys, command, port):
    monkeypatch.chdir(tmp_path)
    err = _one_line_error(capsys, main([command, "--port", port]))
    assert f"--port {port} is not a TCP port" in err and "1 to 65535" in err, err
    assert _files(tmp_path) == set()


@pytest.mark.parametrize("command", ["app", "dashboard"])
def test_a_port_in_use_is_one_line(tmp_path, monkeypatch, capsys, command, study_db):
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        err = _one_line_error(capsys, main([command, "--port", str(port), "--storage",
                                            f"sqlite:///{study_db}"]))
    assert f"port {port} on 127.0.0.1 is in use" in err, err
    assert _files(tmp_path) == before


def test_check_port_accepts_a_free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert check_port(port) == port
    with pytest.raises(UsageError):
        check_port(65536)


def test_dashboard_on_a_missing_storage_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = _one_line_error(capsys, main(["dashboard", "--port", str(port), "--storage",
                                        "sqlite:///nope.db"]))
    assert "no study database at" in err, err
    assert os.listdir(tmp_path) == []

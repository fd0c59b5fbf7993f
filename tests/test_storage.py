"""Storage contract, run against every backend: SQLite and a real PostgreSQL server."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import optuna
import pytest

from engine.errors import StorageError
from storage import (
    SQLArtifactStore,
    best_accuracy_trial,
    check_search_storage,
    list_studies,
    load_study,
    normalize_url,
    open_storage,
    prepare_database,
    redact,
    schema,
    trial_rows,
)
from tests.conftest import ROOT, engine_env, tiny_spec_dict, write_spec


@pytest.fixture
def url(prepared_url):
    """A prepared, empty study database of each backend (conftest.prepared_url)."""
    return prepared_url


def _study(url: str, name: str = "s") -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=open_storage(url),
                                directions=["maximize", "minimize"])
    study.set_user_attr(schema.STUDY_OBJECTIVES, ["val_accuracy", "peak_memory_mb"])
    return study


def _add(study, acc, mem, *, cap_violation=-1.0, state="complete", weights=True):
    t = study.ask()
    t.suggest_int("wavemix.depth", 1, 4)
    t.set_user_attr(schema.TRIAL_CONFIG, {"family": "wavemix", "model": {}, "train": {}})
    t.set_user_attr(schema.TRIAL_VAL_ACCURACY, acc)
    t.set_user_attr(schema.TRIAL_PEAK_MEMORY_MB, mem)
    t.set_user_attr(schema.TRIAL_PARAM_COUNT, 1000)
    if weights:
        t.set_user_attr(schema.TRIAL_WEIGHTS, f"w{t.number}")
    if state == "fail":
        t.set_user_attr(schema.TRIAL_FAIL_REASON, "boom")
        study.tell(t, state=optuna.trial.TrialState.FAIL)
        return t.number
    t.set_constraint("gpu_ram_mb", cap_violation)
    study.tell(t, values=[acc, mem])
    return t.number


class TestStorageContract:
    def test_artifact_roundtrip_and_remove(self, url):
        store = SQLArtifactStore(url)
        body = bytes(range(256)) * 1000
        store.write("a1", io.BytesIO(body))
        assert store.open_reader("a1").read() == body
        store.remove("a1")
        with pytest.raises(StorageError, match="not in the store"):
            store.open_reader("a1")
        store.dispose()

    def test_duplicate_artifact_id_keeps_the_first(self, url):
        store = SQLArtifactStore(url)
        store.write("a2", io.BytesIO(b"first"))
        with pytest.raises(StorageError, match="already exists"):
            store.write("a2", io.BytesIO(b"second"))
        assert store.open_reader("a2").read() == b"first"
        store.dispose()

    def test_list_and_load_studies(self, url):
        _study(url, "alpha")
        _study(url, "beta")
        got = list_studies(url)
        assert [s.name for s in got] == ["alpha", "beta"]
        assert got[0].objectives == ("val_accuracy", "peak_memory_mb")
        assert got[0].directions == ("maximize", "minimize")
        with pytest.raises(StorageError, match="no study named 'gamma'.*alpha, beta"):
            load_study(url, "gamma")

    def test_rows_classify_pareto_dominated_infeasible_failed(self, url):
        study = _study(url)
        a = _add(study, 0.90, 10.0)                      # front
        b = _add(study, 0.95, 20.0)                      # front
        c = _add(study, 0.80, 30.0)                      # dominated by a
        d = _add(study, 0.99, 5.0, cap_violation=4.0)    # would dominate all, but over the cap
        e = _add(study, 0.0, 0.0, state="fail")
        rows = {r.number: r for r in trial_rows(load_study(url, "s"))}
        assert rows[a].category == rows[b].category == "pareto"
        assert rows[c].category == "dominated"
        assert rows[d].category == "infeasible" and not rows[d].feasible
        assert rows[e].category == "fail" and rows[e].reason == "boom"
        assert best_accuracy_trial(load_study(url, "s")).number == b

    def test_best_accuracy_needs_weights(self, url):
        study = _study(url)
        _add(study, 0.9, 1.0, weights=False)
        with pytest.raises(StorageError, match="no feasible finished trial with saved weights"):
            best_accuracy_trial(load_study(url, "s"))


def test_unreachable_server_is_a_clear_error():
    with pytest.raises(StorageError, match="cannot open storage .*:1/none.*server is running"):
        open_storage("postgresql+psycopg2://nobody@127.0.0.1:1/none")


@pytest.mark.parametrize("bad", ["wavesearch.db", "/tmp/x.db", "redis://localhost/0"])
def test_urls_are_checked(bad):
    with pytest.raises(StorageError):
        normalize_url(bad)


def test_bare_postgresql_names_an_installed_driver():
    import importlib.util

    got = normalize_url("postgresql://u@h/db")
    if importlib.util.find_spec("psycopg") is None:
        assert got == "postgresql+psycopg2://u@h/db"
    else:
        assert got == "postgresql://u@h/db"


def test_relative_sqlite_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert normalize_url("sqlite:///w.db") == f"sqlite:///{tmp_path / 'w.db'}"
    assert normalize_url("sqlite:////abs/w.db") == "sqlite:////abs/w.db"
    assert normalize_url("sqlite:///:memory:") == "sqlite:///:memory:"


def test_passwords_are_redacted():
    assert redact("postgresql+psycopg2://me:secret@host/db") == "postgresql+psycopg2://me:***@host/db"


def test_storage_and_app_import_neither_torch_nor_ray():
    code = ("import sys, storage, app.common; "
            "bad = [m for m in ('torch', 'ray') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_artifact_table_is_made_when_a_study_is_prepared_not_by_a_writer(tmp_path):
    url = f"sqlite:///{tmp_path / 'bare.db'}"
    open_storage(url)  # Optuna's tables only
    with pytest.raises(StorageError, match="no artifact table; it is created when a search "
                                           "prepares its study"):
        SQLArtifactStore(url).write("a", io.BytesIO(b"x"))
    prepare_database(url)
    prepare_database(url)  # idempotent
    SQLArtifactStore(url).write("a", io.BytesIO(b"x"))
    assert SQLArtifactStore(url).open_reader("a").read() == b"x"


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused_for_a_search(url):
    with pytest.raises(StorageError, match="in-memory database, but a search must outlive its "
                                           "process"):
        check_search_storage(url)


def _search(tmp_path, *args: str) -> subprocess.CompletedProcess:
    f = write_spec(tmp_path / "s.yaml", tiny_spec_dict("s"))
    cmd = [sys.executable, "-m", "engine.cli", "search", str(f), *args]
    return subprocess.run(cmd, cwd=tmp_path, env={**engine_env(), "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,words", [
    (["--storage", "sqlite://"], "in-memory database, but a search must outlive its process"),
    (["--storage", "postgresql+psycopg2://postgres:secret@[::1:5432/x"],
     "postgresql+psycopg2://postgres:***@[::1:5432/x is malformed"),
    (["--storage", "postgresql+psycopg2://nobody@127.0.0.1:1/none"],
     "cannot open storage postgresql+psycopg2://nobody@127.0.0.1:1/none"),
    (["--n-trials", "0"], "--n-trials must be at least 1 (got 0)"),
    (["--n-trials", "-1"], "--n-trials must be at least 1 (got -1)"),
])
def test_storage_and_budget_input_errors_exit_2_in_one_line(tmp_path, args, words):
    t0 = time.time()
    proc = _search(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip()
    assert err.count("\n") == 0 and words in err and "Traceback" not in err, err
    assert "secret" not in err  # passwords are redacted
    assert time.time() - t0 < 60  # refused up front, not after retries
    assert not list(tmp_path.glob("*.db"))  # nothing written


def test_a_read_only_sqlite_file_is_refused_before_anything_runs(tmp_path):
    """An immutable study file (chattr +i: even root cannot write it, as on a read-only mount)."""
    db = tmp_path / "ro.db"
    prepare_database(f"sqlite:///{db}")
    before = db.read_bytes()
    subprocess.run(["chattr", "+i", str(db)], check=True)
    try:
        proc = _search(tmp_path, "--storage", f"sqlite:///{db}")
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    assert proc.returncode == 2, proc.stdout[-1000:] + proc.stderr[-2000:]
    err = proc.stderr.strip()
    assert err.count("\n") == 0 and "is not writable" in err and str(db) in err, err
    assert db.read_bytes() == before

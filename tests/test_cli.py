"""The console script as users run it: search, resume, studies, export, and Ray cleaned up;
the command line's options (typed, never YAML-parsed), ``--data`` and the data errors that stop
a search before it writes anything."""

from __future__ import annotations

import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from engine.cli import main
from tests.conftest import (
    ROOT,
    engine_env,
    kill_session,
    lingering,
    spawn,
    tiny_spec_dict,
    write_spec,
)

SHARED_ZIP = ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"
CIFAR_SPEC = ROOT / "search_spaces" / "wavemix_cifar.yaml"


def _engine(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``engine ARGS`` run to its end in a session of its own; ``.pid`` names the session
    (see ``lingering``)."""
    proc = spawn([sys.executable, "-m", "engine.cli", *args], cwd=cwd, env={**engine_env(), **env},
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    done.pid = proc.pid
    return done


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The error line of a refused command, after checking how it was refused."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.slow
def test_search_resume_export_and_no_ray_left_behind(tmp_path):
    spec = tiny_spec_dict("cli", search={"n_trials": 2, "max_concurrent": 2, "sampler": "random"},
                          train={"epochs": 2})
    f = write_spec(tmp_path / "cli.yaml", spec)
    url = "sqlite:///cli.db"  # relative, as users write it: trial processes run elsewhere
    first = _engine("search", str(f), "--storage", url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    assert "trial 0 scheduled" in out and "trial 1 scheduled" in out
    assert "study 'cli': 2 trials (" in out and "infeasible" not in out
    assert "Pareto front" in out

    # Every Ray process the command started is gone once it has exited.
    leftover = lingering(first.pid)
    kill_session(first.pid)
    assert not leftover, "Ray processes left running"

    again = _engine("search", str(f), "--storage", url, cwd=tmp_path)
    assert again.returncode == 0
    assert "2 finished, 0 to run" in again.stdout

    listed = _engine("studies", "--storage", url, cwd=tmp_path)
    assert listed.stdout.startswith("cli\t2 trials")

    ckpt = tmp_path / "out" / "best.pt"
    exported = _engine("export", "--study", "cli", "--storage", url, "--out", str(ckpt), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert ckpt.exists() and "wrote" in exported.stdout

    missing = _engine("export", "--study", "nope", "--storage", url, "--out", str(tmp_path / "x.pt"),
                      cwd=tmp_path)
    assert missing.returncode == 2
    assert "no study named 'nope'" in missing.stderr and "cli" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.slow
def test_resources_the_cluster_lacks_are_refused(tmp_path):
    spec = tiny_spec_dict("gpu", resources={"cpus": 1, "gpus": 1})
    f = write_spec(tmp_path / "gpu.yaml", spec)
    proc = _engine("search", str(f), "--storage", f"sqlite:///{tmp_path / 'g.db'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "resources.gpus = 1.0 per trial" in proc.stderr and "wait forever" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu.yaml"], "nothing written"


# ------------------------------------------------------------------ plain options and --data

def _small_zip(path: Path) -> Path:
    """Two classes of the shared JPEG zip, four images each."""
    with zipfile.ZipFile(SHARED_ZIP) as src, zipfile.ZipFile(path, "w") as dst:
        for cls in ("cat", "ship"):
            for i in range(4):
                name = f"cifar10/train/{cls}/{i:04d}.jpg"
                dst.writestr(name, src.read(name))
    return path


def test_plain_options_are_taken_as_written(tmp_path):
    """--study 007 is the name "007"; a path with spaces and # is kept whole; --set still
    parses YAML, with 1.2 floats."""
    data = _small_zip(tmp_path / "my data #1.zip")
    proc = _engine("validate", str(QUICKSTART), "--study", "007", "--data", str(data),
                   "--set", "train.lr=3e-3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "study '007'" in proc.stdout
    assert f"data: imagefolder {data} (from --data; the spec's dataset 'digits' is replaced)" \
        in proc.stdout


# Two cases through the real console script (its exit code), two through main() (faster).
@pytest.mark.parametrize("given, as_process", [("/missing/dir", True), ("X.ZIP", True),
                                               ("notes.txt", False), ("empty", False)])
def test_search_refuses_data_it_cannot_read_and_writes_nothing(tmp_path, monkeypatch, capsys,
                                                                given, as_process):
    (tmp_path / "notes.txt").write_text("not data")
    (tmp_path / "empty").mkdir()
    db = tmp_path / "never.db"
    args = ("search", str(QUICKSTART), "--data", given, "--storage", f"sqlite:///{db}")
    if as_process:
        line = _one_line_error(_engine(*args, cwd=tmp_path))
    else:
        monkeypatch.chdir(tmp_path)
        assert main(list(args)) == 2
        line = capsys.readouterr().err.strip()
        assert line.count("\n") == 0
    assert f"--data {given!r}" in line and ".zip or folder of class folders" in line
    assert not db.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["empty", "notes.txt"]


def test_offline_cifar_search_points_to_data_and_writes_nothing(tmp_path):
    """The shipped CIFAR-10 spec on a machine without network: one line naming --data and the
    JPEG zip; no database, no download folder, no cache entry."""
    with socket.socket() as s:  # a local port where nothing listens: refused at once
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/cifar-10-python.tar.gz"
    root, cache, db = tmp_path / "home" / "cifar10", tmp_path / "cache", tmp_path / "never.db"
    proc = _engine("search", str(CIFAR_SPEC), "--set", f"data.root={root}", "--storage",
                   f"sqlite:///{db}", cwd=tmp_path, WAVESEARCH_CIFAR10_URL=url,
                   WAVESEARCH_CACHE=str(cache))
    line = _one_line_error(proc)
    assert f"{url}: download failed" in line and f"--data {SHARED_ZIP}" in line
    assert "downloading CIFAR-10" in proc.stdout  # the user was told before the wait
    assert list(tmp_path.iterdir()) == []


def test_data_checked_before_the_storage_is_created(tmp_path, capsys):
    """A folder that looks like class folders but holds no images passes the name check and
    is caught by the loader's prepare step, still before the database exists."""
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    (tmp_path / "imgs" / "cat" / "readme.txt").write_text("no images here")
    db = tmp_path / "never.db"
    code = main(["search", str(QUICKSTART), "--data", str(tmp_path / "imgs"), "--storage",
                 f"sqlite:///{db}"])
    assert code == 2 and "no image files" in capsys.readouterr().err
    assert not db.exists()


def test_a_bad_plain_option_names_itself(tmp_path, capsys):
    db = tmp_path / "never.db"
    assert main(["search", str(QUICKSTART), "--study", "my study", "--storage",
                 f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "study.name:" in err and "(got 'my study') (set by --study)" in err
    assert err.count("\n") == 0 and not db.exists()

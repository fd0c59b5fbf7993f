"""A `--ray-address` nothing answers, and resources no local Ray could give: `engine search`
exits 2 in one line naming the value, quickly, with nothing written."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from engine.cli import main
from engine.errors import ResourceError
from engine.search.cluster import check_address
from tests.conftest import tiny_spec_dict, write_spec

pytestmark = pytest.mark.timeout(120)


def _search(tmp_path, monkeypatch, capsys, *extra, spec=None) -> tuple[int, str, float]:
    monkeypatch.chdir(tmp_path)
    path = write_spec(tmp_path / "s.yaml", spec or tiny_spec_dict())
    before = set(os.listdir(tmp_path))
    t0 = time.perf_counter()
    rc = main(["search", str(path), "--storage", "sqlite:///study.db", *extra])
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err.strip()
    assert set(os.listdir(tmp_path)) == before, "nothing written"
    assert err.startswith("error: ") and "\n" not in err, err
    return rc, err, seconds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_refused_address_exits_2_at_once(tmp_path, monkeypatch, capsys):
    address = f"127.0.0.1:{_free_port()}"
    rc, err, seconds = _search(tmp_path, monkeypatch, capsys, "--ray-address", address)
    assert rc == 2 and address in err and "nothing answers there" in err, err
    assert seconds < 15


def test_a_silent_listener_exits_2_within_15_s(tmp_path, monkeypatch, capsys):
    """Something accepts the connection but never speaks (not a Ray head)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    try:
        rc, err, seconds = _search(tmp_path, monkeypatch, capsys, "--ray-address", address)
    finally:
        for conn, _ in accepted:
            conn.close()
        server.close()
    assert rc == 2 and address in err, err
    assert seconds < 15


@pytest.mark.parametrize("address", ["nonsense", "host:", "127.0.0.1:70000"])
def test_a_malformed_address_is_named(tmp_path, monkeypatch, capsys, address):
    rc, err, _ = _search(tmp_path, monkeypatch, capsys, "--ray-address", address)
    assert rc == 2 and "not HOST:PORT" in err and address in err, err


def test_a_real_head_passes_the_check(shared_ray):
    address, _env = shared_ray
    check_address(address)  # the session's Ray answers as a head


def test_an_http2_server_that_is_not_ray_is_refused(shared_ray):
    """The Ray head's dashboard-less GCS answers; its raylet's port is gRPC too but not a
    GCS: refused in seconds, not retried for minutes."""
    import ray

    node = next(n for n in ray.nodes() if n.get("Alive"))
    address = f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}"
    t0 = time.perf_counter()
    with pytest.raises(ResourceError, match="no Ray head answers there"):
        check_address(address)
    assert time.perf_counter() - t0 < 15


@pytest.mark.parametrize("resources, words", [
    ({"cpus": 4096, "gpus": 0}, "resources.cpus = 4096"),
    ({"cpus": 1, "gpus": 64}, "resources.gpus = 64"),
])
def test_resources_no_local_ray_can_give_write_nothing(tmp_path, monkeypatch, capsys,
                                                       resources, words):
    rc, err, _ = _search(tmp_path, monkeypatch, capsys,
                         spec=tiny_spec_dict(resources=resources))
    assert rc == 2 and words in err and "wait forever" in err, err

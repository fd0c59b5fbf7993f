"""What a local search exposes: every socket Ray and the driver listen on is on loopback, Ray's
token authentication is on, and no process outlives the search however it ends (finished,
or its driver killed with SIGKILL)."""

from __future__ import annotations

import ipaddress
import os
import time
from pathlib import Path

import pytest

from app.runs import session_pids
from tests.conftest import lingering, search_process, tiny_spec_dict, wait_for_line, write_spec

pytestmark = pytest.mark.slow


def _listening_inodes() -> dict[str, tuple[str, int]]:
    """socket inode -> (address, port) of every listening TCP socket on this machine."""
    out = {}
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_ip)
            # /proc writes each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.ip_address(raw) if v6 else ipaddress.ip_address(raw)
            out[fields[9]] = (str(ip), int(hex_port, 16))
    return out


def listeners(pids: set[int]) -> list[tuple[int, str, str, int]]:
    """(pid, process, address, port) of every socket ``pids`` listen on."""
    inodes = _listening_inodes()
    found = []
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()[-40:]
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    found.append((pid, name, *inodes[target[8:-1]]))
        except OSError:  # the process ended meanwhile
            continue
    return sorted(set(found))


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _spec(tmp_path, name: str, epochs: int) -> Path:
    return write_spec(tmp_path / f"{name}.yaml", tiny_spec_dict(
        name, data={"train_size": 1200, "val_size": 200}, train={"epochs": epochs, "batch_size": 16},
        search={"sampler": "random", "n_trials": 2, "max_concurrent": 1}))


def test_a_local_search_listens_on_loopback_only_with_token_auth(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a user's environment cannot switch it off
    f = _spec(tmp_path, "listen", 3)
    url = f"sqlite:///{tmp_path / 'l.db'}"
    with search_process(f, url, tmp_path) as proc:  # its own Ray, as a user's search starts
        wait_for_line(proc, "trial 0 epoch 1/3")
        pids = session_pids(proc.pid)
        found = listeners(pids)
        # (The driver's own /proc environ is the one it started with: its children show
        # what it handed Ray.)
        auth = {pid: Path(f"/proc/{pid}/environ").read_bytes() for pid in pids - {proc.pid}
                if Path(f"/proc/{pid}/environ").exists()}
        out, _ = proc.communicate(timeout=300)
        leftover = lingering(proc.pid)
    assert proc.returncode == 0, out[-3000:]
    assert len(found) >= 4, found  # GCS, raylet, driver, a worker at least
    exposed = [s for s in found if not _is_loopback(s[2])]
    assert not exposed, f"listening beyond loopback: {exposed}"
    # Token authentication on in every Ray process (the GCS and raylet check every call).
    ray_envs = [env for env in auth.values() if b"RAY_AUTH_MODE=" in env]
    assert len(ray_envs) >= 3, "no Ray processes found"
    assert all(b"RAY_AUTH_MODE=token" in env.split(b"\0") for env in ray_envs)
    assert not leftover, "processes left after the search finished"


def test_a_driver_killed_with_sigkill_leaves_no_process(tmp_path):
    f = _spec(tmp_path, "kill9", 4)
    url = f"sqlite:///{tmp_path / 'k.db'}"
    with search_process(f, url, tmp_path) as proc:
        wait_for_line(proc, "trial 0 epoch 1/4")
        proc.kill()
        proc.wait(timeout=30)
        t0 = time.time()
        leftover = lingering(proc.pid, grace_s=30)
        names = {pid: Path(f"/proc/{pid}/cmdline").read_bytes()[:80] for pid in leftover
                 if Path(f"/proc/{pid}/cmdline").exists()}
    assert not leftover, f"left running {time.time() - t0:.0f} s after SIGKILL: {names}"

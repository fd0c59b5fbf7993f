"""The reaper: no Ray process outlives the driver that started it.

Ray's GCS and raylet die with the driver, but the agents the raylet starts (dashboard and
runtime-env agents) are orphaned and stay alive when the driver is killed with SIGKILL. So a
local Ray gets a watchdog: a small stdlib-only process that records every descendant of
Ray's processes (pid and start time, so a reused pid is never hit) while the driver lives,
and when the driver's pipe closes (a clean end or any death) stops those still running
(SIGTERM, then SIGKILL after 3 s) and exits. It ignores SIGINT and SIGHUP, which a terminal
sends to the whole group, so that it outlives the driver it guards. Linux only (/proc); where
/proc is missing it finds nothing to watch.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

__all__ = ["children", "start", "stop"]

_REAPER_SCRIPT = r"""
import os, select, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
roots = {int(p) for p in sys.argv[1:]}
seen = {}
def stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), fields[19]  # parent, start time
    except (OSError, IndexError, ValueError):
        return None
def record():
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = stat(int(name))
            if st:
                parents[int(name)] = st
    tree = {p for p in roots if p in parents}
    grew = True
    while grew:
        more = {c for c, (pp, _) in parents.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    for pid in tree:
        seen.setdefault(pid, parents[pid][1])
def alive():
    return {p for p, t in seen.items() if (stat(p) or (0, None))[1] == t}
while True:
    record()
    ready, _, _ = select.select([sys.stdin], [], [], 1.0)
    if ready and not os.read(sys.stdin.fileno(), 1):
        break
for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 1.0)):
    for pid in alive():
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    deadline = time.time() + wait
    while alive() and time.time() < deadline:
        time.sleep(0.1)
"""
_running: list[subprocess.Popen] = []  # the reaper of this process's Ray, while it runs


def children(pid: int) -> set[int]:
    """Direct children of ``pid``, by the parent field of /proc/*/stat (empty without /proc)."""
    out: set[int] = set()
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    with open(f"/proc/{name}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                            out.add(int(name))
    return out


def start(roots: set[int]) -> None:
    """Watch the processes Ray started (``roots``) and their descendants (see the module
    docstring) until :func:`stop` or this process's death."""
    if not roots:
        return
    _running.append(subprocess.Popen([sys.executable, "-c", _REAPER_SCRIPT, *map(str, roots)],
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, close_fds=True))


def stop() -> None:
    """Release the reaper (it stops what is left of Ray) and wait for it to finish."""
    while _running:
        proc = _running.pop()
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

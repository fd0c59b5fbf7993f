"""``engine app`` and ``engine dashboard``: the web front ends, bound to 127.0.0.1.

Both end cleanly on SIGTERM, SIGINT or SIGHUP: ``engine app`` passes the signal to its
Streamlit server and waits for it (the server stops the searches it started before it exits),
so killing the command's pid frees the port and leaves no process behind.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from engine.errors import UsageError
from storage.schema import DEFAULT_STORAGE_URL

__all__ = ["add_commands"]

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# The server stops the searches it started (SIGINT, then SIGKILL after 25 s) before it exits;
# a server still alive this long after the signal is killed.
_CHILD_GRACE_S = 40.0


def _child_setup() -> None:
    """In the child before exec: a process group of its own (Ctrl-C in the terminal reaches
    it only through us), and SIGTERM if the parent dies, even by SIGKILL (Linux)."""
    os.setpgid(0, 0)
    if sys.platform == "linux":
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _run_child(cmd: list[str], env: dict[str, str]) -> int:
    """Run ``cmd`` until it exits; our stop signals are passed on to it, once each."""
    child = subprocess.Popen(cmd, env=env, preexec_fn=_child_setup)
    signalled: list[float] = []

    def forward(signum: int, _frame: object) -> None:
        signalled.append(time.monotonic())
        if child.poll() is None:
            child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in _STOP_SIGNALS}
    try:
        while True:
            try:
                return child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if signalled and time.monotonic() - signalled[0] > _CHILD_GRACE_S:
                    child.kill()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def check_port(port: int, option: str = "--port", example: int = 8501) -> int:
    """Refuse a port out of range or already taken on 127.0.0.1, before anything starts.

    Raises:
        UsageError: naming the port and the fix.
    """
    if not 1 <= port <= 65535:
        raise UsageError(f"{option} {port} is not a TCP port; rule: 1 to 65535; fix: e.g. "
                         f"{option} {example}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            why = ("is in use (another app or dashboard?)" if e.errno == errno.EADDRINUSE
                   else f"cannot be opened ({e.strerror})")
            raise UsageError(f"{option} {port}: port {port} on 127.0.0.1 {why}; fix: choose "
                             "another port, or stop what holds it") from None
    return port


def _cmd_app(args: argparse.Namespace) -> int:
    from storage import normalize_url

    check_port(args.port)
    url = normalize_url(args.storage)
    main_py = Path(__file__).resolve().parents[2] / "app" / "main.py"
    env = {**os.environ, "WAVESEARCH_STORAGE": url}
    print(f"WaveSearch app on http://127.0.0.1:{args.port} (storage {url})", flush=True)
    return _run_child([sys.executable, "-m", "streamlit", "run", str(main_py),
                       "--server.headless", "true", "--server.address", "127.0.0.1",
                       "--server.port", str(args.port), "--browser.gatherUsageStats", "false",
                       # No Deploy button or developer menu: this app is not a dev session.
                       "--client.toolbarMode", "viewer",
                       "--server.fileWatcherType", "none"], env)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from optuna_dashboard import run_server

    from storage import SQLArtifactStore, normalize_url, open_storage
    from storage.backend import check_existing_storage
    from storage.record import name_objectives

    check_port(args.port, example=8080)
    url = normalize_url(args.storage)
    check_existing_storage(url)  # a viewer never creates a database
    storage = open_storage(url)
    # Studies begun before the engine named its objectives get their metric names, so
    # optuna-dashboard labels them (not "Objective 0/1").
    name_objectives(storage)
    print(f"optuna-dashboard on http://127.0.0.1:{args.port} (storage {url})", flush=True)
    # SIGTERM and SIGHUP end the server like Ctrl-C (the default action would skip cleanup).
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _interrupt)
    try:
        # The trials' weights are artifacts in the same database: the dashboard lists them too.
        run_server(storage, host="127.0.0.1", port=args.port,
                   artifact_store=SQLArtifactStore(url))
    except KeyboardInterrupt:
        pass
    except OSError as e:  # the port was taken between the check and the bind
        raise UsageError(f"--port {args.port}: optuna-dashboard cannot listen on 127.0.0.1 "
                         f"({e.strerror}); fix: choose another port") from None
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the commands of this module on the ``engine`` parser."""
    a = sub.add_parser("app", help="start the Streamlit app on 127.0.0.1")
    a.add_argument("--storage", default=DEFAULT_STORAGE_URL)
    a.add_argument("--port", type=int, default=8501)
    a.set_defaults(func=_cmd_app)

    d = sub.add_parser("dashboard", help="start optuna-dashboard on the same storage")
    d.add_argument("--storage", default=DEFAULT_STORAGE_URL)
    d.add_argument("--port", type=int, default=8080)
    d.set_defaults(func=_cmd_dashboard)

"""``engine app`` and ``engine dashboard``: the web front ends, bound to 127.0.0.1."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from storage.schema import DEFAULT_STORAGE_URL

__all__ = ["add_commands"]


def _run_child(cmd: list[str]) -> int:
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0


def _cmd_app(args: argparse.Namespace) -> int:
    from storage import normalize_url

    url = normalize_url(args.storage)
    main_py = Path(__file__).resolve().parents[2] / "app" / "main.py"
    os.environ["WAVESEARCH_STORAGE"] = url
    print(f"WaveSearch app on http://127.0.0.1:{args.port} (storage {url})", flush=True)
    return _run_child([sys.executable, "-m", "streamlit", "run", str(main_py),
                       "--server.headless", "true", "--server.address", "127.0.0.1",
                       "--server.port", str(args.port), "--browser.gatherUsageStats", "false"])


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from optuna_dashboard import run_server

    from storage import SQLArtifactStore, normalize_url, open_storage

    url = normalize_url(args.storage)
    storage = open_storage(url)
    print(f"optuna-dashboard on http://127.0.0.1:{args.port} (storage {url})", flush=True)
    try:
        # The trials' weights are artifacts in the same database: the dashboard lists them too.
        run_server(storage, host="127.0.0.1", port=args.port,
                   artifact_store=SQLArtifactStore(url))
    except KeyboardInterrupt:
        pass
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

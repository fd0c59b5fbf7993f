"""How fast the app draws a large study, in a real browser, and what an idle tab costs.

Builds a study of N trials shaped like a search's (``bench/app_study.py``, written through
``storage.write_study`` / ``write_trial``), starts ``engine app`` on it, opens it in chromium
(playwright) and writes, as JSON:

- ``first_chart_s``: seconds from starting ``engine app`` to the first Pareto chart drawn;
- ``pages``: per page, seconds from the click in the sidebar to the page drawn, the second
  time round (what a user switching pages waits); ``pages_first``: the first time round;
- ``idle_cpu``: the app server's CPU time (all its processes) over ``--idle-s`` seconds
  with one tab open on Export and nothing changing, as a fraction of one core.

Run::

    PYTHONPATH=. .venv/bin/python bench/bench_app.py --trials 1000 --out bench/results/app_1000.json

The figures depend on the machine and on what else runs on it: say so where you quote them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.app_study import build_study  # noqa: E402

PAGES = ["Pareto front", "Learning curves", "Search analysis", "Compare trials", "Trial",
         "Export", "New search"]
TITLES = {"Export": "Export a model"}
# A chart drawn in the main page (st.plotly_chart) or in the live chart's frame (same origin).
CHART_DRAWN_JS = ("() => !!document.querySelector('[data-testid=stMain] .js-plotly-plot') || "
                  "[...document.querySelectorAll('[data-testid=stMain] iframe')].some(f => "
                  "f.contentDocument && f.contentDocument.querySelector('.js-plotly-plot .main-svg'))")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and every live descendant."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                raw = (d / "stat").read_text()
            except OSError:
                continue
            fields = raw[raw.rindex(")") + 2:].split()
            stats[int(d.name)] = fields
            children.setdefault(int(fields[1]), []).append(int(d.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += (int(stats[p][11]) + int(stats[p][12])) / ticks
        todo += children.get(p, [])
    return total


def _drawn(pg, name: str) -> None:
    """Wait until page ``name`` has drawn what it shows, and Streamlit has finished the run."""
    pg.get_by_role("heading", level=1, name=TITLES.get(name, name)).first.wait_for()
    main = "[data-testid=stMain]"
    if name in ("Pareto front", "Learning curves", "Compare trials", "Trial"):
        pg.wait_for_function(CHART_DRAWN_JS)
    elif name == "Search analysis":
        # hypervolume and two importances (the parallel coordinates only up to 300 trials)
        pg.wait_for_function(f"document.querySelectorAll('{main} .js-plotly-plot').length >= 3")
    elif name == "Export":
        pg.get_by_role("button", name="Export checkpoint").wait_for()
    else:
        pg.get_by_role("button", name="Start search").wait_for()
    pg.wait_for_function("!document.querySelector('[data-testid=stStatusWidget]')")


def _visit(pg, name: str) -> float:
    t0 = time.perf_counter()
    pg.locator("[data-testid=stSidebarNavLink]").filter(
        has_text=re.compile(f"^{re.escape(name)}$")).click()
    _drawn(pg, name)
    return round(time.perf_counter() - t0, 3)


def measure(url: str, idle_s: float, shots: Path | None) -> dict:
    """Serve ``url`` with ``engine app`` and time it in chromium."""
    from playwright.sync_api import sync_playwright

    port = _free_port()
    runs = Path(tempfile.mkdtemp(prefix="bench-app-runs-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WAVESEARCH_RUN_DIR": str(runs)}
    t_start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "app", "--storage", url,
                             "--port", str(port)], env=env, cwd=runs,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out: dict = {}
    try:
        _wait_http(f"http://127.0.0.1:{port}/_stcore/health")
        out["server_up_s"] = round(time.perf_counter() - t_start, 3)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium"),
                                         args=CHROMIUM_ARGS)
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.set_default_timeout(180_000)
            pg.goto(f"http://127.0.0.1:{port}/")
            _drawn(pg, "Pareto front")
            out["first_chart_s"] = round(time.perf_counter() - t_start, 3)
            out["pages_first"] = {name: _visit(pg, name) for name in PAGES}
            out["pages"] = {name: _visit(pg, name) for name in PAGES}
            if shots:
                for name in PAGES:
                    _visit(pg, name)
                    pg.screenshot(path=str(shots / f"{name.replace(' ', '_').lower()}.png"),
                                  full_page=True)
            _visit(pg, "Export")
            time.sleep(3)  # let the last run settle
            before, t0 = _cpu_seconds(proc.pid), time.perf_counter()
            time.sleep(idle_s)
            out["idle_cpu"] = round((_cpu_seconds(proc.pid) - before)
                                    / (time.perf_counter() - t0), 4)
            browser.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(runs, ignore_errors=True)
    return out


def _copy_to(src: str, dest: str) -> str:
    """The study at ``src`` copied to the storage ``dest`` (kept if already there)."""
    import optuna

    from storage import listing, open_storage, prepare_database

    name = listing(src)[0][0]
    prepare_database(dest)
    if name not in dict(listing(dest)):
        optuna.copy_study(from_study_name=name, from_storage=open_storage(src),
                          to_storage=open_storage(dest))
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, required=True, help="trials in the study")
    ap.add_argument("--out", required=True, help="the JSON file to write")
    ap.add_argument("--db", help="keep the study in this SQLite file (default: a temp file; "
                                 "an existing file with the study is reused)")
    ap.add_argument("--storage", help="serve the study from this database instead (e.g. "
                                      "postgresql+psycopg2://user@host/db): the SQLite study is "
                                      "copied there once with optuna.copy_study")
    ap.add_argument("--idle-s", type=float, default=30.0, help="seconds of idle measurement")
    ap.add_argument("--shots", help="also save a screenshot of every page in this folder")
    args = ap.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench-app-"))
    db = Path(args.db) if args.db else folder / "study.db"
    name = f"bench{args.trials}"
    t0 = time.perf_counter()
    if db.exists():
        url = f"sqlite:///{db.resolve()}"
        built_s = 0.0
    else:
        url = build_study(db, name, args.trials, seed=0)
        built_s = round(time.perf_counter() - t0, 1)
    backend = "sqlite"
    if args.storage:
        url, backend = _copy_to(url, args.storage), args.storage.split(":")[0].split("+")[0]
    shots = Path(args.shots) if args.shots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    result = {"trials": args.trials, "backend": backend, "study_built_s": built_s,
              **measure(url, args.idle_s, shots),
              "machine": f"{platform.node()} {os.cpu_count()} CPUs, load average "
                         f"{os.getloadavg()[0]:.2f} at the end",
              "command": " ".join(["bench/bench_app.py", *(argv or sys.argv[1:])])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not args.db:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

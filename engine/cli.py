"""The ``engine`` command: search, validate, export, app, dashboard, studies.

Errors print one line (``error: ...``) and exit non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import WaveSearchError

if TYPE_CHECKING:
    from engine.spec import SearchSpec

__all__ = ["main"]

DEFAULT_STORAGE = "sqlite:///wavesearch.db"


def _cmd_validate(args: argparse.Namespace) -> int:
    from engine.spec import load_spec, spec_hash

    spec = load_spec(args.spec, args.set)
    fams = ", ".join(spec.model)
    print(f"{args.spec}: OK (study {spec.study.name!r}, families {fams}, "
          f"{_budget_text(spec)}, objectives {', '.join(spec.objective_names)}, "
          f"spec hash {spec_hash(spec)})")
    return 0


def _budget_text(spec: SearchSpec) -> str:
    """The spec's budget in words, e.g. "64 trials or 1500 epochs (first reached)"."""
    s = spec.search
    parts = ([f"{s.n_trials} trials"] if s.n_trials is not None else []) + (
        [f"{s.budget_epochs} epochs"] if s.budget_epochs is not None else [])
    return " or ".join(parts) + (" (first reached)" if len(parts) > 1 else "")


def _cmd_search(args: argparse.Namespace) -> int:
    from engine.search import run_search
    from engine.spec import load_spec
    from storage import load_study, trial_rows

    sets = list(args.set)
    if args.data:
        sets.append(f"data.root={args.data}")
        # The JPEG/PNG class-folder form of CIFAR-10 (e.g. shared/data/cifar10-jpeg.zip) is read
        # by the image-folder loader; the cifar10 loader reads the official python archive.
        if args.data.endswith(".zip") or Path(args.data).is_dir() and not _is_cifar_batches(args.data):
            sets.append("data.dataset=imagefolder")
    if args.study:
        sets.append(f"study.name={args.study}")
    spec = load_spec(args.spec, sets)
    t0 = time.perf_counter()

    def progress(line: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f}s] {line}", flush=True)

    out = run_search(spec, storage_url=args.storage, n_trials=args.n_trials,
                     ray_address=args.ray_address, progress=progress)
    study = load_study(out.storage_url, out.study_name)
    rows = trial_rows(study)
    states: dict[str, int] = {}
    for r in rows:  # pareto / dominated / infeasible / pruned / fail / running
        states[r.category] = states.get(r.category, 0) + 1
    print(f"\nstudy {out.study_name!r}: {len(rows)} trials ({', '.join(f'{v} {k}' for k, v in sorted(states.items()))}) "
          f"in {out.seconds:.1f} s")
    print("Pareto front (feasible best trials):")
    print(f"  {'trial':>5}  {'family':<10} {'val_acc':>8} {'peak_MB':>9} {'params':>10}")
    for r in sorted((r for r in rows if r.pareto), key=lambda r: -(r.val_accuracy or 0)):
        print(f"  {r.number:>5}  {r.family or '?':<10} {r.val_accuracy or 0:>8.4f} "
              f"{r.peak_memory_mb or 0:>9.1f} {r.param_count or 0:>10,}")
    print(f"\nNext: engine app --storage {out.storage_url}   or   engine export --study "
          f"{out.study_name} --storage {out.storage_url} --out model.pt")
    return 0


def _is_cifar_batches(path: str) -> bool:
    p = Path(path)
    return (p / "cifar-10-batches-py").is_dir() or (p / "data_batch_1").exists() or any(
        p.glob("cifar-10-python.tar.gz"))


def _cmd_export(args: argparse.Namespace) -> int:
    from engine.export import export_checkpoint

    info = export_checkpoint(args.storage, args.study, trial_number=args.trial, out=args.out,
                             test_accuracy=not args.no_test)
    print(f"wrote {args.out}: trial {info['trial_number']} {info['family']} "
          f"val_accuracy={info['metrics'].get('val_accuracy')}")
    return 0


def _cmd_studies(args: argparse.Namespace) -> int:
    from storage import list_studies

    for s in list_studies(args.storage):
        print(f"{s.name}\t{s.n_trials} trials\t{', '.join(s.objectives)}")
    return 0


def _run_child(cmd: list[str]) -> int:
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0


def _cmd_app(args: argparse.Namespace) -> int:
    from storage import normalize_url

    url = normalize_url(args.storage)
    main_py = Path(__file__).resolve().parent.parent / "app" / "main.py"
    env_url = {"WAVESEARCH_STORAGE": url}
    os.environ.update(env_url)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="engine", description="WaveSearch: architecture search with a GUI")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="check a search-space file without running it")
    v.add_argument("spec")
    v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec value, e.g. --set train.epochs=2 (repeatable)")
    v.set_defaults(func=_cmd_validate)

    s = sub.add_parser("search", help="run (or resume) the search a spec describes")
    s.add_argument("spec")
    s.add_argument("--storage", help="storage URL (overrides study.storage)")
    s.add_argument("--data", help="data root or archive (overrides data.root)")
    s.add_argument("--study", help="study name (overrides study.name)")
    s.add_argument("--n-trials", type=int, help="total trials (overrides search.n_trials)")
    s.add_argument("--ray-address", help="join this Ray cluster instead of starting one")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec value, e.g. --set train.epochs=2 (repeatable)")
    s.set_defaults(func=_cmd_search)

    e = sub.add_parser("export", help="write a trial's checkpoint that rebuilds its model")
    e.add_argument("--study", required=True)
    e.add_argument("--storage", default=DEFAULT_STORAGE)
    e.add_argument("--trial", type=int, help="trial number (default: best-accuracy Pareto point)")
    e.add_argument("--out", required=True)
    e.add_argument("--no-test", action="store_true", help="skip measuring test accuracy")
    e.set_defaults(func=_cmd_export)

    ls = sub.add_parser("studies", help="list the studies in a storage")
    ls.add_argument("--storage", default=DEFAULT_STORAGE)
    ls.set_defaults(func=_cmd_studies)

    a = sub.add_parser("app", help="start the Streamlit app on 127.0.0.1")
    a.add_argument("--storage", default=DEFAULT_STORAGE)
    a.add_argument("--port", type=int, default=8501)
    a.set_defaults(func=_cmd_app)

    d = sub.add_parser("dashboard", help="start optuna-dashboard on the same storage")
    d.add_argument("--storage", default=DEFAULT_STORAGE)
    d.add_argument("--port", type=int, default=8080)
    d.set_defaults(func=_cmd_dashboard)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``engine`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except WaveSearchError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

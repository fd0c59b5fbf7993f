"""``engine validate``, ``engine search`` and ``engine studies``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from storage.schema import DEFAULT_STORAGE_URL

if TYPE_CHECKING:
    from engine.spec import SearchSpec

__all__ = ["add_commands"]


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


def _cmd_studies(args: argparse.Namespace) -> int:
    from storage import list_studies

    for s in list_studies(args.storage):
        print(f"{s.name}\t{s.n_trials} trials\t{', '.join(s.objectives)}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the commands of this module on the ``engine`` parser."""
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

    ls = sub.add_parser("studies", help="list the studies in a storage")
    ls.add_argument("--storage", default=DEFAULT_STORAGE_URL)
    ls.set_defaults(func=_cmd_studies)

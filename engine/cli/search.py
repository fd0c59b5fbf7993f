"""``engine validate``, ``engine search`` and ``engine studies``.

``validate`` takes the spec options of ``search`` (``--data``, ``--study``, ``--storage``,
``--set``), so any search command line can be checked by writing ``validate`` instead of
``search``. Plain options are applied as the typed text the user wrote; only ``--set`` values
are parsed as YAML (see :class:`engine.spec.Override`).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from storage.schema import DEFAULT_STORAGE_URL

if TYPE_CHECKING:
    from engine.spec import SearchSpec

__all__ = ["add_commands"]


def _load(args: argparse.Namespace) -> tuple[SearchSpec, str]:
    """The spec with the command line applied, and a line saying which data it reads.

    Order: the ``--set`` items, then the plain options (they win), then ``--data``, whose
    loader and root come from :func:`engine.data.resolve_data_source` given the dataset the
    spec names after the other overrides.
    """
    from engine.spec import Override, load_spec

    plain = [Override(key, value, option) for option, key, value in (
        ("--study", "study.name", args.study),
        ("--storage", "study.storage", args.storage),
    ) if value is not None]
    overrides = [*args.set, *plain]
    spec = load_spec(args.spec, overrides)
    if args.data is None:
        return spec, f"data: {_data_text(spec)}"
    from engine.data import resolve_data_source

    named = spec.data.dataset
    dataset, root = resolve_data_source(args.data, named)
    spec = load_spec(args.spec, [*overrides, Override("data.dataset", dataset, "--data"),
                                 Override("data.root", root, "--data")])
    switched = "" if dataset == named else f"; the spec's dataset {named!r} is replaced"
    return spec, f"data: {_data_text(spec)} (from --data{switched})"


def _data_text(spec: SearchSpec) -> str:
    """The data set a spec reads, e.g. "imagefolder /data/x.zip" or "digits"."""
    return spec.data.dataset + (f" {spec.data.root}" if spec.data.root else "")


def _cmd_validate(args: argparse.Namespace) -> int:
    from engine.spec import spec_hash
    from storage import check_search_storage

    spec, data_line = _load(args)
    check_search_storage(spec.study.storage)  # what search refuses, validate refuses
    fams = ", ".join(spec.model)
    print(f"{args.spec}: OK (study {spec.study.name!r}, families {fams}, "
          f"{_budget_text(spec)}, objectives {', '.join(spec.objective_names)}, "
          f"spec hash {spec_hash(spec)})")
    print(data_line)
    return 0


def _budget_text(spec: SearchSpec) -> str:
    """The spec's budget in words, e.g. "64 trials or 1500 epochs (first reached)"."""
    s = spec.search
    parts = ([f"{s.n_trials} trials"] if s.n_trials is not None else []) + (
        [f"{s.budget_epochs} epochs"] if s.budget_epochs is not None else []) + (
        [f"{s.budget_minutes:g} minutes"] if s.budget_minutes is not None else [])
    return " or ".join(parts) + (" (first reached)" if len(parts) > 1 else "")


def _cmd_search(args: argparse.Namespace) -> int:
    import optuna

    from engine.search import run_search
    from storage import load_study, trial_rows

    # The search prints its own progress; Optuna's per-trial INFO lines would repeat it.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec, data_line = _load(args)
    t0 = time.perf_counter()

    def progress(line: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f}s] {line}", flush=True)

    progress(data_line)
    with _stop_on_sigterm() as terminated:
        try:
            out = run_search(spec, n_trials=args.n_trials, ray_address=args.ray_address,
                             progress=progress)
        except KeyboardInterrupt:  # a signal outside Tune's run (loading, between rounds)
            if not terminated:
                raise
            print("terminated", file=sys.stderr)
            return 128 + signal.SIGTERM
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
          f"{out.study_name} --storage {out.storage_url} --out model.safetensors")
    if out.stopped:  # 128 + the signal, as a shell reports it: scripts can tell it from done
        print("search stopped before its budget was spent: run the same command again to "
              "resume (the interrupted trials are queued)", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    return 0


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[list[int]]:
    """SIGTERM stops the search as Ctrl-C does (running trials re-queued, Ray stopped): it is
    handed to whatever handles SIGINT at that moment (Ray Tune's graceful stop during a run,
    else KeyboardInterrupt). Yields the list that records it, for the exit code (143)."""
    terminated: list[int] = []

    def on_sigterm(signum: int, frame: Any) -> None:
        terminated.append(signum)
        handler = signal.getsignal(signal.SIGINT)
        if not callable(handler):  # SIG_IGN or SIG_DFL: nothing graceful to hand it to
            raise KeyboardInterrupt
        handler(signal.SIGINT, frame)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield terminated
    finally:
        signal.signal(signal.SIGTERM, previous)


def _cmd_studies(args: argparse.Namespace) -> int:
    from storage import list_studies
    from storage.backend import check_existing_storage

    for s in list_studies(check_existing_storage(args.storage)):  # reading creates nothing
        print(f"{s.name}\t{s.n_trials} trials\t{', '.join(s.objectives)}")
    return 0


def _add_spec_options(p: argparse.ArgumentParser) -> None:
    """The spec file and the options that change it, shared by ``search`` and ``validate``."""
    p.add_argument("spec")
    p.add_argument("--data", metavar="PATH",
                   help="the data to train on; it picks the loader: a .zip or folder of class "
                        "folders (imagefolder), cifar-10-python.tar.gz or cifar-10-batches-py "
                        "(cifar10); sets data.dataset and data.root")
    p.add_argument("--study", metavar="NAME", help="study name, taken as written (overrides "
                                                   "study.name)")
    p.add_argument("--storage", metavar="URL", help="storage URL (overrides study.storage)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec value, parsed as YAML, e.g. --set train.lr=3e-3 "
                        "(repeatable)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the commands of this module on the ``engine`` parser."""
    v = sub.add_parser("validate", help="check a search-space file (and the options a search "
                       "would get) without running it")
    _add_spec_options(v)
    v.set_defaults(func=_cmd_validate)

    s = sub.add_parser("search", help="run (or resume) the search a spec describes")
    _add_spec_options(s)
    s.add_argument("--n-trials", type=int, help="total trials (overrides search.n_trials)")
    s.add_argument("--ray-address", help="join this Ray cluster instead of starting one")
    s.set_defaults(func=_cmd_search)

    ls = sub.add_parser("studies", help="list the studies in a storage")
    ls.add_argument("--storage", default=DEFAULT_STORAGE_URL)
    ls.set_defaults(func=_cmd_studies)

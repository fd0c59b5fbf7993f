"""``engine export``: a trial's checkpoint that rebuilds its model."""

from __future__ import annotations

import argparse

from storage.schema import DEFAULT_STORAGE_URL

__all__ = ["add_commands"]


def _cmd_export(args: argparse.Namespace) -> int:
    from engine.export import export_checkpoint

    info = export_checkpoint(args.storage, args.study, trial_number=args.trial, out=args.out,
                             test_accuracy=not args.no_test)
    print(f"wrote {args.out}: trial {info['trial_number']} {info['family']} "
          f"val_accuracy={info['metrics'].get('val_accuracy')}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the commands of this module on the ``engine`` parser."""
    e = sub.add_parser("export", help="write a trial's checkpoint that rebuilds its model")
    e.add_argument("--study", required=True)
    e.add_argument("--storage", default=DEFAULT_STORAGE_URL)
    e.add_argument("--trial", type=int, help="trial number (default: best-accuracy Pareto point)")
    e.add_argument("--out", required=True)
    e.add_argument("--no-test", action="store_true", help="skip measuring test accuracy")
    e.set_defaults(func=_cmd_export)

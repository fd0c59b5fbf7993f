"""The ``engine`` command: search, validate, export, retrain, app, dashboard, studies.

Errors print one line (``error: ...``) and exit non-zero; ``--debug`` shows the traceback.
Each module of this package registers its commands (``add_commands``).
"""

from __future__ import annotations

import argparse
import sys

from engine.errors import WaveSearchError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``engine`` argument parser with every command registered."""
    from engine.cli import export, search, servers

    p = argparse.ArgumentParser(prog="engine", description="WaveSearch: architecture search with a GUI")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    for module in (search, export, servers):
        module.add_commands(sub)
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

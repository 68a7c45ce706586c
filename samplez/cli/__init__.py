"""``python -m samplez``: the commands.

* ``python -m samplez ingest``: apply events from stdin or a ZeroMQ bus to
  counters (see :mod:`samplez.cli.ingest`).
* ``python -m samplez dashboard``: serve the dashboard alone, reading the
  store the application writes to.

Both take ``--memcache HOST:PORT[,HOST:PORT]`` (default:
``$SAMPLEZ_MEMCACHE``) or ``--redis URL[,URL]`` (default:
``$SAMPLEZ_REDIS``), and ``--prefix``, and stop cleanly on Ctrl-C or
SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import dashboard, ingest
from .common import UsageError, common_options, load_metrics

__all__ = ["UsageError", "load_metrics", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m samplez", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    common = common_options()
    ingest.add_command(commands, common)
    dashboard.add_command(commands, common)
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    checks = {
        "batch_size": (1, 1_000_000),
        "flush_interval": (0.01, 3600),
        "max_events": (1, None),
        "max_types": (1, 10_000),
        "port": (0, 65535),
    }
    for name, (low, high) in checks.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if value < low or (high is not None and value > high):
            bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
            parser.error(f"--{name.replace('_', '-')} must be {bound}, got {value}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    try:
        return int(args.run(args))
    except UsageError as exc:
        print(f"python -m samplez {args.command}: {exc}", file=sys.stderr)
        return 2

"""What the commands share: usage errors, loading metrics named on the
command line, the store options and a clean stop on a signal."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from typing import Any, Sequence

from ..api import configure
from ..errors import ConfigError
from ..metric import Metric, Section
from ..store.memcache import MemcacheStore

__all__ = ["UsageError", "common_options", "flatten", "load_metrics", "stop_on_signals", "use_store"]


class UsageError(Exception):
    """Raised when a command line cannot be acted on; exit status 2."""


def load_metrics(spec: str) -> list[Metric | Section]:
    """The configs, counters and sections named by ``module:attribute``
    (a Section, a Config or counter, or a list or dict of them)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(f"expected module:attribute, got {spec!r}")
    try:
        thing: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name!r}: {exc}") from None
    for part in attribute.split("."):
        try:
            thing = getattr(thing, part)
        except AttributeError:
            raise UsageError(f"{module_name!r} has no attribute {attribute!r}") from None
    if isinstance(thing, (Metric, Section)):
        return [thing]
    if isinstance(thing, dict):
        thing = list(thing.values())
    if isinstance(thing, (list, tuple)) and thing and all(isinstance(t, (Metric, Section)) for t in thing):
        return list(thing)
    raise UsageError(f"{spec} must be a Section, a config or counter, or a list of them, got {thing!r}")


def flatten(things: Sequence[Metric | Section]) -> dict[str, Metric]:
    metrics: dict[str, Metric] = {}
    for thing in things:
        for metric in thing.metrics if isinstance(thing, Section) else (thing,):
            metrics[metric.name] = metric
    return metrics


def use_store(args: argparse.Namespace, command: str) -> None:
    if args.memcache:
        try:
            configure(store=MemcacheStore(args.memcache), prefix=args.prefix)
        except ConfigError as exc:
            raise UsageError(f"--memcache: {exc}") from None
    else:
        print(
            f"samplez {command}: no --memcache or $SAMPLEZ_MEMCACHE: using this process's own memory",
            file=sys.stderr,
        )
        configure(prefix=args.prefix)


def stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def common_options() -> argparse.ArgumentParser:
    """The options every command takes: where the store is."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--memcache",
        default=os.environ.get("SAMPLEZ_MEMCACHE") or None,
        metavar="HOST:PORT[,HOST:PORT]",
        help="memcached server(s) (default: $SAMPLEZ_MEMCACHE)",
    )
    common.add_argument("--prefix", default="samplez", help="memcache key prefix (default: samplez)")

    return common

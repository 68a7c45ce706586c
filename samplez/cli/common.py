"""What the commands share: usage errors, loading metrics named on the
command line, the store options (``--memcache`` or ``--redis``, or their
environment variables) and a clean stop on a signal."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from typing import Any, Mapping, Sequence

from ..api import configure
from ..errors import ConfigError
from ..metric import Metric, Section
from ..store.base import Store
from ..store.memcache import MemcacheStore
from ..store.redis import RedisStore

__all__ = [
    "UsageError",
    "add_store_options",
    "common_options",
    "flatten",
    "load_metrics",
    "stop_on_signals",
    "store_from",
    "use_store",
]


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


def store_from(memcache: str | None, redis: str | None, environ: Mapping[str, str] = os.environ) -> Store | None:
    """The store ``--memcache`` or ``--redis`` names or, when neither is
    given, ``$SAMPLEZ_MEMCACHE`` or ``$SAMPLEZ_REDIS``; None for this
    process's own memory. Naming both is a :class:`UsageError`: a process
    writes to one store."""
    flags = ("--memcache", "--redis")
    if memcache is None and redis is None:
        memcache = environ.get("SAMPLEZ_MEMCACHE", "").strip() or None
        redis = environ.get("SAMPLEZ_REDIS", "").strip() or None
        flags = ("$SAMPLEZ_MEMCACHE", "$SAMPLEZ_REDIS")
    if memcache and redis:
        raise UsageError(f"{flags[0]} and {flags[1]} are mutually exclusive: name one store")
    try:
        if memcache:
            return MemcacheStore(memcache)
        if redis:
            return RedisStore(redis)
    except ConfigError as exc:
        raise UsageError(f"{flags[0] if memcache else flags[1]}: {exc}") from None
    except ImportError as exc:  # redis-py is an optional extra
        raise UsageError(f"{flags[1]}: {exc}") from None
    return None


def use_store(args: argparse.Namespace, command: str) -> None:
    store = store_from(args.memcache, args.redis)
    if store is None:
        print(
            f"samplez {command}: no --memcache, --redis, $SAMPLEZ_MEMCACHE or $SAMPLEZ_REDIS:"
            " using this process's own memory",
            file=sys.stderr,
        )
        configure(prefix=args.prefix)
    else:
        configure(store=store, prefix=args.prefix)


def stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """``--memcache`` and ``--redis``, read by :func:`store_from`."""
    parser.add_argument(
        "--memcache",
        metavar="HOST:PORT[,HOST:PORT]",
        help="memcached server(s) (default: $SAMPLEZ_MEMCACHE)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL[,URL]",
        help="Redis server(s), e.g. redis://127.0.0.1:6379/0 (default: $SAMPLEZ_REDIS); not with --memcache",
    )


def common_options() -> argparse.ArgumentParser:
    """The options every command takes: where the store is."""
    common = argparse.ArgumentParser(add_help=False)
    add_store_options(common)
    common.add_argument("--prefix", default="samplez", help="store key prefix (default: samplez)")
    return common

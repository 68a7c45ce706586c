"""``python -m samplez``: the commands.

* ``python -m samplez ingest``: apply events from stdin or a ZeroMQ bus to
  counters (see :mod:`samplez.ingest`).
* ``python -m samplez dashboard``: serve the dashboard alone, reading the
  store the application writes to.

Both take ``--memcache HOST:PORT[,HOST:PORT]`` (default:
``$SAMPLEZ_MEMCACHE``) and ``--prefix``, and stop cleanly on Ctrl-C or
SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from typing import Any, Sequence

from . import ingest
from .api import configure
from .errors import ConfigError
from .metric import Metric, Section
from .store.memcache import MemcacheStore

__all__ = ["load_metrics", "main"]


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


def _flatten(things: Sequence[Metric | Section]) -> dict[str, Metric]:
    metrics: dict[str, Metric] = {}
    for thing in things:
        for metric in thing.metrics if isinstance(thing, Section) else (thing,):
            metrics[metric.name] = metric
    return metrics


def _store(args: argparse.Namespace, command: str) -> None:
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


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _calendar(name: str) -> Metric:
    from .counters import CalendarCounter

    return CalendarCounter(name)


def run_ingest(args: argparse.Namespace) -> int:
    counters = _flatten(load_metrics(args.counters)) if args.counters else None
    try:
        mapper = ingest.EventMapper(
            counters,
            key_field=args.key_field,
            type_field=args.type_field,
            value_field=args.value_field,
            default=args.default,
            make_counter=_calendar,
            types=args.types.split(",") if args.types else None,
            max_types=args.max_types,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.zmq:
        try:
            ingest.import_zmq()
        except ImportError as exc:
            raise UsageError(str(exc)) from None
    _store(args, "ingest")
    # Explicit flushes only: no background flusher thread in this process.
    configure(flush="request", max_pending=max(100_000, 2 * args.batch_size), max_pending_bytes=2**30)
    stop = _stop_on_signals()
    if args.zmq:
        lines = ingest.zmq_lines(args.zmq, stop, topic=args.subscribe, max_events=args.max_events)
    else:
        lines = ingest.stdin_lines(sys.stdin.buffer, stop, max_events=args.max_events)
    runner = ingest.Ingest(mapper, batch_size=args.batch_size, flush_interval=args.flush_interval)
    try:
        runner.run(lines, stop)
    finally:
        print(runner.report(), file=sys.stderr, flush=True)
    return 0


def run_dashboard(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server

    from .dashboard import Dashboard

    sections: list[Section] = []
    loose: list[Metric] = []
    for spec in args.sections or ():
        for thing in load_metrics(spec):
            (sections if isinstance(thing, Section) else loose).append(thing)  # type: ignore[arg-type]
    if loose:
        sections.append(Section("Other", *loose))
    auth = None
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            raise UsageError("--auth must be USER:PASSWORD (or set $SAMPLEZ_AUTH)")
        auth = (user, password)
    _store(args, "dashboard")
    app = Dashboard(sections=sections or None, auth=auth)
    server = make_server(args.host, args.port, app, threaded=True)
    print(f"samplez dashboard: http://{args.host}:{server.server_port}/", flush=True)
    if auth is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print("samplez dashboard: without --auth it answers loopback clients only", file=sys.stderr, flush=True)
    stop = _stop_on_signals()
    thread = threading.Thread(target=server.serve_forever, name="samplez-dashboard", daemon=True)
    thread.start()
    while not stop.wait(0.5) and thread.is_alive():
        pass
    server.shutdown()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m samplez", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--memcache",
        default=os.environ.get("SAMPLEZ_MEMCACHE") or None,
        metavar="HOST:PORT[,HOST:PORT]",
        help="memcached server(s) (default: $SAMPLEZ_MEMCACHE)",
    )
    common.add_argument("--prefix", default="samplez", help="memcache key prefix (default: samplez)")

    feed = commands.add_parser(
        "ingest", parents=[common], help="apply JSON events (stdin or ZeroMQ) to counters", description=ingest.__doc__
    )
    feed.add_argument("--zmq", metavar="tcp://HOST:PORT", help="read a ZeroMQ PUB socket instead of stdin")
    feed.add_argument("--subscribe", default="", metavar="TOPIC", help="ZeroMQ topic prefix (default: all)")
    feed.add_argument(
        "--counters", metavar="MODULE:ATTR", help="counters to feed, by name (default: a CalendarCounter per type)"
    )
    feed.add_argument("--default", metavar="NAME", help="counter for event types no counter is named after")
    feed.add_argument("--types", metavar="T1,T2", help="ingest only these event types (without --counters)")
    feed.add_argument("--max-types", type=int, default=100, help="most counters made per type (default: 100)")
    feed.add_argument("--type-field", default="type", help="where the event type is (default: type)")
    feed.add_argument("--key-field", default="data.account", help="where the key is (default: data.account)")
    feed.add_argument("--value-field", help="where the value is (default: each event adds 1)")
    feed.add_argument("--batch-size", type=int, default=1000, help="flush every N events (default: 1000)")
    feed.add_argument("--flush-interval", type=float, default=1.0, help="... or every S seconds (default: 1)")
    feed.add_argument("--max-events", type=int, help="stop after N events")
    feed.set_defaults(run=run_ingest)

    serve = commands.add_parser("dashboard", parents=[common], help="serve the dashboard alone")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8001, help="port, 0 for any (default: 8001)")
    serve.add_argument(
        "--sections", action="append", metavar="MODULE:ATTR", help="what to show (repeatable; default: all loaded)"
    )
    serve.add_argument(
        "--auth",
        default=os.environ.get("SAMPLEZ_AUTH") or None,
        metavar="USER:PASSWORD",
        help="HTTP basic auth (default: $SAMPLEZ_AUTH; without it, loopback clients only)",
    )
    serve.set_defaults(run=run_dashboard)
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

"""``python -m samplez ingest``: apply JSON events, from stdin or a ZeroMQ
bus, to counters (the events' shapes: :mod:`samplez.cli.events`)."""

from __future__ import annotations

import argparse
import sys

from ..api import configure
from ..metric import Metric
from . import events
from .common import UsageError, flatten, load_metrics, stop_on_signals, use_store

__all__ = ["add_command"]


def add_command(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    feed = commands.add_parser(
        "ingest", parents=[common], help="apply JSON events (stdin or ZeroMQ) to counters", description=events.__doc__
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
    feed.set_defaults(run=run)


def _calendar(name: str) -> Metric:
    from ..counters import CalendarCounter

    return CalendarCounter(name)


def run(args: argparse.Namespace) -> int:
    counters = flatten(load_metrics(args.counters)) if args.counters else None
    try:
        mapper = events.EventMapper(
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
            events.import_zmq()
        except ImportError as exc:
            raise UsageError(str(exc)) from None
    use_store(args, "ingest")
    # Explicit flushes only: no background flusher thread in this process.
    configure(flush="request", max_pending=max(100_000, 2 * args.batch_size), max_pending_bytes=2**30)
    stop = stop_on_signals()
    if args.zmq:
        lines = events.zmq_lines(args.zmq, stop, topic=args.subscribe, max_events=args.max_events)
    else:
        lines = events.stdin_lines(sys.stdin.buffer, stop, max_events=args.max_events)
    runner = events.Ingest(mapper, batch_size=args.batch_size, flush_interval=args.flush_interval)
    try:
        runner.run(lines, stop)
    finally:
        print(runner.report(), file=sys.stderr, flush=True)
    return 0

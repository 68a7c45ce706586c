"""The events `python -m samplez ingest` reads: their shape, the counters
they feed, and the readers of stdin and ZeroMQ.

Bootic's stats aggregator in samplez form: events arrive as JSON objects,
one per line on stdin or one per message on a ZeroMQ SUB socket, shaped like
``{"type": "pageview", "data": {"account": "acme"}}``. The event's type
names the counter (a :class:`~samplez.CalendarCounter` of that name unless
configured otherwise), a field of the event (``data.account``) is the key,
and the value is 1 or another field. Events go through ``samplez.set`` and
are applied in batches by ``samplez.flush``: every ``batch_size`` events or
``flush_interval`` seconds, whichever comes first.

A malformed line is counted by reason and skipped, never fatal; the counts
(with one example of each) are reported at the end.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import Counter
from typing import IO, Any, Callable, Iterable, Iterator, Mapping

from ..api import flush
from ..batch import set as samplez_set
from ..metric import Metric
from ..registry import lookup

__all__ = ["EventMapper", "Ingest", "Malformed", "import_zmq", "stdin_lines", "zmq_lines"]

#: Longest line (bytes) accepted; a longer one is malformed.
MAX_LINE = 64 * 1024


class Malformed(Exception):
    """Raised when an event cannot be mapped to a counter; ``str()`` is the
    reason it is counted under."""


def _field(event: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = event
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            raise Malformed(f"no {'.'.join(path)}")
        value = value[part]
    return value


def _path(label: str, dotted: str) -> tuple[str, ...]:
    parts = tuple(dotted.split("."))
    if not dotted or not all(parts):
        raise ValueError(f"{label} must be a dotted field name like data.account, got {dotted!r}")
    return parts


class EventMapper:
    """Maps one event (a dict) to ``(counter, key, value)``.

    :param counters: counters by name; the event type selects one. ``None``:
        a counter is made per type with ``make_counter(type)`` (at most
        ``max_types`` of them; ``types`` limits which).
    :param key_field: dotted path of the key in the event.
    :param type_field: dotted path of the event type.
    :param value_field: dotted path of the value; ``None`` adds 1.
    :param default: name of the counter for types no counter is named after
        (with ``counters``); without it such events are malformed.

    >>> EventMapper(None, make_counter=lambda name: CalendarCounter(name)).map(
    ...     {"type": "pageview", "data": {"account": "acme"}})
    """

    def __init__(
        self,
        counters: Mapping[str, Metric] | None,
        key_field: str = "data.account",
        type_field: str = "type",
        value_field: str | None = None,
        default: str | None = None,
        make_counter: Callable[[str], Metric] | None = None,
        types: Iterable[str] | None = None,
        max_types: int = 100,
    ) -> None:
        self.key_path = _path("key_field", key_field)
        self.type_path = _path("type_field", type_field)
        self.value_path = _path("value_field", value_field) if value_field is not None else None
        self.counters: dict[str, Metric] = dict(counters or {})
        self.fixed = counters is not None
        if self.fixed and not self.counters:
            raise ValueError("counters must name at least one counter")
        if default is not None and not self.fixed:
            raise ValueError(f"default needs counters to choose from (--counters), got default={default!r}")
        if default is not None and default not in self.counters:
            raise ValueError(f"default must name one of the counters ({', '.join(self.counters)}), got {default!r}")
        if not self.fixed and make_counter is None:
            raise ValueError("make_counter is needed when no counters are given")
        self.default = default
        self.make_counter = make_counter
        self.types = frozenset(types) if types is not None else None
        self.max_types = max_types

    def counter_for(self, kind: object) -> Metric:
        if not isinstance(kind, str) or not kind:
            raise Malformed(f"{'.'.join(self.type_path)} is not a name")
        counter = self.counters.get(kind)
        if counter is not None:
            return counter
        if self.fixed:
            if self.default is None:
                raise Malformed("no counter for this type")
            return self.counters[self.default]
        if self.types is not None and kind not in self.types:
            raise Malformed("type not ingested")
        if len(self.counters) >= self.max_types:
            raise Malformed(f"more than {self.max_types} types")
        counter = lookup(kind)
        if counter is None:
            assert self.make_counter is not None
            try:
                counter = self.make_counter(kind)
            except ValueError:  # ConfigError: the type is not a valid name
                raise Malformed("type is not a valid counter name") from None
        self.counters[kind] = counter
        return counter

    def map(self, event: object) -> tuple[Metric, str, Any]:
        if not isinstance(event, Mapping):
            raise Malformed("not a JSON object")
        counter = self.counter_for(_field(event, self.type_path))
        key = _field(event, self.key_path)
        if isinstance(key, int) and not isinstance(key, bool):
            key = str(key)
        if not isinstance(key, str) or not key:
            raise Malformed(f"{'.'.join(self.key_path)} is not text")
        value = _field(event, self.value_path) if self.value_path is not None else 1
        return counter, key, value


class Ingest:
    """Parses lines, maps them and applies them in batches; keeps the
    counts for the report.

    :param mapper: an :class:`EventMapper`.
    :param batch_size: flush after this many accepted events.
    :param flush_interval: ... or when this many seconds passed since the
        last flush (checked by :meth:`tick`).
    """

    def __init__(
        self,
        mapper: EventMapper,
        batch_size: int = 1000,
        flush_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mapper = mapper
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.clock = clock
        self.read = 0
        self.accepted = 0
        self.applied = 0
        self.dropped = 0
        self.store_errors = 0
        self.malformed: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self._unflushed = 0
        self._last_flush = clock()

    def feed(self, line: bytes | str) -> None:
        """Take one line (or one bus message)."""
        if not line.strip():
            return
        self.read += 1
        try:
            if len(line) > MAX_LINE:
                raise Malformed(f"longer than {MAX_LINE} bytes")
            try:
                event = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                raise Malformed("not JSON") from None
            counter, key, value = self.mapper.map(event)
            try:
                samplez_set(counter, key, value)
            except (TypeError, ValueError) as exc:
                raise Malformed(f"bad value for {counter.name}: {type(exc).__name__}") from None
        except Malformed as why:
            reason = str(why)
            self.malformed[reason] += 1
            self.examples.setdefault(reason, _excerpt(line))
            return
        self.accepted += 1
        self._unflushed += 1
        if self._unflushed >= self.batch_size:
            self.flush()

    def tick(self) -> None:
        """Flush if ``flush_interval`` passed with events waiting."""
        if self._unflushed and self.clock() - self._last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        summary = flush()
        self.applied += summary.applied
        self.dropped += summary.dropped
        self.store_errors += summary.errors
        self._unflushed = 0
        self._last_flush = self.clock()

    def run(self, lines: Iterable[bytes | str | None], stop: threading.Event | None = None) -> None:
        """Feed every line (``None`` is an idle tick) until the source ends
        or ``stop`` is set; then flush what is left."""
        try:
            for line in lines:
                if line is not None:
                    self.feed(line)
                self.tick()
                if stop is not None and stop.is_set():
                    break
        finally:
            self.flush()

    def report(self) -> str:
        lines = [
            f"samplez ingest: {self.read} events read, {self.applied} applied, "
            f"{sum(self.malformed.values())} malformed, {self.dropped} dropped, {self.store_errors} store errors"
        ]
        for reason, count in self.malformed.most_common():
            lines.append(f"  {count} {reason}, e.g. {self.examples[reason]}")
        return "\n".join(lines)


def _excerpt(line: bytes | str, limit: int = 80) -> str:
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def stdin_lines(
    stream: IO[bytes], stop: threading.Event, idle: float = 0.2, max_events: int | None = None
) -> Iterator[bytes | None]:
    """The lines of ``stream`` until EOF, ``stop`` or ``max_events`` lines;
    ``None`` every ``idle`` seconds without a line, so the caller can flush
    on time. A daemon thread reads, since a pipe cannot be waited on with a
    timeout portably."""
    lines: queue.Queue[bytes | None] = queue.Queue(maxsize=10_000)

    def reader() -> None:
        try:
            while True:
                # Bounded reads: a line past MAX_LINE is passed on cut (and
                # counted as too long), the rest of it skipped unread.
                line = stream.readline(MAX_LINE + 1)
                if not line:
                    break
                lines.put(line)
                while len(line) > MAX_LINE and not line.endswith(b"\n"):
                    line = stream.readline(MAX_LINE + 1)
        finally:
            lines.put(None)  # EOF

    threading.Thread(target=reader, name="samplez-ingest-stdin", daemon=True).start()
    count = 0
    while not stop.is_set() and (max_events is None or count < max_events):
        try:
            line = lines.get(timeout=idle)
        except queue.Empty:
            yield None
            continue
        if line is None:
            return
        count += 1
        yield line


def zmq_lines(
    url: str, stop: threading.Event, topic: str = "", idle: float = 0.2, max_events: int | None = None
) -> Iterator[bytes | None]:
    """Messages from a ZeroMQ SUB socket connected to ``url`` (the bus
    publishes, we subscribe to ``topic``); the last frame of each message
    is the event. ``None`` every ``idle`` seconds without a message."""
    zmq = import_zmq()
    context = zmq.Context.instance()
    socket = context.socket(zmq.SUB)
    try:
        socket.setsockopt(zmq.LINGER, 0)
        # A SUB socket drops what overflows its queue: leave room for the
        # bursts that arrive while a flush is on the wire.
        socket.setsockopt(zmq.RCVHWM, 100_000)
        socket.setsockopt_string(zmq.SUBSCRIBE, topic)
        socket.connect(url)
        count = 0
        while not stop.is_set() and (max_events is None or count < max_events):
            if not socket.poll(int(idle * 1000)):
                yield None
                continue
            frames = socket.recv_multipart()
            count += 1
            yield frames[-1]
    finally:
        socket.close()


def import_zmq() -> Any:
    """pyzmq, imported only when ``--zmq`` is used."""
    try:
        import zmq
    except ImportError:
        raise ImportError("--zmq needs pyzmq: pip install 'samplez[zmq]' (or pip install pyzmq)") from None
    return zmq

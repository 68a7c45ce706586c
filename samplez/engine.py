"""The process-wide state of samplez: the store, the pending batch and the
background flusher.

Concurrency: request threads append to ``_pending`` (a deque, or with the
C request path a ``_speedups.Pending``, which keeps events the same way in
less memory) without a lock: one ``append``/``extend`` is atomic under the
GIL, and the batch is never replaced while threads run, so no append can
land in a batch already taken. Whatever removes events (the flusher taking
the batch, trimming to ``max_pending``, ``clear``) does so from the left
under ``_lock``, so drops are counted exactly. Network I/O happens outside
it, one flush at a time under ``_flush_lock``. After ``fork()`` the child
starts with an empty batch, fresh locks, no flusher and no sockets: the
parent still owns and flushes what was pending, so nothing is lost or
applied twice.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from itertools import repeat, starmap
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from . import flush as _flush
from .errors import ConfigError
from .keys import KeySpace
from .metric import Context, Event
from .store.base import Store
from .store.memory import MemoryStore

__all__ = ["Engine", "FlushSummary", "engine"]

log = logging.getLogger("samplez")
_UNSET: Any = object()
FLUSH_MODES = ("background", "request")
EXIT_FLUSHES = 3


@dataclass(frozen=True)
class FlushSummary:
    """Counts since the previous flush: events applied, events dropped (the
    pending batch overflowed, or the store failed them), store round trips
    and failed store operations."""

    applied: int = 0
    dropped: int = 0
    round_trips: int = 0
    errors: int = 0


def _checked_clock(clock: Any) -> Callable[[], float]:
    """``clock`` if it is a callable returning finite seconds: asked once
    now, so a wrong one fails here and not inside every request."""
    try:
        now = clock()
    except Exception as exc:
        raise ConfigError(f"clock must be a callable returning seconds, got {clock!r} ({exc!r})") from None
    if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now) or now < 0:
        raise ConfigError(f"clock must return seconds since the epoch, got {now!r} from {clock!r}")
    return clock  # type: ignore[no-any-return]


class PendingEvents(Protocol):
    """What the engine needs of its pending batch: a ``deque`` of events, or
    ``_speedups.Pending``, which keeps them the same way in less memory."""

    def append(self, event: Event, /) -> None: ...
    def extend(self, events: Iterable[Event], /) -> None: ...
    def extendleft(self, events: Iterable[Event], /) -> None: ...
    def popleft(self) -> Event: ...
    def clear(self) -> None: ...
    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> Event: ...


#: What the C request path reads of the engine: :meth:`Engine.mirror`.
MIRRORED = ("_pending", "clock", "_thread", "max_pending", "flush_mode")


class Engine:
    _mirror: Callable[[str, Any], None] | None = None

    def __init__(self) -> None:
        self.store: Store = MemoryStore()
        self.space = KeySpace("samplez")
        self.flush_interval = 0.5
        self.max_pending = 100_000
        self.clock: Callable[[], float] = time.time
        self.flush_mode = "background"
        # A deque: dropping the oldest when full is O(1) per event, so a dead
        # store never makes the request path slower (bench/bench_memory.py).
        # With the C request path, a _speedups.Pending (see use_pending).
        self._new_pending: Callable[[], PendingEvents] = deque
        self._pending: PendingEvents = deque()
        self._dropped = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self.health: dict[str, Any] = {
            "last_flush": None,
            "last_error": None,
            "flushes": 0,
            "applied": 0,
            "dropped": 0,
            "errors": 0,
            "round_trips": 0,
        }

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if self._mirror is not None and name in MIRRORED:
            self._mirror(name, value)

    def mirror(self, to: Callable[[str, Any], None]) -> None:
        """Hand ``to(name, value)`` the attributes in :data:`MIRRORED` now,
        and each time one is written: the C request path keeps them, where
        reading them from the engine took a request five dict lookups."""
        object.__setattr__(self, "_mirror", to)
        for name in MIRRORED:
            to(name, getattr(self, name))

    # -- configuration ------------------------------------------------------

    def configure(
        self,
        store: Store | None = _UNSET,
        prefix: str = _UNSET,
        flush_interval: float = _UNSET,
        max_pending: int = _UNSET,
        clock: Callable[[], float] = _UNSET,
        flush: str = _UNSET,
    ) -> None:
        if store is not _UNSET:
            if store is not None and not isinstance(store, Store):
                raise ConfigError(f"store must be a samplez store (MemcacheStore, MemoryStore), got {store!r}")
            self.store = store if store is not None else MemoryStore()
        if prefix is not _UNSET:
            self.space = KeySpace(prefix)
        if flush_interval is not _UNSET:
            if (
                isinstance(flush_interval, bool)
                or not isinstance(flush_interval, (int, float))
                or not 0.01 <= flush_interval <= 3600
            ):
                raise ConfigError(f"flush_interval must be seconds in [0.01, 3600], got {flush_interval!r}")
            self.flush_interval = float(flush_interval)
            self._wake.set()
        if max_pending is not _UNSET:
            if type(max_pending) is not int or max_pending < 1:
                raise ConfigError(f"max_pending must be an int > 0, got {max_pending!r}")
            self.max_pending = max_pending
        if clock is not _UNSET:
            self.clock = _checked_clock(clock)
        if flush is not _UNSET:
            if flush not in FLUSH_MODES:
                raise ConfigError(f"flush must be 'background' or 'request', got {flush!r}")
            self.flush_mode = flush

    def context(self) -> Context:
        return Context(self.store, self.space, self.clock())

    # -- the request side: in-memory appends only -----------------------------

    # The request side takes no lock: in a worker, where the request path's
    # code is cold, a lock's acquire (which parses its arguments and reads
    # a clock) touched more interpreter code than the rest of the fold.

    def add(self, event: Event) -> None:
        pending = self._pending
        pending.append(event)
        if len(pending) > self.max_pending:
            self._trim()
        if self._thread is None and self.flush_mode == "background":
            self._start()

    def extend(self, events: list[Event]) -> None:
        pending = self._pending
        pending.extend(events)
        if len(pending) > self.max_pending:
            self._trim()
        if self._thread is None and self.flush_mode == "background":
            self._start()

    def clear(self) -> int:
        """Discard every pending event without applying it; return how many
        there were (none is counted as dropped)."""
        with self._lock:
            count = len(self._take())
            self._dropped = 0
        return count

    def drop(self, count: int) -> None:
        """Count ``count`` events lost before they reached the batch."""
        with self._lock:
            self._dropped += count

    def _trim(self) -> None:
        """Drop the oldest events past ``max_pending`` and count them (a
        few per request while a dead store keeps the batch full)."""
        with self._lock:
            excess = len(self._pending) - self.max_pending
            if excess > 0:
                popleft = self._pending.popleft
                for _ in range(excess):
                    popleft()
                self._dropped += excess

    def _take(self) -> list[Event]:
        """Remove every event pending now, oldest first; call with ``_lock``
        held. Appends made meanwhile stay for the next flush."""
        pending = self._pending
        # len(pending) calls of popleft, looped in C (iter(popleft, sentinel)
        # would also compare every event with the sentinel).
        return list(starmap(pending.popleft, repeat((), len(pending))))

    def _take_groups(self) -> Mapping[int, Sequence[Event]]:
        """``_take()``, grouped by slot: ``{slot: events, oldest first}``."""
        take_groups = getattr(self._pending, "take_groups", None)
        if take_groups is not None:  # _speedups.Pending groups as it takes, into Events
            return take_groups()  # type: ignore[no-any-return]
        return _flush.group(self._take())

    @property
    def pending(self) -> int:
        return len(self._pending)

    def use_pending(self, kind: Callable[[], PendingEvents]) -> None:
        """Keep pending events in ``kind()`` from now on (and after a fork),
        moving those pending now into it."""
        with self._lock:
            events = self._take()
            self._new_pending = kind
            self._pending = kind()
            self._pending.extend(events)

    # -- the flusher ----------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._wake.clear()
            self._thread = threading.Thread(target=self._run, name="samplez-flusher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        me = threading.current_thread()
        while self._thread is me:
            if self._wake.wait(self.flush_interval):
                # Woken by configure() or stop(): re-read the interval.
                self._wake.clear()
                continue
            if self._pending or self._dropped:
                try:
                    self.flush()
                except Exception:  # never let the flusher die
                    log.exception("samplez: flush failed")

    def flush(self) -> FlushSummary:
        """Apply every pending event now; return what this flush did."""
        with self._flush_lock:
            with self._lock:
                groups = self._take_groups()
                dropped, self._dropped = self._dropped, 0
            totals = _flush.FlushTotals()
            if groups:
                try:
                    totals = _flush.run(groups, self.context())
                except Exception as exc:
                    log.exception("samplez: flush failed")
                    totals.failed, totals.errors = sum(map(len, groups.values())), totals.errors + 1
                    self.health["last_error"] = repr(exc)
            if totals.retry:
                with self._lock:
                    self._pending.extendleft(reversed(totals.retry))
                if len(self._pending) > self.max_pending:
                    self._trim()
            summary = FlushSummary(
                applied=totals.applied,
                dropped=dropped + totals.failed,
                round_trips=totals.round_trips,
                errors=totals.errors,
            )
            self._record(summary)
            return summary

    def _record(self, summary: FlushSummary) -> None:
        health = self.health
        health["last_flush"] = time.time()
        health["flushes"] += 1
        for name in ("applied", "dropped", "errors", "round_trips"):
            health[name] += getattr(summary, name)
        if summary.errors:
            health["last_error"] = f"{summary.errors} store operations failed at {time.strftime('%H:%M:%S')}"
            log.warning("samplez: flush had %d failed store operations", summary.errors)

    def stop(self) -> None:
        """Stop the flusher thread (a new one starts on the next event)."""
        thread, self._thread = self._thread, None
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _after_fork_in_child(self) -> None:
        self._pending = self._new_pending()
        self._dropped = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self.store.reset_after_fork()

    def _at_exit(self) -> None:
        self.stop()
        # A flush may hand events back (a compare-and-swap lost to another
        # process): give them a few more tries before the process is gone.
        for _ in range(EXIT_FLUSHES):
            if not self._pending:
                break
            try:
                self.flush()
            except Exception:
                log.exception("samplez: flush at exit failed")
                break


engine = Engine()
os.register_at_fork(after_in_child=engine._after_fork_in_child)
atexit.register(engine._at_exit)

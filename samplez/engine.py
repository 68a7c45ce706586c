"""The process-wide state of samplez: the store, the pending batch and the
background flusher.

Concurrency: request threads only append to ``_pending`` (a deque), under
``_lock``, which is held for in-memory work only. The batch is bounded in
events (``max_pending``) and in bytes (``max_pending_bytes``): past either,
the oldest events are dropped and counted. The flusher thread takes the
whole batch under ``_lock`` and does the network I/O outside it, one flush
at a time under ``_flush_lock``. After ``fork()`` the child starts with an
empty batch, fresh locks, no flusher and no sockets: the parent still owns
and flushes what was pending, so nothing is lost or applied twice.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from . import checks
from . import flush as _flush
from .definitions import Publisher
from .errors import ConfigError
from .flush import Context, Event
from .store.base import Store
from .store.keys import KeySpace
from .store.memory import MemoryStore
from .workers import Heartbeat

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


def _store(store: Any) -> Store:
    if store is None:
        return MemoryStore()
    if not isinstance(store, Store):
        raise ConfigError(f"store must be a samplez store (MemcacheStore, RedisStore, MemoryStore), got {store!r}")
    return store


#: Each setting's check, which returns the value to keep.
_CHECKS: dict[str, Callable[[Any], Any]] = {
    "store": _store,
    "prefix": checks.prefix,
    "flush_interval": checks.flush_interval,
    "max_pending": checks.at_least("max_pending", 1),
    "max_pending_bytes": checks.at_least("max_pending_bytes", 2**16),
    "clock": checks.clock,
    "flush": checks.choice("flush", FLUSH_MODES),
}


#: What a pending event costs besides its key's characters: the tuple, its
#: deque slot, the str's header and the numbers (counted per event, so the
#: bound errs on the safe side).
EVENT_BYTES = 170


def event_bytes(event: Event) -> int:
    return EVENT_BYTES + len(event[1])


class Engine:
    def __init__(self) -> None:
        self.store: Store = MemoryStore()
        self.space = KeySpace("samplez")
        self.flush_interval = 0.5
        self.max_pending = 100_000
        self.max_pending_bytes = 32 * 2**20
        self.clock: Callable[[], float] = time.time
        self.flush_mode = "background"
        self._pending: deque[Event] = deque()
        self._pending_bytes = 0
        self._dropped = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self.heartbeat = Heartbeat()
        self.publisher = Publisher()
        self.served = 0  # requests this process served, as the middleware counts them
        self.health: dict[str, Any] = {
            "last_flush": None,
            "last_error": None,
            "flushes": 0,
            "applied": 0,
            "dropped": 0,
            "errors": 0,
            "round_trips": 0,
        }

    # -- configuration ------------------------------------------------------

    def configure(self, **settings: Any) -> None:
        """Apply ``settings`` (the keywords of :func:`samplez.configure`),
        every one checked before any is applied."""
        for name in settings:
            if name not in _CHECKS:
                raise TypeError(f"unknown samplez setting {name!r}")
        checked = {name: _CHECKS[name](value) for name, value in settings.items()}
        for name, value in checked.items():
            if name == "prefix":
                self.space = KeySpace(value)
            elif name == "flush":
                self.flush_mode = value
            else:
                setattr(self, name, value)
        if "flush_interval" in settings:
            self._wake.set()  # the flusher re-reads its interval

    def context(self) -> Context:
        return Context(self.store, self.space, self.clock())

    # -- the request side: in-memory work only ------------------------------

    def extend(self, events: list[Event], chars: int, served: int = 0) -> None:
        """Add ``events``, whose keys are ``chars`` long in all, to the
        process batch, dropping the oldest past either bound; count
        ``served`` requests."""
        with self._lock:
            self._pending.extend(events)
            self._pending_bytes += EVENT_BYTES * len(events) + chars
            self.served += served
            if len(self._pending) > self.max_pending or self._pending_bytes > self.max_pending_bytes:
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
        """Drop the oldest events past ``max_pending`` or
        ``max_pending_bytes`` and count them; call with ``_lock`` held."""
        pending = self._pending
        while pending and (len(pending) > self.max_pending or self._pending_bytes > self.max_pending_bytes):
            self._pending_bytes -= event_bytes(pending.popleft())
            self._dropped += 1

    def _take(self) -> deque[Event]:
        """Remove every event pending now, oldest first; call with ``_lock``
        held."""
        events, self._pending = self._pending, deque()
        self._pending_bytes = 0
        return events

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

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
            if self._pending or self._dropped or self.heartbeat.due(time.monotonic()):
                try:
                    self.flush()
                except Exception:  # never let the flusher die
                    log.exception("samplez: flush failed")

    def flush(self) -> FlushSummary:
        """Apply every pending event now; return what this flush did."""
        with self._flush_lock:
            with self._lock:
                groups = _flush.group(self._take())
                dropped, self._dropped = self._dropped, 0
            totals = _flush.FlushTotals()
            beat = self.heartbeat.due(time.monotonic())
            if groups or beat:
                try:
                    ctx = self.context()
                    also = [self.heartbeat.plan(ctx, self._stats())] if beat else []
                    published = self.publisher.plan(ctx, groups)
                    if published is not None:
                        also.append(published)
                    totals = _flush.run(groups, ctx, also)
                except Exception as exc:
                    log.exception("samplez: flush failed")
                    totals.failed, totals.errors = sum(map(len, groups.values())), totals.errors + 1
                    self.health["last_error"] = repr(exc)
            if totals.retry:
                with self._lock:
                    self._pending.extendleft(reversed(totals.retry))
                    self._pending_bytes += sum(map(event_bytes, totals.retry))
                    self._trim()
            summary = FlushSummary(
                applied=totals.applied,
                dropped=dropped + totals.failed,
                round_trips=totals.round_trips,
                errors=totals.errors,
            )
            self._record(summary)
            return summary

    def _stats(self) -> dict[str, Any]:
        """What this process's heartbeat tells of it."""
        health = self.health
        return {
            "requests": self.served,
            "pending": len(self._pending),
            "applied": health["applied"],
            "dropped": health["dropped"],
            "errors": health["errors"],
            "flushes": health["flushes"],
            "last_flush": health["last_flush"],
        }

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
        self._pending = deque()
        self._pending_bytes = 0
        self._dropped = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self.heartbeat = Heartbeat()
        self.publisher = Publisher()
        self.served = 0
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

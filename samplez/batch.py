"""``samplez.set`` and the request batch.

``set`` runs on the caller's thread and does only in-memory work: it checks
the value and cuts the key, then records them in the current request's
batch or, outside any request, as events of their own in the process batch
(``engine``).

A request's batch is a :class:`RequestBatch` in the ``current`` context
variable: the middleware makes a fresh one as the request's call starts,
sets it there while the request's code runs (the call, each chunk of a
streamed body, its ``close()``), and closes it when the response is closed.
Closing folds it into the process batch as events stamped with one time.
Inside a request one (metric, key) keeps one value, the last one set, kept
with probability ``rate`` by one coin flip per key shared by every config;
counters count every ``set``.

A thread started with a copy of the request's context sees the same batch:
while the request is open its sets join it; once the batch is closed they
are events of their own, as outside any request. One lock guards every
request batch, held for a few dict stores and never across a call out, so
a set racing the fold is either folded or an event of its own, never lost.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from contextvars import ContextVar, Token
from typing import Any

from .engine import engine
from .flush import Event
from .metric import Metric, resolve_targets

__all__ = ["RequestBatch", "begin", "current", "end", "set"]

log = logging.getLogger("samplez")

#: The batch of the request whose code runs in this context, or None.
current: ContextVar[RequestBatch | None] = ContextVar("samplez.request", default=None)
_lock = threading.Lock()


def _reset_lock() -> None:
    """In a fork's child: a thread of the parent may have held the lock."""
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock)


class RequestBatch:
    """One request's ``samplez.set`` calls, until :meth:`close` folds them
    into the process batch."""

    __slots__ = ("values", "counts", "flips", "open", "route")

    def __init__(self) -> None:
        self.values: dict[tuple[int, str], Any] = {}  # (slot, key) -> the last value set
        self.counts: list[tuple[int, str, Any]] = []  # counters: every set counts
        self.flips: dict[str, float] = {}  # a key's one coin flip, for configs with rate < 1
        self.open = True
        self.route: str | None = None  # the endpoint, once named (samplez.route)

    def record(self, metrics: tuple[Metric, ...], key: str, value: Any) -> bool:
        """Apply the request rules to one ``set``; False once closed."""
        with _lock:
            if not self.open:
                return False
            for metric in metrics:
                if not metric.dedup_in_request:
                    self.counts.append((metric.slot, key, value))
                elif metric.rate == 1.0 or self._flip(key) < metric.rate:
                    self.values[metric.slot, key] = value
        return True

    def _flip(self, key: str) -> float:
        flip = self.flips.get(key)
        if flip is None:
            flip = self.flips[key] = random.random()
        return flip

    def close(self) -> None:
        """Fold the batch into the process batch; later sets are events of
        their own. Runs as a response closes, so it never raises: a clock
        that fails costs the request's samples (logged, counted as
        dropped), not the request."""
        with _lock:
            if not self.open:
                return
            self.open = False
            values, counts = self.values, self.counts
            self.values, self.counts, self.flips = {}, [], {}
        if not values and not counts:
            return
        try:
            when = engine.clock()
        except Exception:
            log.exception("samplez: the clock failed; %d samples dropped", len(values) + len(counts))
            engine.drop(len(values) + len(counts))
            return
        events: list[Event] = [(slot, key, value, when) for (slot, key), value in values.items()]
        events += [(slot, key, value, when) for slot, key, value in counts]
        engine.extend(events)


def set(target: Any, key: str | bytes, value: int | float | str = 1) -> None:  # noqa: A001
    """Record ``value`` for ``key`` in every config or counter of ``target``
    (a Config, a counter, a Section, or an iterable of them).

    Raises ``TypeError``/``ValueError`` here, at the call, for a value the
    target cannot take (``bool``, ``None``, NaN, ±inf, a str for a reservoir)
    or a key that is not text. The key is cut to the targets'
    ``max_key_length`` here, so a pending event never holds more.

    >>> samplez.set(LATENCY, '/api/items', 124)
    """
    targets = resolve_targets(target)
    for check in targets.checks:
        check(value)
    key = _key(key, targets.key_limit)
    batch = current.get()
    if batch is None or not batch.record(targets.metrics, key, value):
        alone = RequestBatch()  # outside any request, or after its end: events of their own
        alone.record(targets.metrics, key, value)
        alone.close()


def _key(key: object, limit: int) -> str:
    """``key`` as text, at most ``limit`` characters."""
    if not isinstance(key, str):
        if not isinstance(key, (bytes, bytearray, memoryview)):
            raise TypeError(f"samplez key must be a str (or UTF-8 bytes), got {type(key).__name__} {key!r:.80}")
        raw = bytes(key)
        try:
            key = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"samplez key bytes must be UTF-8, got {raw[:40]!r}") from None
    return key if len(key) <= limit else key[:limit]


def begin() -> Token[RequestBatch | None]:
    """Start a request batch in the current context; returns the token for
    :func:`end`. For servers and tests that run a request's code without
    the middleware."""
    return current.set(RequestBatch())


def end(token: Token[RequestBatch | None]) -> None:
    """Close the current request's batch and leave the request."""
    batch = current.get()
    current.reset(token)
    if batch is not None:
        batch.close()

"""``samplez.set`` and the request batch.

``set`` runs on the caller's thread and does only in-memory work: it checks
the value and cuts the key, then records them in the current request's
batch or, outside any request, as events of their own in the process batch
(``engine``).

A request's batch is a :class:`RequestBatch` in the ``current`` context
variable: the middleware makes a fresh one as the request's call starts,
sets it there while the call runs and again while a streamed body is sent
and closed, and closes it when the response is closed. Closing folds it
into the process batch as events stamped with one time. Inside a request
one (metric, key) keeps one value, the last one set, kept with probability
``rate`` by one coin flip per key shared by every config; counters count
every ``set``.

A thread started with a copy of the request's context sees the same batch:
while the request is open its sets join it; once the batch is closed they
are events of their own, as outside any request. Such a thread, and any
set made once the request's call has returned (a streamed body too), takes
a lock that the fold takes too, so a set racing the fold is either folded
or an event of its own, never lost. The call itself, on its thread, needs
no lock: the batch is never closed while it runs.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from contextvars import ContextVar, Token
from operator import itemgetter
from threading import get_ident
from typing import Any, Iterable

from .engine import engine
from .flush import Event
from .metric import resolve_targets

__all__ = ["RequestBatch", "begin", "current", "end", "set"]

log = logging.getLogger("samplez")

#: The batch of the request whose code runs in this context, or None.
current: ContextVar[RequestBatch | None] = ContextVar("samplez.request", default=None)
_lock = threading.Lock()
_key_of = itemgetter(1)


def _reset_lock() -> None:
    """In a fork's child: a thread of the parent may have held the lock."""
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock)


class RequestBatch:
    """One request's ``samplez.set`` calls, until :meth:`close` folds them
    into the process batch."""

    __slots__ = ("values", "counts", "flips", "open", "route", "thread")

    def __init__(self) -> None:
        self.values: dict[tuple[int, str], Any] = {}  # (slot, key) -> the last value set
        self.counts: list[tuple[int, str, Any]] = []  # counters: every set counts
        self.flips: dict[str, float] = {}  # a key's one coin flip, for configs with rate < 1
        self.open = True
        self.thread: int | None = get_ident()  # the thread of the request's call, until it returns
        self.route: str | None = None  # the endpoint, once named (samplez.route)

    def flip(self, key: str) -> float:
        """The coin flipped for ``key`` in this request (the first set of
        the key flips it)."""
        flip = self.flips.get(key)
        if flip is None:
            flip = self.flips.setdefault(key, random.random())  # a racing thread's flip may win
        return flip

    def close(self, served: int = 0, extra: Iterable[tuple[int, str, Any]] = ()) -> None:
        """Fold the batch into the process batch, with the ``(slot, key,
        value)`` sets ``extra`` (a request's own metrics), and count
        ``served`` requests; later sets are events of their own. Runs as a
        response closes, so it never raises: a clock that fails costs the
        request's samples (logged, counted as dropped), not the request."""
        _lock.acquire()
        try:
            if not self.open:
                return
            self.open = False
            self.thread = None
        finally:
            _lock.release()
        try:
            when = engine.clock()
        except Exception:
            lost = len(self.values) + len(self.counts)
            log.exception("samplez: the clock failed; %d samples dropped", lost)
            engine.drop(lost)
            engine.extend([], 0, served)
            return
        events: list[Event] = []
        if self.values:
            for (slot, key), value in self.values.items():
                events.append((slot, key, value, when))
        if self.counts:
            for slot, key, value in self.counts:
                events.append((slot, key, value, when))
        for slot, key, value in extra:
            events.append((slot, key, value, when))
        engine.extend(events, sum(map(len, map(_key_of, events))) if events else 0, served)


def set(target: Any, key: str | bytes, value: int | float | str = 1) -> None:  # noqa: A001
    """Record ``value`` for ``key`` in every config or counter of ``target``
    (a Config, a counter, a Section, or an iterable of them).

    Raises ``TypeError``/``ValueError`` here, at the call, for a value the
    target cannot take (``bool``, ``None``, NaN, ±inf, a str for a reservoir)
    or a key that is not text. The key is cut to the targets'
    ``max_key_length`` here, so a pending event never holds more.

    >>> samplez.set(LATENCY, '/api/items', 124)
    """
    try:
        targets = target._samplez_targets
    except AttributeError:
        targets = resolve_targets(target)
    if type(value) is not float or not targets.floats or value - value != 0.0:  # a finite float needs no call
        targets.check(value)
    if type(key) is not str or len(key) > targets.key_limit:
        key = _key(key, targets.key_limit)
    batch = current.get()
    alone = batch is None
    if batch is None:
        batch = RequestBatch()  # outside any request: events of their own
    while True:
        # The request's call, on its thread, takes no lock: nothing closes
        # its batch while it runs. Any other set does (``thread`` is
        # cleared as the call returns).
        mine = batch.thread == get_ident()
        if not mine:
            _lock.acquire()
        try:
            if batch.open:
                # (a loop over an empty tuple makes an iterator: test first)
                if targets.kept:
                    for slot in targets.kept:
                        batch.values[slot, key] = value
                if targets.counted:
                    for slot in targets.counted:
                        batch.counts.append((slot, key, value))
                if targets.sampled:
                    for slot, rate in targets.sampled:
                        if batch.flip(key) < rate:
                            batch.values[slot, key] = value
                break
        finally:
            if not mine:
                _lock.release()
        batch, alone = RequestBatch(), True  # its request is over: events of their own
    if alone:
        batch.close()


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

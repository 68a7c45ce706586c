"""The embedded, in-process store: memcache semantics without a server."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any, Callable, Sequence

from .base import MAX_VALUE_LENGTH, REFUSED, Op, Store, valid_key

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Keeps everything in a dict of this process, with memcache's semantics:
    expiry, ``add`` that refuses an
    existing key, integral ``incr`` that refuses a non-numeric value, and
    compare-and-swap tokens.

    It is the default store and the twin the contract tests hold memcached
    to. Each process has its own copy, so under a multi-process server
    (gunicorn ``-w 4``) use :class:`~samplez.MemcacheStore` instead.

    :param clock: seconds since the epoch; inject one to test expiry.

    >>> store = MemoryStore()
    """

    kind = "memory"
    shared = False

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._data: dict[str, tuple[bytes, float, int]] = {}
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)

    def __len__(self) -> int:
        return len(self._data)

    def execute(self, ops: Sequence[Op]) -> tuple[list[Any], int]:
        if not ops:
            return [], 0
        with self._lock:
            now = self._clock()
            return [self._apply(op, now) for op in ops], 1

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()

    def _expiry(self, ttl: int, now: float) -> float:
        # TTLs at this interface are always relative; only memcached's wire
        # format needs the absolute form past 30 days.
        return float("inf") if ttl <= 0 else now + ttl

    def _live(self, key: str, now: float) -> tuple[bytes, float, int] | None:
        entry = self._data.get(key)
        if entry is not None and entry[1] <= now:
            del self._data[key]
            return None
        return entry

    def _store(self, key: str, value: bytes, ttl: int, now: float) -> Any:
        if len(value) > MAX_VALUE_LENGTH:
            return REFUSED
        self._data[key] = (bytes(value), self._expiry(ttl, now), next(self._tokens))
        return True

    def _apply(self, op: Op, now: float) -> Any:
        cmd, key = op.cmd, op.key
        if valid_key(key) is None:
            return REFUSED
        entry = self._live(key, now)
        if cmd == "get":
            return None if entry is None else entry[0]
        if cmd == "gets":
            return None if entry is None else (entry[0], entry[2])
        if cmd == "set":
            return self._store(key, op.value, op.ttl, now)
        if cmd == "add":
            return False if entry is not None else self._store(key, op.value, op.ttl, now)
        if cmd == "cas":
            if entry is None or entry[2] != op.cas:
                return False
            return self._store(key, op.value, op.ttl, now)
        if cmd == "incr":
            if entry is None:
                return None
            digits = entry[0].strip()
            # memcached refuses what is not a decimal below 2**64, and wraps.
            if not digits.isdigit() or op.delta < 0 or int(digits) >= 2**64:
                return REFUSED
            value = (int(digits) + op.delta) % 2**64
            self._data[key] = (str(value).encode(), entry[1], next(self._tokens))
            return value
        if cmd == "touch":
            if entry is None:
                return False
            self._data[key] = (entry[0], self._expiry(op.ttl, now), entry[2])
            return True
        if cmd == "delete":
            return self._data.pop(key, None) is not None
        raise ValueError(f"unknown store command {cmd!r}")

"""Sliding-window counters: :class:`RollingCounter` and :class:`RollingMax`
(Hystrix's RollingNumber, hops' Counter, StatsCollector's
RollingTimeWindow).

The window is cut into epoch-aligned buckets: bucket index =
``floor(when / bucket_seconds)``, computed from each event's own time at
flush and from the clock at read. Each (key, bucket) is its own memcache
key living ``window + bucket + margin`` seconds, so a bucket leaves the
window by arithmetic (a gap longer than the window reads 0) and leaves
memcache by expiry; no background thread rolls anything.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Sequence

from ..checks import check_number, config_error, seconds
from ..constants import SECONDS_30_DAY
from ..flush import Context, Event, Outcome, Plan
from ..store.base import Op, add, cas, get, gets, touch
from ..store.keys import FORMAT_VERSION, MAX_COUNT, count_of
from .base import (
    Counter,
    CounterResult,
    Reading,
    by_key_and_step,
    count_ops,
    fit,
    send_repairs,
    settle_counts,
    ttl_for,
)

__all__ = ["MaxReading", "RollingCounter", "RollingMax", "RollingReading"]

MAX_BUCKETS = 600
#: How long ``cumulative`` remembers an idle key (refreshed on every write).
CUMULATIVE_TTL = SECONDS_30_DAY
_MAX = struct.Struct("<d")
_VERSION = bytes([FORMAT_VERSION])


def _default_buckets(window: int) -> int:
    """One bucket per second, or the most buckets <= 600 that divide the window."""
    return max(n for n in range(1, min(window, MAX_BUCKETS) + 1) if window % n == 0)


@dataclass
class RollingReading(Reading):
    """One key of a :class:`RollingCounter`: ``total`` over the window,
    ``buckets`` oldest first, ``latest`` (the newest bucket) and
    ``cumulative`` (since the key was first seen)."""

    total: int = 0
    buckets: list[int] = field(default_factory=list)
    latest: int = 0
    cumulative: int = 0

    @property
    def display_value(self) -> float:
        return self.total

    @property
    def series(self) -> list[float]:
        return list(self.buckets)


@dataclass
class MaxReading(Reading):
    """One key of a :class:`RollingMax`: ``max`` over the window, ``buckets``
    (each bucket's max, 0 when empty) oldest first, ``latest``."""

    max: float = 0
    buckets: list[float] = field(default_factory=list)
    latest: float = 0

    @property
    def display_value(self) -> float:
        return self.max

    @property
    def series(self) -> list[float]:
        return list(self.buckets)


class _Window(Counter):
    def __init__(self, name: str, window: int, buckets: int | None, max_keys: int, title: str | None) -> None:
        super().__init__(name, max_keys, title)
        self.window = seconds("window", window)
        if buckets is None:
            buckets = _default_buckets(self.window)
        self.buckets = buckets = seconds("buckets", buckets)
        if buckets > MAX_BUCKETS:
            raise config_error("buckets", f"must be <= {MAX_BUCKETS}", buckets)
        if self.window % buckets:
            raise config_error("buckets", f"must divide window={self.window} evenly", buckets)
        self.bucket_seconds = self.window // buckets
        self.ttl = ttl_for(self.window + self.bucket_seconds)
        self._setup_index()

    def bucket_of(self, when: float) -> int:
        return int(when // self.bucket_seconds)

    def window_buckets(self, now: float) -> range:
        """The bucket indexes of the window ending now, oldest first."""
        newest = self.bucket_of(now)
        return range(newest - self.buckets + 1, newest + 1)

    def _group(self, events: Sequence[Event], stored: dict[str, str]) -> dict[tuple[str, int], list[Event]]:
        return by_key_and_step(events, stored, self.bucket_seconds)

    def read(self, ctx: Context, **options: Any) -> CounterResult:
        if options:
            raise TypeError(f"unexpected options for a {type(self).__name__}: {', '.join(options)}")
        return CounterResult(self, self.listed(ctx), lambda keys: self._load(keys, ctx))

    def _load(self, keys: list[str], ctx: Context) -> dict[str, Any]:
        raise NotImplementedError


class RollingCounter(_Window):
    """Counts per key over the last ``window`` seconds, in ``buckets``.

    :param window: seconds of the sliding window.
    :param buckets: how many buckets cut it (default: one per second, or the
        most <= 600 that divide ``window``); must divide ``window`` evenly.
    :param max_keys: keys listed in the index; later keys count as ``(other)``.

    >>> HITS = RollingCounter('hits_1m', window=60)
    >>> samplez.set(HITS, 'GET /api')
    >>> samplez.get(HITS)['GET /api'].total
    """

    kind = "rolling"

    def __init__(
        self, name: str, window: int, buckets: int | None = None, max_keys: int = 100, title: str | None = None
    ) -> None:
        super().__init__(name, window, buckets, max_keys, title)

    def apply(self, events: Sequence[Event], ctx: Context) -> Plan:
        admission = yield from self.admit(events, ctx)
        outcome = Outcome()
        writes: list[tuple[str, int, Sequence[Event]]] = []
        totals: dict[str, int] = {}
        for (key, bucket), batch in self._group(events, admission.stored).items():
            kept, amount = fit(batch, 0, outcome)
            writes.append((self.data_key(ctx, key, bucket), amount, kept))
            totals[key] = totals.get(key, 0) + amount
        # The cumulative count follows the buckets' fate (it owns no events).
        no_events: list[Event] = []
        cumulative = [
            (self.data_key(ctx, key, "c"), min(amount, MAX_COUNT), no_events) for key, amount in totals.items()
        ]
        ops: list[Op] = list(admission.ops)
        for key, amount, _ in writes:
            ops += count_ops(key, amount, self.ttl)
        for key, amount, _ in cumulative:
            ops += count_ops(key, amount, CUMULATIVE_TTL)
        ops += [touch(key, CUMULATIVE_TTL) for key, _, _ in cumulative]
        results = yield ops
        admission.settle(results[: len(admission.ops)])
        results = results[len(admission.ops) :]
        repairs = settle_counts(writes, results[: 2 * len(writes)], self.ttl, outcome)
        repairs += settle_counts(cumulative, results[2 * len(writes) :], CUMULATIVE_TTL, outcome)
        yield from send_repairs(repairs, outcome)
        return outcome

    def _load(self, keys: list[str], ctx: Context) -> dict[str, Any]:
        span = self.window_buckets(ctx.now)
        ops = []
        for key in keys:
            prefix = self.data_prefix(ctx, key)
            ops += [get(f"{prefix}:{bucket}") for bucket in span]
            ops.append(get(f"{prefix}:c"))
        results, _ = ctx.store.execute(ops)
        readings = {}
        step = len(span) + 1
        for i, key in enumerate(keys):
            chunk = results[i * step : (i + 1) * step]
            buckets = [count_of(raw) for raw in chunk[:-1]]
            total = sum(buckets)
            readings[key] = RollingReading(total, buckets, buckets[-1], max(count_of(chunk[-1]), total))
        return readings


def _encode_max(value: float) -> bytes:
    return _VERSION + _MAX.pack(value)


def _decode_max(raw: object) -> float | None:
    if not isinstance(raw, bytes) or len(raw) != 1 + _MAX.size or raw[:1] != _VERSION:
        return None
    (value,) = _MAX.unpack_from(raw, 1)
    return value if value == value and abs(value) != float("inf") else None


def _number(value: float) -> float:
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


class RollingMax(_Window):
    """The largest value per key over the last ``window`` seconds.

    Each bucket's max is merged with memcache compare-and-swap (``add`` when
    the bucket is new, ``cas`` when our value beats the stored one); a lost
    race puts the events back for the next flush, so no max is lost.
    Parameters as :class:`RollingCounter`; values are ints or floats.

    >>> SLOWEST = RollingMax('slowest_1m', window=60)
    >>> samplez.set(SLOWEST, 'GET /api', 412.5)
    """

    kind = "rolling_max"
    check_value = staticmethod(check_number)

    def __init__(
        self, name: str, window: int, buckets: int | None = None, max_keys: int = 100, title: str | None = None
    ) -> None:
        super().__init__(name, window, buckets, max_keys, title)

    def apply(self, events: Sequence[Event], ctx: Context) -> Plan:
        admission = yield from self.admit(events, ctx)
        groups = [
            (self.data_key(ctx, key, bucket), max(map(itemgetter(2), batch)), batch)
            for (key, bucket), batch in self._group(events, admission.stored).items()
        ]
        results = yield admission.ops + [gets(key) for key, _, _ in groups]
        admission.settle(results[: len(admission.ops)])
        outcome = Outcome()
        writes: list[Op] = []
        pending: list[list[Event]] = []
        for (key, value, batch), found in zip(groups, results[len(admission.ops) :]):
            if isinstance(found, tuple):
                stored = _decode_max(found[0])
                if stored is not None and stored >= value:
                    outcome.applied += len(batch)
                    continue
                writes.append(cas(key, _encode_max(value), found[1], self.ttl))
            elif found is None:
                writes.append(add(key, _encode_max(value), self.ttl))
            else:
                outcome.failed += len(batch)
                continue
            pending.append(batch)
        if writes:
            results = yield writes
            for batch, result in zip(pending, results):
                if result is True:
                    outcome.applied += len(batch)
                elif result is False:  # another writer got there first
                    outcome.retry.extend(batch)
                else:
                    outcome.failed += len(batch)
        return outcome

    def _load(self, keys: list[str], ctx: Context) -> dict[str, Any]:
        span = self.window_buckets(ctx.now)
        prefixes = [self.data_prefix(ctx, key) for key in keys]
        ops = [get(f"{prefix}:{bucket}") for prefix in prefixes for bucket in span]
        results, _ = ctx.store.execute(ops)
        readings = {}
        for i, key in enumerate(keys):
            found = [_decode_max(raw) for raw in results[i * len(span) : (i + 1) * len(span)]]
            buckets = [_number(v) if v is not None else 0 for v in found]
            present = [v for v in found if v is not None]
            readings[key] = MaxReading(_number(max(present)) if present else 0, buckets, buckets[-1])
        return readings

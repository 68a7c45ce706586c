"""Calendar counters: per key, counts per UTC hour, day, month and year,
plus the ``all`` key that sums every key (Bootic's stats aggregator).

Each event adds its value to eight memcache counters: its key's hour, day,
month and year, and the same four of ``all``. Every counter lives
``retention`` seconds from its first write (memcached reads expiries past
30 days as absolute times; the store converts them).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Sequence

from ..checks import seconds
from ..constants import SECONDS_1_DAY
from ..flush import Context, Event, Outcome, Plan
from ..store.base import Op, get
from ..store.keys import MAX_COUNT, count_of
from .base import Counter, CounterResult, Reading, by_key_and_step, count_ops, fit, send_repairs, settle_counts, ttl_for

__all__ = ["ALL", "CalendarCounter", "CalendarReading", "Segments"]

#: The key that sums every key.
ALL = "all"
DEFAULT_RETENTION = 2 * 366 * SECONDS_1_DAY


@dataclass
class CalendarReading(Reading):
    """One key now: the counts of the current UTC ``hour``, ``day``,
    ``month`` and ``year``, and ``hours``, today's 24 hours."""

    hour: int = 0
    day: int = 0
    month: int = 0
    year: int = 0
    hours: list[int] = field(default_factory=list)

    @property
    def display_value(self) -> float:
        return self.day

    @property
    def series(self) -> list[float]:
        return list(self.hours)


class Segments(dict):  # type: ignore[type-arg]
    """One key's ``{segment: count}`` for a year (months 1-12), a month
    (its days), a day (hours 0-23) or an hour (``{0: count}``)."""

    @property
    def display_value(self) -> float:
        return sum(self.values())

    @property
    def series(self) -> list[float]:
        return list(self.values())

    def as_dict(self) -> dict[int, int]:
        return dict(self)


def _part(label: str, value: object) -> int | None:
    """``2``, ``'02'`` and ``'2'`` name the same segment."""
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if type(value) is not int:
        raise ValueError(f"{label} must be an int, got {value!r}")
    return value


def segments_of(year: object, month: object = None, day: object = None, hour: object = None) -> list[tuple]:
    """The ``(segment, period key parts)`` of a calendar read; ValueError
    for an impossible date (month 13, Feb 30, hour 24, year -1)."""
    y, m, d, h = _part("year", year), _part("month", month), _part("day", day), _part("hour", hour)
    if y is None or not 1 <= y <= 9999:
        raise ValueError(f"year must be in 1-9999, got {year!r}")
    if m is None:
        if d is not None or h is not None:
            raise ValueError("a day or hour needs a month")
        return [(month_, ("m", y, month_)) for month_ in range(1, 13)]
    if not 1 <= m <= 12:
        raise ValueError(f"month must be in 1-12, got {month!r}")
    if d is None:
        if h is not None:
            raise ValueError("an hour needs a day")
        return [(day_, ("d", y, m, day_)) for day_ in range(1, calendar.monthrange(y, m)[1] + 1)]
    if not 1 <= d <= calendar.monthrange(y, m)[1]:
        raise ValueError(f"day must be a day of {y}-{m:02d}, got {day!r}")
    if h is None:
        return [(hour_, ("h", y, m, d, hour_)) for hour_ in range(24)]
    if not 0 <= h <= 23:
        raise ValueError(f"hour must be in 0-23, got {hour!r}")
    return [(0, ("h", y, m, d, h))]


def _periods(when: float) -> list[tuple]:
    t = datetime.fromtimestamp(when, timezone.utc)
    return [("h", t.year, t.month, t.day, t.hour), ("d", t.year, t.month, t.day), ("m", t.year, t.month), ("y", t.year)]


class CalendarCounter(Counter):
    """Counts per key per UTC hour, day, month and year, and the same for
    the ``all`` key (Bootic's period hashes).

    :param retention: seconds every count is kept (default: two years).
    :param max_keys: keys listed in the index; later keys count as ``(other)``.

    ``samplez.get(cal)`` maps each key (and ``'all'``) to a
    :class:`CalendarReading` for now; ``samplez.get(cal, year=2026,
    month=None, day=None, hour=None)`` maps each key to :class:`Segments`.

    >>> SIGNUPS = CalendarCounter('signups')
    >>> samplez.set(SIGNUPS, 'plan:pro')
    >>> samplez.get(SIGNUPS, year=2026, month=2)['all']
    """

    kind = "calendar"

    def __init__(
        self, name: str, retention: int = DEFAULT_RETENTION, max_keys: int = 100, title: str | None = None
    ) -> None:
        super().__init__(name, max_keys, title)
        self.retention = seconds("retention", retention)
        self.ttl = ttl_for(self.retention)
        self._setup_index()

    def period_key(self, ctx: Context, key: str, parts: tuple) -> str:
        if key == ALL:
            return ctx.space.key(self.name, ALL, *parts)
        return self.data_key(ctx, key, *parts)

    def apply(self, events: Sequence[Event], ctx: Context) -> Plan:
        admission = yield from self.admit(events, ctx)
        hours = {
            (key, _periods(hour * 3600)[0]): batch
            for (key, hour), batch in by_key_and_step(events, admission.stored, 3600).items()
        }
        # Events are accounted by their key's hour counter; the rest follow
        # with what it kept.
        outcome = Outcome()
        amounts: dict[str, int] = {}
        owners: dict[str, Sequence[Event]] = {}
        for (key, hour), batch in hours.items():
            kept, added = fit(batch, 0, outcome)
            owners[self.period_key(ctx, key, hour)] = kept
            for who in dict.fromkeys((key, ALL)):
                for parts in _periods(batch[0][3]):
                    name = self.period_key(ctx, who, parts)
                    amounts[name] = amounts.get(name, 0) + added
        no_events: list[Event] = []
        writes = [(name, min(amount, MAX_COUNT), owners.get(name, no_events)) for name, amount in amounts.items()]
        ops: list[Op] = list(admission.ops)
        for name, amount, _ in writes:
            ops += count_ops(name, amount, self.ttl)
        results = yield ops
        admission.settle(results[: len(admission.ops)])
        repairs = settle_counts(writes, results[len(admission.ops) :], self.ttl, outcome)
        yield from send_repairs(repairs, outcome)
        return outcome

    def read(  # type: ignore[override]
        self, ctx: Context, year: Any = None, month: Any = None, day: Any = None, hour: Any = None
    ) -> CounterResult:
        listed = self.listed(ctx) + [ALL]
        if year is None and month is None and day is None and hour is None:
            return CounterResult(self, listed, lambda keys: self._now(keys, ctx, hours=True))
        segments = segments_of(year, month, day, hour)
        return CounterResult(self, listed, lambda keys: self._segments(keys, segments, ctx))

    def read_current(self, ctx: Context) -> CounterResult:
        """Every key's current hour, day, month and year; ``hours`` left empty."""
        return CounterResult(self, self.listed(ctx) + [ALL], lambda keys: self._now(keys, ctx, hours=False))

    def normalize_key(self, key: str) -> str:
        return key if key == ALL else super().normalize_key(key)

    def _counts(self, keys: list[str], parts: list[tuple], ctx: Context) -> list[list[int]]:
        # Each key hashed once: its prefix, then every period's parts.
        suffixes = [":" + ":".join(map(str, p)) for p in parts]
        prefixes = [self.period_key(ctx, key, ()) for key in keys]
        results, _ = ctx.store.execute([get(prefix + suffix) for prefix in prefixes for suffix in suffixes])
        width = len(parts)
        return [[count_of(raw) for raw in results[i * width : (i + 1) * width]] for i in range(len(keys))]

    def _segments(self, keys: list[str], segments: list[tuple], ctx: Context) -> dict[str, Any]:
        counts = self._counts(keys, [parts for _, parts in segments], ctx)
        return {key: Segments(zip([s for s, _ in segments], row)) for key, row in zip(keys, counts)}

    def _now(self, keys: list[str], ctx: Context, hours: bool) -> dict[str, Any]:
        periods = _periods(ctx.now)
        _, y, m, d, _ = periods[0]
        parts = periods + [("h", y, m, d, h) for h in range(24 if hours else 0)]
        readings: dict[str, Any] = {}
        for key, row in zip(keys, self._counts(keys, parts, ctx)):
            readings[key] = CalendarReading(row[0], row[1], row[2], row[3], row[4:])
        return readings

"""What every counter shares: the bounded key index, the lazy result
mapping the dashboard reads, and the add-then-incr write with its repair.

The dashboard contract, held by every counter:

* ``samplez.get(counter)`` returns a :class:`CounterResult`: ``.metric``
  (the counter), ``.keys()`` (the index's keys, most relevant first, i.e.
  by ``display_value`` descending), ``result[key]`` (a reading; a key not
  listed is read from its own data, a key never seen reads as zero) and
  ``.as_dict()`` (JSON-ready ``{key: {field: value}}``).
* every reading is a :class:`Reading`: ``.display_value`` (the one number
  to show) and ``.series`` (numbers, oldest first, for a sparkline).
* ``counter.read_current(ctx)`` is the same result without what only a
  chart needs (a stepped counter's history, a calendar's hours of today):
  every other field reads as ``samplez.get`` reads it, in fewer gets.
  ``/metrics`` exports only current values, so it reads this.

A stored count never passes :data:`~samplez.keys.MAX_COUNT`, the largest
the reader takes for a count and a float holds exactly: ``samplez.set``
refuses a larger value, a flush leaves out the events of a key that would
take its count past it, and the outcome counts those as failed, not applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from itertools import groupby
from operator import itemgetter
from typing import Any, Callable, Generator, Iterator, Sequence

from ..checks import check_count, positive_int
from ..flush import Context, Event, Outcome
from ..metric import Metric
from ..store.base import REFUSED, Op, add, incr, set_
from ..store.keys import MAX_COUNT, digest
from .index import OTHER, Admission, KeyIndex

__all__ = [
    "Counter",
    "CounterResult",
    "Reading",
    "check_count",
    "count_ops",
    "by_key_and_step",
    "fit",
    "send_repairs",
    "settle_counts",
]

_key = itemgetter(1)
_when = itemgetter(3)

#: Upper bound of ``max_keys``: the index is one memcache value (< 1 MB).
MAX_KEYS = 1000
#: Seconds every key outlives what its counter must remember (clock skew,
#: a slow flush).
MARGIN = 60


@dataclass
class Reading:
    """One key's numbers; subclasses add their fields."""

    @property
    def display_value(self) -> float:
        raise NotImplementedError

    @property
    def series(self) -> list[float]:
        raise NotImplementedError

    def as_dict(self) -> dict[str, Any]:
        # Shallow on purpose: dataclasses.asdict deep-copies every list.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["display_value"] = self.display_value
        data["series"] = self.series
        return data


class CounterResult:
    """``samplez.get(counter)``: a mapping from key to reading, lazy for
    keys the index does not list (see the module docstring)."""

    def __init__(self, metric: Counter, listed: list[str], load: Callable[[list[str]], dict[str, Reading]]) -> None:
        self.metric = metric
        self._load = load
        self._readings = load(listed) if listed else {}
        self._listed = sorted(
            self._readings, key=lambda key: (key == OTHER, -(self._readings[key].display_value or 0), key)
        )

    def keys(self) -> list[str]:
        return list(self._listed)

    def __getitem__(self, key: str) -> Reading:
        if isinstance(key, bytes):
            key = key.decode("utf-8")
        if not isinstance(key, str):
            raise TypeError(f"counter keys are str, got {type(key).__name__} {key!r}")
        key = self.metric.normalize_key(key)
        reading = self._readings.get(key)
        if reading is None:
            reading = self._readings[key] = self._load([key])[key]
        return reading

    def get(self, key: str, default: Any = None) -> Any:
        """Like ``self[key]``: a key never seen reads as zero, so ``default``
        is never returned (it is accepted for ``dict`` compatibility)."""
        return self[key]

    def __contains__(self, key: object) -> bool:
        return key in self._listed

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._listed)

    def items(self) -> list[tuple[str, Reading]]:
        return [(key, self[key]) for key in self._listed]

    def values(self) -> list[Reading]:
        return [self[key] for key in self._listed]

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {key: self[key].as_dict() for key in self._listed}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.metric!r}: {len(self)} keys>"


class Counter(Metric):
    """Base of every counter: the name, ``max_keys`` and the key index.

    Subclasses set ``ttl`` (seconds every data key must live) before
    calling :meth:`_setup_index`, and implement ``apply``/``read``.
    """

    kind = "counter"
    check_value = staticmethod(check_count)
    ttl: int

    def __init__(self, name: str, max_keys: int = 100, title: str | None = None) -> None:
        super().__init__(name, title)
        self.max_keys = positive_int("max_keys", max_keys, MAX_KEYS)

    def _setup_index(self) -> None:
        self.index = KeyIndex(self.name, self.max_keys, self.ttl)
        self._register()

    def data_key(self, ctx: Context, key: str, *parts: object) -> str:
        """The memcache key of one piece of ``key``'s data (``key`` hashed)."""
        return ctx.space.key(self.name, digest(key), *parts)

    def data_prefix(self, ctx: Context, key: str) -> str:
        """``data_key(ctx, key)``: append ``f":{part}"`` to it in hot loops."""
        return ctx.space.key(self.name, digest(key))

    def admit(self, events: Sequence[Event], ctx: Context) -> Generator[list[Op], list[Any], Admission]:
        """Admit the keys of ``events`` to the index. The admission's
        ``stored`` then also maps each key as it was set to where it is
        counted, so that a flush normalizes each distinct key once."""
        normalized = {raw: self.normalize_key(raw) for raw in dict.fromkeys(map(itemgetter(1), events))}
        admission = yield from self.index.admit(list(dict.fromkeys(normalized.values())), ctx)
        stored = admission.stored
        stored.update({raw: stored[key] for raw, key in normalized.items()})
        return admission

    def listed(self, ctx: Context) -> list[str]:
        return self.index.read(ctx)

    def read_current(self, ctx: Context) -> CounterResult:
        """``read(ctx)`` without history (see the module docstring);
        counters that read no history inherit ``read`` itself."""
        return self.read(ctx)


def by_key_and_step(
    events: Sequence[Event], stored: dict[str, str], seconds: float, offset: float = 0
) -> dict[tuple[str, int], list[Event]]:
    """``events`` grouped by where their key is counted (``stored``, from
    :meth:`Counter.admit`) and the epoch-aligned step of ``seconds`` (after
    ``offset``) that holds their time, each group in the order it came."""
    if not events:
        return {}
    groups: dict[tuple[str, int], list[Event]] = {}
    step = int((min(map(_when, events)) - offset) // seconds)
    if step == int((max(map(_when, events)) - offset) // seconds):
        # The usual flush, a fraction of one step: group by key alone,
        # with a stable sort rather than a Python loop over the events,
        # unless two keys are counted in one place (past max_keys), whose
        # events must stay in the order they came.
        runs = [(key, list(run)) for key, run in groupby(sorted(events, key=_key), key=_key)]
        if len({stored[key] for key, _ in runs}) == len(runs):
            return {(stored[key], step): run for key, run in runs}
    for event in events:
        where = (stored[event[1]], int((event[3] - offset) // seconds))
        group = groups.get(where)
        if group is None:
            groups[where] = [event]
        else:
            group.append(event)
    return groups


def fit(events: Sequence[Event], count: int, outcome: Outcome) -> tuple[Sequence[Event], int]:
    """The events a count now at ``count`` can take without passing
    ``MAX_COUNT`` (each kept, in order, while the total fits) and their sum;
    the others are failed in ``outcome``: they can never be stored."""
    room = MAX_COUNT - count
    total = sum(map(itemgetter(2), events))
    if total <= room:
        return events, total
    kept = []
    for event in events:
        if event[2] <= room:
            room -= event[2]
            kept.append(event)
    outcome.failed += len(events) - len(kept)
    return kept, MAX_COUNT - count - room


def count_ops(key: str, amount: int, ttl: int, start: int = 0) -> list[Op]:
    """Add ``amount`` to a counter, creating it at ``start`` if missing: an
    ``add`` then an ``incr`` in one pipeline, so no writer ever races the
    creation."""
    return [add(key, str(start).encode(), ttl), incr(key, amount)]


#: A ``set`` that repairs a counter, and how many events it stores.
Repair = tuple[Op, int]


def settle_counts(
    writes: Sequence[tuple[str, int, Sequence[Event]]], results: list[Any], ttl: int, outcome: Outcome, start: int = 0
) -> list[Repair]:
    """Account for ``count_ops`` results (two per write, in order, each
    ``amount`` the sum of its events as :func:`fit` kept them; a write with
    no events is a total that follows others); returns the repairs for
    :func:`send_repairs`.

    An ``incr`` that took a count past ``MAX_COUNT`` is undone by a ``set``
    to what the count held plus the events that still fit; the rest fail.
    A count of someone else's bytes (not a number, a number no count
    reaches, or one that wrapped at 2**64) starts again at ``start``.
    """
    repairs: list[Repair] = []
    for (key, amount, events), result in zip(writes, results[1::2]):
        if isinstance(result, int) and amount <= result <= MAX_COUNT:
            outcome.applied += len(events)
        elif result is REFUSED or isinstance(result, int):
            before = result - amount if isinstance(result, int) and 0 <= result - amount <= MAX_COUNT else start
            kept, added = fit(events, before, outcome)
            if not events:
                added = min(amount, MAX_COUNT - before)
            repairs.append((set_(key, str(before + added).encode(), ttl), len(kept)))
            outcome.applied += len(kept)
        elif result is None:  # evicted between add and incr: try next flush
            outcome.retry.extend(events)
        else:
            outcome.failed += len(events)
    return repairs


def send_repairs(repairs: list[Repair], outcome: Outcome) -> Generator[list[Op], list[Any], None]:
    """Send ``repairs`` in one round, if any; the events a failed repair
    would have stored were not applied."""
    if not repairs:
        return
    results = yield [op for op, _ in repairs]
    for (_, events), result in zip(repairs, results):
        if result is not True:
            outcome.applied -= events
            outcome.failed += events


def ttl_for(remember: float) -> int:
    """A TTL covering ``remember`` seconds plus the margin."""
    return int(math.ceil(remember)) + MARGIN

"""Reservoir sampling over memcache (Vitter's Algorithm R, as samplez's
original ``dos.py``), for every event of a flush in two round trips.

Per config and period there is one counter, ``<prefix>:<name>:<period>:n``,
and ``samples`` slots, ``<prefix>:<name>:<period>:<i>``. The flush adds the
number of new events to the counter (``add 0`` then ``incr``, pipelined, so
the first writer of a period never races another one), which hands this
process the event numbers ``total - k .. total - 1``. Event number ``n``
fills slot ``n`` while the reservoir is not full, else replaces a slot chosen
uniformly in ``[0, n]`` if that number is below ``samples``: every event of
the period ends up in the reservoir with the same probability
``samples / total``. A new period is a new set of keys, so there is no reset
and no race between writers at a boundary.
"""

from __future__ import annotations

import math
import random
import struct
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from ..flush import Context, Event, Outcome, Plan
from ..store.base import REFUSED, add, count_failures, get, incr, is_failure, set_
from ..store.keys import FORMAT_VERSION, MAX_COUNT, count_of
from .result import SampleResult

if TYPE_CHECKING:
    from .config import Config

__all__ = ["PERIODS", "apply", "choose_slots", "decode_sample", "encode_sample", "read", "span"]

PERIODS = ("current", "previous")
_VERSION_BYTE = bytes([FORMAT_VERSION])
_SAMPLE = struct.Struct("<dd")


#: Past this chance of replacement, a coin per event beats geometric skips.
DENSE = 0.25


def choose_slots(first: int, count: int, samples: int, rand: Callable[[], float]) -> dict[int, int]:
    """Algorithm R for the events numbered ``first .. first + count - 1``:
    ``{slot: position in the batch}``, a later event winning a slot.

    Event ``n`` fills slot ``n`` while ``n < samples``; past that it takes a
    uniformly chosen slot with probability ``samples / (n + 1)``. Instead of
    a coin per event, candidates are drawn at the batch's highest such
    probability ``p`` by geometric skips and each is kept with probability
    ``samples / (n + 1) / p`` (thinning): the same distribution, in time
    proportional to the replacements rather than the events (used once the
    chance falls below :data:`DENSE`, as it soon does in a busy period).
    """
    slots: dict[int, int] = {}
    position = 0
    while position < count and first + position < samples:
        slots[first + position] = position
        position += 1
    if position == count:
        return slots
    highest = samples / (first + position + 1)
    if highest > DENSE:
        # Most events win a slot anyway: one coin each is cheaper than skips.
        for later in range(position, count):
            slot = int(rand() * (first + later + 1))
            if slot < samples:
                slots[slot] = later
        return slots
    log_miss = math.log1p(-highest)
    while True:
        position += int(math.log(1.0 - rand()) / log_miss)
        if position >= count:
            return slots
        number = first + position
        if rand() * (number + 1) * highest < samples:
            slots[int(rand() * samples)] = position
        position += 1


def span(events: Sequence[Event]) -> tuple[float, float]:
    """The earliest and latest ``when`` of ``events`` (not empty)."""
    whens = [event[3] for event in events]
    return min(whens), max(whens)


def _by_period(events: Sequence[Event], period: int) -> Mapping[int, Sequence[Event]]:
    """``events`` by the index of the period their time falls in."""
    if not events:
        return {}
    earliest, latest = span(events)
    first = int(earliest // period)
    if int(latest // period) == first:  # the usual case: one period, no regrouping
        return {first: events}
    split: dict[int, list[Event]] = {}
    for event in events:
        index = int(event[3] // period)
        group = split.get(index)
        if group is None:
            group = split[index] = []
        group.append(event)
    return split


def apply(config: Config, events: Sequence[Event], ctx: Context) -> Plan:
    space, name, samples, ttl, period = ctx.space, config.name, config.samples, config.ttl, config.period
    # Events stay as they came; only those that land in a slot are
    # normalized and encoded: most events of a busy period never do.
    periods = _by_period(events, period)

    ops = []
    for index, batch in periods.items():
        counter = space.key(name, index, "n")
        ops += [add(counter, b"0", ttl), incr(counter, len(batch))]
    results = yield ops

    outcome = Outcome()
    writes = []
    rand = random.random
    normalized: dict[str, str] = {}
    for (index, batch), total in zip(periods.items(), results[1::2]):
        if total is REFUSED or (isinstance(total, int) and not len(batch) <= total <= MAX_COUNT):
            # Someone else's bytes sit under our counter (not a number, or a
            # number no period reaches, or one that wrapped at 2**64): start
            # it again rather than number slots from garbage.
            writes.append(set_(space.key(name, index, "n"), str(len(batch)).encode(), ttl))
            total = len(batch)
        elif not isinstance(total, int):
            outcome.failed += len(batch)
            continue
        slots = choose_slots(total - len(batch), len(batch), samples, rand)
        outcome.applied += len(batch)
        slot_prefix = space.key(name, index, "")  # a slot's key is this plus its number
        for slot, position in slots.items():
            _, key, value, when = batch[position]
            stored = normalized.get(key)
            if stored is None:
                stored = normalized[key] = config.normalize_key(key)
            writes.append(set_(slot_prefix + str(slot), encode_sample(stored, when, float(value)), ttl))
    results = yield writes
    lost = count_failures(results)
    outcome.applied -= lost
    outcome.failed += lost
    return outcome


def read(config: Config, ctx: Context, period: str = "current", key: str | None = None) -> SampleResult:
    if period not in PERIODS:
        raise ValueError(f"period must be 'current' or 'previous', got {period!r}")
    index = int(ctx.now // config.period) - (period == "previous")
    start = index * config.period
    elapsed = ctx.now - start if period == "current" else float(config.period)
    space, name = ctx.space, config.name
    ops = [get(space.key(name, index, "n"))]
    slot_prefix = space.key(name, index, "")  # slot keys are this plus the slot number
    ops += [get(slot_prefix + str(slot)) for slot in range(config.samples)]
    results, _ = ctx.store.execute(ops)

    low, high = start - config.tolerance, start + config.period + config.tolerance
    found = []
    for raw in results[1:]:
        if raw.__class__ is bytes:
            sample = decode_sample(raw)
            if sample is not None and low <= sample[1] < high:
                found.append(sample)
    return SampleResult(
        config,
        period_start=float(start),
        elapsed=max(elapsed, 1.0),
        total_events=max(count_of(results[0]), len(found)),
        samples=found,
        key=key,
        reachable=not any(is_failure(r) for r in results[:1]),
    )


def encode_sample(key: str, when: float, value: float) -> bytes:
    """A reservoir slot: version byte, time, value, then the key in UTF-8."""
    # A lone surrogate (from a bad decode upstream) becomes "?": the slot
    # must decode as UTF-8 or the sample would be skipped when read.
    return _VERSION_BYTE + _SAMPLE.pack(when, value) + key.encode("utf-8", "replace")


def decode_sample(raw: bytes) -> tuple[str, float, float] | None:
    """``(key, when, value)``, or ``None`` for anything we did not write."""
    if len(raw) < 1 + _SAMPLE.size or raw[0] != FORMAT_VERSION:
        return None
    try:
        when, value = _SAMPLE.unpack_from(raw, 1)
        key = raw[1 + _SAMPLE.size :].decode("utf-8")
    except (struct.error, UnicodeDecodeError):
        return None
    if when != when or value != value or value in (float("inf"), float("-inf")):
        return None
    return key, when, value

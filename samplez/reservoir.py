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

import random
from typing import TYPE_CHECKING, Sequence

from .keys import decode_sample, encode_sample
from .metric import Context, Event, Outcome, Plan
from .result import SampleResult
from .store.base import REFUSED, add, get, incr, is_failure, set_

if TYPE_CHECKING:
    from .config import Config

__all__ = ["apply", "parse_count", "read"]

PERIODS = ("current", "previous")


def parse_count(raw: object) -> int:
    """A counter's value, or 0 for a missing or foreign one."""
    if isinstance(raw, bytes):
        digits = raw.strip()
        if digits.isdigit() and len(digits) < 20:
            return int(digits)
    return 0


def apply(config: Config, events: Sequence[Event], ctx: Context) -> Plan:
    space, name, samples, ttl = ctx.space, config.name, config.samples, config.ttl
    periods: dict[int, list[tuple[str, float, float]]] = {}
    for _, key, value, when in events:
        periods.setdefault(int(when // config.period), []).append((config.normalize_key(key), when, float(value)))

    ops = []
    for index, batch in periods.items():
        counter = space.key(name, index, "n")
        ops += [add(counter, b"0", ttl), incr(counter, len(batch))]
    results = yield ops

    outcome = Outcome()
    slots: dict[str, bytes] = {}
    writes = []
    rand = random.random
    for (index, batch), total in zip(periods.items(), results[1::2]):
        if total is REFUSED:
            # Someone else's bytes sit under our counter: start it again.
            writes.append(set_(space.key(name, index, "n"), str(len(batch)).encode(), ttl))
            total = len(batch)
        elif not isinstance(total, int):
            outcome.failed += len(batch)
            continue
        n = total - len(batch)
        for key, when, value in batch:
            slot = n if n < samples else int(rand() * (n + 1))
            if slot < samples:
                slots[space.key(name, index, slot)] = encode_sample(key, when, value)
            n += 1
        outcome.applied += len(batch)
    writes += [set_(key, raw, ttl) for key, raw in slots.items()]
    results = yield writes
    lost = sum(1 for result in results if is_failure(result))
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
    ops += [get(space.key(name, index, slot)) for slot in range(config.samples)]
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
        total_events=max(parse_count(results[0]), len(found)),
        samples=found,
        key=key,
        reachable=not any(is_failure(r) for r in results[:1]),
    )

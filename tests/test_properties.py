"""Property-based tests (hypothesis) on the embedded store: reservoir
invariants for any stream, and every counter against a plain in-memory
reference model under random interleavings of ``set``, clock advances and
flushes."""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import samplez
from samplez.engine import engine
from samplez.store import base as ops
from tests.conftest import Clock, unique_name

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
START = 1_800_000_000.0 - 1_800_000_000.0 % 3600  # the start of an hour
KEYS = ["/a", "/b", "c\r\n", "\U0001f525"]


def fresh(clock: Clock) -> samplez.MemoryStore:
    """A new store on ``clock`` (expiry follows it) and an empty batch."""
    engine.clear()
    store = samplez.MemoryStore(clock=clock)
    samplez.configure(store=store, clock=clock, flush="request")
    return store


# -- reservoirs ----------------------------------------------------------------------

events_strategy = st.lists(
    st.tuples(
        st.sampled_from(KEYS),
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
        st.floats(min_value=0, max_value=5),  # seconds since the previous event
        st.booleans(),  # flush after this event?
    ),
    max_size=150,
)


@SETTINGS
@given(samples=st.integers(1, 40), rate=st.sampled_from([1.0, 0.5]), events=events_strategy)
def test_reservoir_invariants(samples, rate, events):
    clock = Clock(START)
    fresh(clock)
    config = samplez.Config(unique_name("prop"), period=3600, samples=samples, by_value=True, rate=rate)
    sent: Counter[tuple[str, float, float]] = Counter()
    kept = 0
    for key, value, gap, flush in events:
        clock.advance(gap)
        samplez.set(config, key, value)
        sent[(key, clock(), value)] += 1
        if flush:
            kept += samplez.flush().applied
    kept += samplez.flush().applied
    result = samplez.get(config)

    assert result.total_events == kept
    if rate == 1.0:
        assert kept == len(events)
    assert result.unique_samples == min(samples, kept)
    assert sum(result.count(key) for key in result.keys()) == result.unique_samples
    found: Counter[tuple[str, float, float]] = Counter(
        (key, when, value) for key in result.keys() for when, value in result.samples(key)
    )
    assert not found - sent, "a sample that was never set"
    if result.unique_samples:
        total = math.fsum(result.frequency(key) for key in result.keys())
        assert total == pytest.approx(result.overall_rate(), rel=1e-9)
    for key in result.keys():
        low, high = result.min(key), result.max(key)
        assert low <= result.percentile(key, 50) <= high
        assert low - 1e-6 <= result.average(key) <= high + 1e-6
    rows = result.rows(limit=2)
    assert len(rows) == min(2, len(result.keys()))
    assert [r["frequency"] for r in rows] == sorted((r["frequency"] for r in rows), reverse=True)


# -- counters against a reference model -------------------------------------------------

step_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from(KEYS), st.integers(0, 1000)),
        st.tuples(st.just("advance"), st.sampled_from([0.3, 1, 7, 29, 61, 600])),
        st.tuples(st.just("flush")),
    ),
    max_size=60,
)


class Model:
    """What a counter must read, from the events flushed so far."""

    def __init__(self) -> None:
        self.flushed: list[tuple[str, int, float]] = []  # (key, value, when)
        self.pending: list[tuple[str, int, float]] = []

    def flush(self) -> None:
        self.flushed += self.pending
        self.pending = []

    def of(self, key: str) -> list[tuple[int, float]]:
        return [(value, when) for k, value, when in self.flushed if k == key]


def check_rolling(counter: Any, model: Model, now: float) -> None:
    width = counter.window // counter.buckets
    newest = int(now // width)
    span = range(newest - counter.buckets + 1, newest + 1)
    readings = samplez.get(counter)
    for key in KEYS:
        events = model.of(key)
        buckets = [sum(v for v, w in events if int(w // width) == b) for b in span]
        reading = readings[key]
        assert reading.buckets == buckets
        assert reading.total == sum(buckets) and reading.latest == buckets[-1]
        assert reading.cumulative == sum(v for v, _ in events)


def check_max(counter: Any, model: Model, now: float) -> None:
    width = counter.window // counter.buckets
    newest = int(now // width)
    span = range(newest - counter.buckets + 1, newest + 1)
    readings = samplez.get(counter)
    for key in KEYS:
        events = model.of(key)
        maxes = [max((v for v, w in events if int(w // width) == b), default=None) for b in span]
        present = [m for m in maxes if m is not None]
        reading = readings[key]
        assert reading.buckets == [m if m is not None else 0 for m in maxes]
        assert reading.max == (max(present) if present else 0)


def stepped_expectation(counter: Any, values: dict[int, Any], now: float) -> tuple[Any, list[tuple[float, Any]]]:
    current = int(now // counter.step)
    steps = [current - i for i in range(counter.keep + 1)]
    history = [(float(s * counter.step), values.get(s, 0)) for s in steps[1:]]
    while history and steps[len(history)] not in values:
        history.pop()
    return values.get(current, 0), history


def check_stepped(counter: Any, model: Model, now: float) -> None:
    readings = samplez.get(counter)
    for key in KEYS:
        values: dict[int, int] = {}
        for value, when in model.of(key):
            index = int(when // counter.step)
            values[index] = values.get(index, 0) + value
        value, history = stepped_expectation(counter, values, now)
        reading = readings[key]
        assert reading.value == value
        assert [(float(start), v) for start, v in reading.history] == history


def check_unique(counter: Any, model: Model, now: float) -> None:
    readings = samplez.get(counter)
    for key in KEYS:
        items: dict[int, set[int]] = {}
        for value, when in model.of(key):
            items.setdefault(int(when // counter.step), set()).add(value)
        value, history = stepped_expectation(counter, {s: len(i) for s, i in items.items()}, now)
        reading = readings[key]
        assert reading.value == value
        assert [(float(start), v) for start, v in reading.history] == history


def check_bitmap(counter: Any, model: Model, now: float) -> None:
    # Bits set per step are distinct items per step: the unique model holds.
    check_unique(counter, model, now)
    readings = samplez.get(counter)
    current = int(now // counter.step)
    for key in KEYS:
        bits = {value for value, when in model.of(key) if int(when // counter.step) == current}
        reading = readings[key]
        assert all(reading.contains(bit) for bit in bits)
        assert not any(reading.contains(bit) for bit in range(1001, 1010))


def calendar_parts(when: float) -> tuple[int, ...]:
    t = datetime.fromtimestamp(when, timezone.utc)
    return t.year, t.month, t.day, t.hour


def check_calendar(counter: Any, model: Model, now: float) -> None:
    readings = samplez.get(counter)
    today = calendar_parts(now)
    for key in [*KEYS, "all"]:
        events = model.flushed if key == "all" else [(key, v, w) for v, w in model.of(key)]
        parts = [(calendar_parts(when), value) for _, value, when in events]
        reading = readings[key]
        for depth, field in ((1, "year"), (2, "month"), (3, "day"), (4, "hour")):
            assert getattr(reading, field) == sum(v for p, v in parts if p[:depth] == today[:depth]), field
        assert reading.hours == [sum(v for p, v in parts if p[:3] == today[:3] and p[3] == h) for h in range(24)]


COUNTERS = [
    pytest.param(lambda name: samplez.RollingCounter(name, window=60, buckets=6), check_rolling, id="rolling"),
    pytest.param(lambda name: samplez.RollingCounter(name, window=5), check_rolling, id="rolling-per-second"),
    pytest.param(lambda name: samplez.RollingMax(name, window=60, buckets=6), check_max, id="rolling-max"),
    pytest.param(lambda name: samplez.SteppedCounter(name, step=60, keep=3), check_stepped, id="stepped"),
    pytest.param(lambda name: samplez.UniqueCounter(name, step=60, keep=3), check_unique, id="unique"),
    pytest.param(lambda name: samplez.BitmapCounter(name, step=60, keep=3), check_bitmap, id="bitmap"),
    pytest.param(lambda name: samplez.CalendarCounter(name), check_calendar, id="calendar"),
]


@pytest.mark.parametrize(("build", "check"), COUNTERS)
@SETTINGS
@given(steps=step_strategy, values_mod=st.sampled_from([1000, 3]))
def test_counters_match_a_reference_model(build, check, steps, values_mod):
    clock = Clock(START)
    fresh(clock)
    counter = build(unique_name("model"))
    model = Model()
    for step in steps:
        if step[0] == "set":
            _, key, value = step
            value %= values_mod  # few distinct values: unique counters see repeats
            samplez.set(counter, key, value)
            model.pending.append((key, value, clock()))
        elif step[0] == "advance":
            clock.advance(step[1])
        else:
            summary = samplez.flush()
            assert summary.dropped == 0 and summary.errors == 0
            model.flush()
            check(counter, model, clock())
    samplez.flush()
    model.flush()
    check(counter, model, clock())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(min_codepoint=0x1F, max_codepoint=0x80), max_size=260), max_size=5))
@example(["k" * 250, "k" * 251])
@example(["k" * 250, ""])
@example(["k" * 250])
def test_a_flush_checks_its_keys_at_once_as_the_key_by_key_check_would(keys):
    # all_keys_valid checks every key of a flush in one pass; a malformed key
    # must still be found, as valid_key finds it.
    assert ops.all_keys_valid(keys) == all(ops.valid_key(key) is not None for key in keys)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([True, False, None, b"x", 3, ops.REFUSED, ops.UNREACHABLE])))
def test_failures_are_counted_as_is_failure_counts_them(results):
    assert ops.count_failures(results) == sum(1 for result in results if ops.is_failure(result))

"""RollingCounter and RollingMax: Hystrix RollingNumber's scenarios on an
injected clock, over MemoryStore and a real memcached."""

from __future__ import annotations

import sys

import pytest

import samplez
from samplez.engine import engine
from samplez.store.base import set_
from tests.conftest import Clock, unique_name

# The fixture clock starts at 1_800_000_000, a multiple of every window here.


def flush() -> samplez.FlushSummary:
    summary = samplez.flush()
    assert summary.dropped == 0, summary
    return summary


@pytest.mark.usefixtures("samplez_on")
def test_buckets_are_created_across_gaps(clock: Clock) -> None:
    hits = samplez.RollingCounter(unique_name("hits"), window=10, buckets=5)
    samplez.set(hits, "a")
    clock.advance(4.5)  # two buckets later (2 s per bucket)
    samplez.set(hits, "a", 3)
    flush()
    reading = samplez.get(hits)["a"]
    assert reading.buckets == [0, 0, 1, 0, 3]
    assert (reading.total, reading.latest, reading.cumulative) == (4, 3, 4)


@pytest.mark.usefixtures("samplez_on")
def test_sums_after_gaps_drop_buckets_that_left_the_window(clock: Clock) -> None:
    hits = samplez.RollingCounter(unique_name("hits"), window=10, buckets=10)
    for step in range(4):
        samplez.set(hits, "a", step + 1)
        flush()
        clock.advance(3)
    # Now 12 s after the first event: the first bucket left the window.
    reading = samplez.get(hits)["a"]
    assert reading.total == 2 + 3 + 4
    assert reading.buckets == [2, 0, 0, 3, 0, 0, 4, 0, 0, 0]
    assert reading.cumulative == 10


@pytest.mark.usefixtures("samplez_on")
def test_a_gap_longer_than_the_window_reads_zero_but_cumulative_stays(clock: Clock) -> None:
    hits = samplez.RollingCounter(unique_name("hits"), window=60)
    for _ in range(7):
        samplez.set(hits, "a")
    flush()
    clock.advance(60)
    reading = samplez.get(hits)["a"]
    assert (reading.total, reading.latest, reading.buckets) == (0, 0, [0] * 60)
    assert reading.cumulative == 7
    # Cumulative across resets: a new window starts from 0, cumulative goes on.
    samplez.set(hits, "a", 5)
    flush()
    reading = samplez.get(hits)["a"]
    assert (reading.total, reading.cumulative) == (5, 12)


@pytest.mark.usefixtures("samplez_on")
def test_events_are_bucketed_by_their_own_time_not_the_flush_time(clock: Clock) -> None:
    hits = samplez.RollingCounter(unique_name("hits"), window=4)
    samplez.set(hits, "a")
    clock.advance(2)
    samplez.set(hits, "a", 2)
    flush()  # one flush, two buckets
    assert samplez.get(hits)["a"].buckets == [0, 1, 0, 2]


@pytest.mark.usefixtures("samplez_on")
def test_a_key_never_seen_reads_zero() -> None:
    hits = samplez.RollingCounter(unique_name("hits"), window=5)
    result = samplez.get(hits)
    assert result.keys() == []
    reading = result["never"]
    assert (reading.total, reading.buckets, reading.latest, reading.cumulative) == (0, [0] * 5, 0, 0)


@pytest.mark.usefixtures("samplez_on")
def test_rolling_max_across_buckets(clock: Clock) -> None:
    slowest = samplez.RollingMax(unique_name("max"), window=10, buckets=5)
    for value in (10, 30, 20):
        samplez.set(slowest, "a", value)
    flush()
    clock.advance(2)
    samplez.set(slowest, "a", 15.5)
    samplez.set(slowest, "b", -3)
    flush()
    clock.advance(2)
    samplez.set(slowest, "a", 25)
    flush()
    reading = samplez.get(slowest)["a"]
    assert (reading.max, reading.latest, reading.buckets) == (30, 25, [0, 0, 30, 15.5, 25])
    assert samplez.get(slowest)["b"].max == -3
    clock.advance(6)  # the bucket holding 30 leaves the window
    assert samplez.get(slowest)["a"].max == 25


@pytest.mark.usefixtures("samplez_on")
def test_rolling_max_keeps_the_larger_value_across_flushes() -> None:
    slowest = samplez.RollingMax(unique_name("max"), window=5)
    samplez.set(slowest, "a", 50)
    flush()
    samplez.set(slowest, "a", 40)  # smaller: no write needed
    flush()
    samplez.set(slowest, "a", 60.25)
    flush()
    assert samplez.get(slowest)["a"].max == 60.25


@pytest.mark.usefixtures("samplez_on")
def test_rolling_max_reads_back_any_float_it_takes() -> None:
    slowest = samplez.RollingMax(unique_name("max"), window=5)
    values = [1e308, -1e308, sys.float_info.max, -sys.float_info.max, 5e-324, -5e-324, 0.1, 2.0**53 + 2]
    for i, value in enumerate(values):
        samplez.set(slowest, f"k{i}", value)
    flush()
    result = samplez.get(slowest)
    assert [result[f"k{i}"].max for i in range(len(values))] == values


def test_rolling_max_lost_race_is_retried_next_flush(memcached, clock: Clock) -> None:
    store = samplez.MemcacheStore(memcached.address)
    samplez.configure(store=store, clock=clock, flush="request")
    slowest = samplez.RollingMax(unique_name("max"), window=5)
    samplez.set(slowest, "a", 1)
    flush()
    ctx = engine.context()
    bucket = slowest.data_key(ctx, "a", slowest.bucket_of(clock.now))
    plan = slowest.apply([(slowest.slot, "a", 9, clock.now)], ctx)
    ops = next(plan)  # admission is cached: this is the gets of the bucket
    results, _ = store.execute(ops)
    store.execute([set_(bucket, b"\x01" + b"\x00" * 8, 60)])  # another writer moves the cas token
    writes = plan.send(results)
    results, _ = store.execute(writes)
    with pytest.raises(StopIteration) as stop:
        plan.send(results)
    outcome = stop.value.value
    assert [event[2] for event in outcome.retry] == [9] and outcome.applied == 0


@pytest.mark.usefixtures("samplez_on")
def test_window_of_many_seconds_defaults_to_at_most_600_buckets(clock: Clock) -> None:
    hourly = samplez.RollingCounter(unique_name("hits"), window=samplez.SECONDS_1_HOUR)
    assert (hourly.buckets, hourly.bucket_seconds) == (600, 6)
    samplez.set(hourly, "a", 2)
    flush()
    clock.advance(3599)
    reading = samplez.get(hourly)["a"]
    assert (reading.total, len(reading.buckets), reading.buckets[0]) == (2, 600, 2)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        pytest.param({"window": 0}, "window", id="window-zero"),
        pytest.param({"window": -5}, "window", id="window-negative"),
        pytest.param({"window": 1.5}, "window", id="window-fraction"),
        pytest.param({"window": "60"}, "window", id="window-str"),
        pytest.param({"window": 10, "buckets": 3}, "buckets", id="buckets-not-dividing"),
        pytest.param({"window": 1200, "buckets": 1200}, "buckets", id="buckets-over-600"),
        pytest.param({"window": 10, "buckets": 0}, "buckets", id="buckets-zero"),
        pytest.param({"window": 10, "max_keys": 0}, "max_keys", id="max-keys-zero"),
        pytest.param({"window": 10, "max_keys": 10_001}, "max_keys", id="max-keys-huge"),
    ],
)
@pytest.mark.parametrize("kind", [samplez.RollingCounter, samplez.RollingMax], ids=["counter", "max"])
def test_bad_config_names_the_field(kind: type, kwargs: dict, field: str) -> None:
    with pytest.raises(samplez.ConfigError, match=f"^{field} "):
        kind(unique_name("bad"), **kwargs)


@pytest.mark.parametrize(
    "value, error",
    [
        pytest.param(1.5, TypeError, id="float"),
        pytest.param("1", TypeError, id="str"),
        pytest.param(True, TypeError, id="bool"),
        pytest.param(None, TypeError, id="none"),
        pytest.param(-1, ValueError, id="negative"),
    ],
)
def test_rolling_counter_rejects_bad_values_at_set(value: object, error: type) -> None:
    hits = samplez.RollingCounter(unique_name("hits"), window=10)
    with pytest.raises(error):
        samplez.set(hits, "a", value)
    assert engine.pending == 0


@pytest.mark.parametrize(
    "value, error",
    [
        pytest.param(float("nan"), ValueError, id="nan"),
        pytest.param(float("inf"), ValueError, id="inf"),
        pytest.param("1", TypeError, id="str"),
        pytest.param(False, TypeError, id="bool"),
    ],
)
def test_rolling_max_rejects_bad_values_at_set(value: object, error: type) -> None:
    slowest = samplez.RollingMax(unique_name("max"), window=10)
    with pytest.raises(error):
        samplez.set(slowest, "a", value)
    assert engine.pending == 0

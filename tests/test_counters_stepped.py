"""SteppedCounter, UniqueCounter, HyperLogLogCounter and BitmapCounter:
scrapy-cluster StatsCollector's scenarios on an injected clock, over
MemoryStore and a real memcached."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone

import pytest

import samplez
from samplez.engine import engine
from tests.conftest import Clock, unique_name

MONDAY_9AM = datetime(2027, 1, 4, 9, 0, tzinfo=timezone.utc).timestamp()
T0 = 1_800_000_000  # the fixture clock's start, a multiple of every step here


def flush() -> samplez.FlushSummary:
    summary = samplez.flush()
    assert summary.dropped == 0, summary
    return summary


@pytest.mark.usefixtures("samplez_on")
def test_rolled_steps_keep_separate_keys(clock: Clock) -> None:
    logins = samplez.SteppedCounter(unique_name("logins"), step=samplez.SECONDS_1_HOUR)
    clock.now = MONDAY_9AM + 600
    samplez.set(logins, "alice", 2)
    flush()
    clock.advance(samplez.SECONDS_1_DAY)  # Tuesday 9:10, same hour of day
    samplez.set(logins, "alice", 5)
    flush()
    assert samplez.get(logins)["alice"].value == 5
    clock.advance(-samplez.SECONDS_1_DAY)  # Monday's step is still its own key
    reading = samplez.get(logins)["alice"]
    assert (reading.value, reading.step_start) == (2, MONDAY_9AM)


@pytest.mark.usefixtures("samplez_on")
def test_keep_prunes_history_newest_first(clock: Clock) -> None:
    logins = samplez.SteppedCounter(unique_name("logins"), step=60, keep=2)
    for value in (1, 2, 3, 4):
        samplez.set(logins, "a", value)
        flush()
        clock.advance(60)
    clock.advance(-30)  # inside the step that holds 4
    reading = samplez.get(logins)["a"]
    assert reading.value == 4
    assert reading.history == [(T0 + 120, 3), (T0 + 60, 2)]
    assert reading.series == [2, 3, 4]


@pytest.mark.usefixtures("samplez_on")
def test_history_holds_only_steps_since_the_first_data(clock: Clock) -> None:
    logins = samplez.SteppedCounter(unique_name("logins"), step=60, keep=12)
    samplez.set(logins, "a")
    flush()
    clock.advance(125)
    reading = samplez.get(logins)["a"]
    assert reading.value == 0
    assert reading.history == [(T0 + 60, 0), (T0, 1)]


@pytest.mark.usefixtures("samplez_on")
def test_start_time_offsets_every_step(clock: Clock) -> None:
    half_past = samplez.SteppedCounter(unique_name("half"), step=3600, start_time=T0 - 5 * 3600 + 1800)
    clock.advance(1799)
    samplez.set(half_past, "a")
    clock.advance(1)
    samplez.set(half_past, "a", 10)
    flush()
    reading = samplez.get(half_past)["a"]
    assert (reading.value, reading.step_start) == (10, T0 + 1800)
    assert reading.history == [(T0 - 1800, 1)]


@pytest.mark.usefixtures("samplez_on")
def test_roll_false_counts_only_inside_its_window(clock: Clock) -> None:
    once = samplez.SteppedCounter(unique_name("once"), step=60, start_time=T0, roll=False)
    for offset in (-1, 0, 59, 60, 3600):
        clock.now = T0 + offset
        samplez.set(once, "a")
    flush()
    clock.now = T0 + 7200
    reading = samplez.get(once)["a"]
    assert (reading.value, reading.history, reading.step_start) == (2, [], T0)


@pytest.mark.usefixtures("samplez_on")
def test_start_at_is_every_steps_initial_value(clock: Clock) -> None:
    counter = samplez.SteppedCounter(unique_name("from100"), step=60, start_at=100)
    samplez.set(counter, "a", 3)
    flush()
    assert samplez.get(counter)["a"].value == 103
    clock.advance(60)
    samplez.set(counter, "a")
    flush()
    assert samplez.get(counter)["a"].value == 101


@pytest.mark.usefixtures("samplez_on")
def test_unique_counts_100_of_1000(clock: Clock) -> None:
    visitors = samplez.UniqueCounter(unique_name("uniq"), step=60)
    for i in range(1000):
        samplez.set(visitors, "page", i % 100)
    flush()
    assert samplez.get(visitors)["page"].value == 100
    for i in range(1000):  # the markers outlive the flush: only 50 are new
        samplez.set(visitors, "page", i % 150)
    flush()
    assert samplez.get(visitors)["page"].value == 150
    clock.advance(60)
    samplez.set(visitors, "page", "7")
    samplez.set(visitors, "page", 7)  # the int and the str are different items
    flush()
    reading = samplez.get(visitors)["page"]
    assert (reading.value, reading.history) == (2, [(T0, 150)])


@pytest.mark.usefixtures("samplez_on")
def test_hyperloglog_merges_flushes_within_2_percent(clock: Clock) -> None:
    users = samplez.HyperLogLogCounter(unique_name("hll"), step=60, precision=14)
    for i in range(30_000):
        samplez.set(users, "site", i)
    flush()
    for i in range(20_000, 50_000):  # overlaps the first flush by 10,000
        samplez.set(users, "site", f"u{i}" if i >= 30_000 else i)
    flush()
    value = samplez.get(users)["site"].value
    assert abs(value - 50_000) / 50_000 < 0.02, value
    clock.advance(60)
    samplez.set(users, "site", "x")
    flush()
    reading = samplez.get(users)["site"]
    assert reading.value == 1 and reading.history[0] == (T0, value)


def test_only_a_hyperloglog_counter_loads_datasketches() -> None:
    # DataSketches brings numpy (~14 MB of RSS, ~50 ms, a BLAS thread pool)
    # into every worker; an app without a HyperLogLog counter never needs it.
    script = (
        "import sys, samplez\n"
        "print('datasketches' in sys.modules, 'numpy' in sys.modules)\n"
        "users = samplez.HyperLogLogCounter('users', step=60)\n"
        "print('datasketches' in sys.modules)\n"
        "samplez.set(users, 'site', 'u1')\n"
        "samplez.flush()\n"
        "print(samplez.get(users)['site'].value)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "True", "1"]


def test_hyperloglog_within_2_percent_at_1m_distinct(memcached, clock: Clock) -> None:
    samplez.configure(store=samplez.MemcacheStore(memcached.address), clock=clock, flush="request")
    users = samplez.HyperLogLogCounter(unique_name("hll"), step=samplez.SECONDS_1_DAY)
    for chunk in range(10):
        for i in range(chunk * 100_000, (chunk + 1) * 100_000):
            samplez.set(users, "site", i)
        flush()
    value = samplez.get(users)["site"].value
    assert abs(value - 1_000_000) / 1_000_000 < 0.02, value


@pytest.mark.usefixtures("samplez_on")
def test_bitmap_0_1_5_0_reads_3(clock: Clock) -> None:
    active = samplez.BitmapCounter(unique_name("bits"), step=60)
    for bit in (0, 1, 5, 0):
        samplez.set(active, "day", bit)
    flush()
    reading = samplez.get(active)["day"]
    assert reading.value == 3
    assert [reading.contains(i) for i in range(7)] == [True, True, False, False, False, True, False]
    assert "chunks" not in reading.as_dict()


@pytest.mark.usefixtures("samplez_on")
def test_bitmap_bits_across_chunks_and_flushes(clock: Clock) -> None:
    active = samplez.BitmapCounter(unique_name("bits"), step=60)
    for bit in (3, 70_000, 2**32 - 1):
        samplez.set(active, "day", bit)
    flush()
    for bit in (3, 65_536, 70_000):
        samplez.set(active, "day", bit)
    flush()
    reading = samplez.get(active)["day"]
    assert reading.value == 4
    assert all(reading.contains(bit) for bit in (3, 65_536, 70_000, 2**32 - 1))
    assert not reading.contains(65_535)
    clock.advance(60)
    reading = samplez.get(active)["day"]
    assert (reading.value, reading.history) == (0, [(T0, 4)])
    assert not reading.contains(3)


STEPPED = [samplez.SteppedCounter, samplez.UniqueCounter, samplez.HyperLogLogCounter, samplez.BitmapCounter]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        pytest.param({"step": 0}, "step", id="step-zero"),
        pytest.param({"step": -60}, "step", id="step-negative"),
        pytest.param({"step": None}, "step", id="step-none"),
        pytest.param({"step": 60, "keep": -1}, "keep", id="keep-negative"),
        pytest.param({"step": 60, "keep": 2.0}, "keep", id="keep-float"),
        pytest.param({"step": 60, "keep": 1001}, "keep", id="keep-huge"),
        pytest.param({"step": 60, "roll": "yes"}, "roll", id="roll-str"),
        pytest.param({"step": 60, "start_time": -1}, "start_time", id="start-negative"),
        pytest.param({"step": 60, "start_time": "now"}, "start_time", id="start-str"),
        pytest.param({"step": 60, "start_time": float("nan")}, "start_time", id="start-nan"),
        pytest.param({"step": 60, "roll": False}, "start_time", id="no-roll-needs-start"),
        pytest.param({"step": 60, "max_keys": -3}, "max_keys", id="max-keys-negative"),
    ],
)
@pytest.mark.parametrize("kind", STEPPED, ids=lambda kind: kind.kind)
def test_bad_config_names_the_field(kind: type, kwargs: dict, field: str) -> None:
    with pytest.raises(samplez.ConfigError, match=f"^{field} "):
        kind(unique_name("bad"), **kwargs)


@pytest.mark.parametrize(
    "kind, kwargs, field",
    [
        pytest.param(samplez.SteppedCounter, {"start_at": -1}, "start_at", id="start-at-negative"),
        pytest.param(samplez.SteppedCounter, {"start_at": 1.5}, "start_at", id="start-at-float"),
        pytest.param(samplez.SteppedCounter, {"start_at": 2**53 + 1}, "start_at", id="start-at-past-a-count"),
        pytest.param(samplez.HyperLogLogCounter, {"precision": 3}, "precision", id="precision-low"),
        pytest.param(samplez.HyperLogLogCounter, {"precision": 22}, "precision", id="precision-high"),
        pytest.param(samplez.HyperLogLogCounter, {"precision": "14"}, "precision", id="precision-str"),
    ],
)
def test_bad_counter_specific_config(kind: type, kwargs: dict, field: str) -> None:
    with pytest.raises(samplez.ConfigError, match=f"^{field} "):
        kind(unique_name("bad"), step=60, **kwargs)


@pytest.mark.parametrize(
    "kind, value, error",
    [
        pytest.param(samplez.SteppedCounter, 2.5, TypeError, id="stepped-float"),
        pytest.param(samplez.SteppedCounter, -2, ValueError, id="stepped-negative"),
        pytest.param(samplez.UniqueCounter, 1.5, TypeError, id="unique-float"),
        pytest.param(samplez.UniqueCounter, None, TypeError, id="unique-none"),
        pytest.param(samplez.HyperLogLogCounter, b"x", TypeError, id="hll-bytes"),
        pytest.param(samplez.HyperLogLogCounter, True, TypeError, id="hll-bool"),
        pytest.param(samplez.BitmapCounter, -1, ValueError, id="bitmap-negative"),
        pytest.param(samplez.BitmapCounter, 2**32, ValueError, id="bitmap-too-large"),
        pytest.param(samplez.BitmapCounter, "5", TypeError, id="bitmap-str"),
    ],
)
def test_bad_values_raise_at_set(kind: type, value: object, error: type) -> None:
    counter = kind(unique_name("vals"), step=60)
    with pytest.raises(error):
        samplez.set(counter, "a", value)
    assert engine.pending == 0

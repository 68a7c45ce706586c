"""Reservoir sampling in a real store: the maths the original tested."""

from __future__ import annotations

import math
import multiprocessing
import sys
import threading
from fractions import Fraction

import pytest

import samplez
from samplez.checks import FLOAT_MAX
from samplez.store import base as ops
from tests.conftest import unique_name

HUGE = sys.float_info.max


def make(**overrides):
    args = {"name": unique_name("res"), "period": 60, "samples": 1000, "by_value": True}
    args.update(overrides)
    return samplez.Config(**args)


def start_of_period(clock, period):
    clock.now = (clock.now // period + 1) * period


def test_known_stream_frequencies_by_domain(samplez_on, clock):
    by_domain = make(by_domain=True, by_value=False, period=600)
    by_url = make(period=600)
    start_of_period(clock, 600)
    stream = (
        ["http://a.example.com/1"] * 40
        + ["http://www.example.com/2"] * 20
        + ["http://foo.org/x"] * 30
        + ["http://10.0.0.1/y"] * 10
    )
    for i, url in enumerate(stream):
        clock.now += 0.1 if i else 0
        samplez.set([by_domain, by_url], url)
    clock.now += 0.1  # 10 s in all
    samplez.flush()
    result = samplez.get(by_domain)
    assert result.total_events == 100 and result.unique_samples == 100
    assert result.elapsed == pytest.approx(10.0)
    assert result.frequency("example.com") == pytest.approx(6.0)
    assert result.frequency("foo.org") == pytest.approx(3.0)
    assert result.frequency("10.0.0.1") == pytest.approx(1.0)
    assert result.overall_rate() == pytest.approx(10.0)
    assert set(result.keys()) == {"example.com", "foo.org", "10.0.0.1"}
    urls = samplez.get(by_url)
    assert urls.frequency("http://a.example.com/1") == pytest.approx(4.0)
    assert urls.keys()[0] == "http://a.example.com/1"


def test_reservoir_never_holds_more_than_samples(samplez_on, clock):
    config = make(samples=100)
    for i in range(5000):
        samplez.set(config, f"k{i % 7}", i)
    summary = samplez.flush()
    assert summary.applied == 5000 and summary.errors == 0
    result = samplez.get(config)
    assert result.total_events == 5000
    assert result.unique_samples == 100
    assert sum(result.count(k) for k in result.keys()) == 100


def test_a_key_with_30_percent_of_events_holds_about_30_percent_of_slots(samplez_on, clock):
    config = make(samples=1000)
    for i in range(20000):
        samplez.set(config, "hot" if i % 10 < 3 else f"cold{i % 50}", 1)
        if i % 2500 == 0:
            samplez.flush()  # several flushes, as the flusher would
    samplez.flush()
    result = samplez.get(config)
    share = result.count("hot") / result.unique_samples
    assert 0.25 < share < 0.35
    assert result.frequency("hot") == pytest.approx(0.3 * result.overall_rate(), rel=0.17)


def test_rate_scales_frequencies_back(samplez_on, clock):
    config = make(rate=0.5, samples=10000)
    start_of_period(clock, 60)
    for _ in range(10000):
        samplez.set(config, "k")
    clock.now += 10
    samplez.flush()
    result = samplez.get(config)
    assert 4500 < result.total_events < 5500
    assert result.frequency("k") == pytest.approx(1000.0, rel=0.1)
    assert result.overall_rate() == pytest.approx(1000.0, rel=0.1)


def test_statistics_of_known_values(samplez_on, clock):
    config = make()
    for value in [5, 1, 4, 2, 3, 2.5]:
        clock.advance(1)
        samplez.set(config, "k", value)
    samplez.flush()
    result = samplez.get(config)
    assert (result.min("k"), result.max("k"), result.count("k")) == (1.0, 5.0, 6)
    assert result.average("k") == pytest.approx(17.5 / 6)
    assert result.percentile("k", 50) == pytest.approx(2.75)
    assert result.percentile("k", 0) == 1.0 and result.percentile("k", 100) == 5.0
    assert [value for _, value in result.samples("k")] == [5, 1, 4, 2, 3, 2.5]
    with pytest.raises(ValueError):
        result.percentile("k", 101)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([1e308, 1e308], id="sum-past-the-float-range"),
        pytest.param([-1e308, 1e308], id="both-signs-further-apart-than-a-float"),
        pytest.param([HUGE] * 3, id="float-max"),
        pytest.param([-HUGE, -HUGE, HUGE], id="float-max-both-signs"),
        pytest.param([10**308, FLOAT_MAX, -FLOAT_MAX, FLOAT_MAX], id="huge-ints"),
    ],
)
def test_every_value_set_accepts_reads_back(samplez_on, clock, values):
    config = make()
    for value in values:
        clock.advance(1)
        samplez.set(config, "k", value)
    samplez.flush()
    result = samplez.get(config)
    low, high = float(min(values)), float(max(values))
    stored = [Fraction(float(value)) for value in values]  # samples are floats
    assert result.average("k") == float(sum(stored) / len(stored))  # the exact mean, rounded once
    assert (result.min("k"), result.max("k")) == (low, high)
    for q in (0, 1, 50, 95, 99, 100):
        assert low <= result.percentile("k", q) <= high
    (row,) = result.rows()
    assert all(math.isfinite(row[field]) for field in row if field != "key"), row


def test_floats_stay_floats(samplez_on):
    config = make()
    samplez.set(config, "k", 0.125)
    samplez.flush()
    assert samplez.get(config).samples("k")[0][1] == 0.125


def test_an_unknown_key_reads_as_nothing(samplez_on):
    result = samplez.get(make())
    assert result.count("nope") == 0
    assert [result.frequency("nope"), result.average("nope"), result.min("nope"), result.max("nope")] == [None] * 4
    assert result.percentile("nope", 50) is None and result.rows() == [] and result.total_events == 0


def test_period_rollover_and_previous_period(samplez_on, clock):
    config = make(period=60)
    start_of_period(clock, 60)
    for _ in range(30):
        samplez.set(config, "old")
    clock.advance(30)
    samplez.flush()
    clock.advance(35)  # now in the next period
    samplez.set(config, "new")
    samplez.flush()
    current, previous = samplez.get(config), samplez.get(config, period="previous")
    assert current.keys() == ["new"] and current.total_events == 1
    assert previous.keys() == ["old"] and previous.total_events == 30
    assert previous.elapsed == 60 and previous.frequency("old") == pytest.approx(0.5)
    with pytest.raises(ValueError):
        samplez.get(config, period="next")


def test_single_key_query_does_not_leak_the_overall_rate(samplez_on, clock):
    config = make()
    start_of_period(clock, 60)
    for i in range(100):
        samplez.set(config, "mine" if i < 10 else "other")
    clock.advance(10)
    samplez.flush()
    result = samplez.get(config, key="mine")
    assert result.total_events == 10 and result.unique_samples == 10
    assert result.keys() == ["mine"] and "other" not in result
    assert result.frequency("mine") == pytest.approx(1.0)
    assert result.overall_rate() == pytest.approx(1.0)


def test_rows_sort_and_limit(samplez_on):
    config = make()
    for key, value, times in [("a", 10, 1), ("b", 1, 3), ("c", 5, 2)]:
        for _ in range(times):
            samplez.set(config, key, value)
    samplez.flush()
    result = samplez.get(config)
    assert [r["key"] for r in result.rows()] == ["b", "c", "a"]
    assert [r["key"] for r in result.rows(sort="max")] == ["a", "c", "b"]
    assert [r["key"] for r in result.rows(sort="key")] == ["a", "b", "c"]
    assert [r["key"] for r in result.rows(limit=1)] == ["b"]
    assert set(result.rows()[0]) == {"key", "count", "frequency", "average", "min", "max", "p50", "p95", "p99", "share"}
    with pytest.raises(ValueError):
        result.rows(sort="nope")


def test_garbage_slots_are_skipped_and_writes_recover(samplez_on, clock):
    config = make(samples=10)
    samplez.set(config, "k", 1)
    samplez.flush()
    index = int(clock() // 60)
    junk = [b"", b"\x01", b"\x02" + b"x" * 30, b"\x01" + b"\xff" * 20, b"garbage" * 100]
    samplez_on.execute([ops.set_(f"samplez:{config.name}:{index}:{i}", raw, 60) for i, raw in enumerate(junk, 1)])
    samplez_on.execute([ops.set_(f"samplez:{config.name}:{index}:n", b"not a number", 60)])
    result = samplez.get(config)
    assert result.keys() == ["k"]
    samplez.set(config, "k", 2)
    assert samplez.flush().applied == 1
    assert samplez.get(config).count("k") >= 1


def test_many_configs_flush_in_at_most_three_round_trips(samplez_on):
    configs = [make(samples=50) for _ in range(50)]
    for i in range(1000):
        for config in configs:
            samplez.set(config, f"k{i % 20}", i)
    summary = samplez.flush()
    assert summary.applied == 50_000 and summary.errors == 0
    assert 1 <= summary.round_trips <= 3
    assert all(samplez.get(c).total_events == 1000 for c in configs)


def test_threads_setting_at_once_lose_nothing(samplez_on):
    config = make(samples=100)

    def worker():
        for i in range(2000):
            samplez.set(config, "k", i)
            if i % 500 == 0:
                samplez.flush()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    samplez.flush()
    assert samplez.get(config).total_events == 16000


def _process_worker(address: str, name: str, count: int) -> None:
    samplez.configure(store=samplez.MemcacheStore(address))
    config = make(name=name, samples=100)
    for i in range(count):
        samplez.set(config, "k", i)
        if i % 1000 == 0:
            samplez.flush()
    samplez.flush()


def test_processes_against_one_memcached_count_exactly(memcached):
    name = unique_name("proc")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_process_worker, args=(memcached.address, name, 5000)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    samplez.configure(store=samplez.MemcacheStore(memcached.address))
    config = make(name=name, samples=100)
    result = samplez.get(config)
    assert result.total_events == 20000 and result.unique_samples == 100


def test_slot_choice_fills_first_then_replaces_uniformly():
    import random

    from samplez.reservoir.sampling import choose_slots

    assert choose_slots(0, 5, 10, random.random) == {i: i for i in range(5)}
    assert choose_slots(8, 2, 10, random.random) == {8: 0, 9: 1}
    rng = random.Random(7)
    slot_use = [0] * 100
    for _ in range(2000):
        for slot in choose_slots(1000, 1000, 100, rng.random):
            slot_use[slot] += 1
    mean = sum(slot_use) / len(slot_use)
    assert all(0.7 * mean < used < 1.3 * mean for used in slot_use)


def test_thinned_slot_choice_matches_one_coin_per_event():
    import random

    from samplez.reservoir.sampling import choose_slots

    def per_event(first, count, samples, rand):
        slots = {}
        for position in range(count):
            n = first + position
            slot = n if n < samples else int(rand() * (n + 1))
            if slot < samples:
                slots[slot] = position
        return slots

    rng = random.Random(11)
    for first, count, samples in [(50, 200, 100), (1000, 5000, 100), (10_000, 300, 10_000)]:
        runs = 300
        thinned = sum(len(choose_slots(first, count, samples, rng.random)) for _ in range(runs)) / runs
        plain = sum(len(per_event(first, count, samples, rng.random)) for _ in range(runs)) / runs
        assert thinned == pytest.approx(plain, rel=0.06), (first, count, samples)

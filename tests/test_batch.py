"""samplez.set: checks at the call, request batches, the bounded process batch."""

from __future__ import annotations

import contextvars
import gc
import math
import sys
import threading
from decimal import Decimal

import pytest

import samplez
from samplez import batch
from samplez.engine import engine
from samplez.registry import metric_at
from tests.conftest import unique_name


@pytest.fixture
def config():
    return samplez.Config(unique_name("b"), period=60, samples=100, by_value=True, max_key_length=10)


@pytest.mark.parametrize(
    "value, error",
    [
        pytest.param(True, TypeError, id="bool"),
        pytest.param(None, TypeError, id="none"),
        pytest.param("12", TypeError, id="str"),
        pytest.param(Decimal("1.5"), TypeError, id="decimal"),
        pytest.param([1], TypeError, id="list"),
        pytest.param(math.nan, ValueError, id="nan"),
        pytest.param(math.inf, ValueError, id="inf"),
        pytest.param(-math.inf, ValueError, id="-inf"),
    ],
)
def test_bad_values_raise_at_the_call(config, value, error):
    with pytest.raises(error, match="samplez value"):
        samplez.set(config, "k", value)
    assert engine.pending == 0


@pytest.mark.parametrize(
    "key, error",
    [
        pytest.param(None, TypeError, id="none"),
        pytest.param(12, TypeError, id="int"),
        pytest.param(b"\xff\xfe", ValueError, id="non-utf8-bytes"),
    ],
)
def test_bad_keys_raise_at_the_call(config, key, error):
    with pytest.raises(error, match="samplez key"):
        samplez.set(config, key, 1)


@pytest.mark.parametrize(
    "target",
    [pytest.param(None, id="none"), pytest.param("config", id="str"), pytest.param([1], id="list-of-int")],
)
def test_bad_targets_raise_at_the_call(target):
    with pytest.raises(TypeError, match="samplez.set needs"):
        samplez.set(target, "k", 1)


def test_value_defaults_to_one_and_bytes_keys_are_decoded(samplez_on, config):
    samplez.set(config, "é".encode())
    samplez.flush()
    assert samplez.get(config).samples("é")[0][1] == 1.0


def test_keys_are_cut_on_a_character_boundary(samplez_on, config):
    samplez.set(config, "ab😀" * 10, 1)
    samplez.flush()
    [key] = samplez.get(config).keys()
    assert key == ("ab😀" * 4)[:10] and len(key) == 10


def test_outside_a_request_every_set_is_one_event(samplez_on, config):
    for value in (1, 2, 3):
        samplez.set(config, "k", value)
    assert samplez.flush().applied == 3


def test_inside_a_request_the_last_value_per_key_wins(samplez_on, config):
    other = samplez.Config(unique_name("b"), period=60, samples=100, by_value=True)
    token = batch.begin()
    samplez.set(config, "k", 1)
    samplez.set([config, other], "k", 2)
    samplez.set(config, "j", 5)
    samplez.set(other, "k", 3)
    batch.end(token)
    assert samplez.flush().applied == 3
    assert [v for _, v in samplez.get(config).samples("k")] == [2.0]
    assert [v for _, v in samplez.get(other).samples("k")] == [3.0]


def test_request_batches_are_per_context(samplez_on, config):
    token = batch.begin()
    samplez.set(config, "outer", 1)
    contextvars.Context().run(samplez.set, config, "elsewhere", 1)  # another context: outside any request
    assert engine.pending == 1
    batch.end(token)
    assert engine.pending == 2


def test_a_section_feeds_every_config(samplez_on):
    a = samplez.Config(unique_name("s"), period=60, samples=10, by_value=True)
    b = samplez.Config(unique_name("s"), period=600, samples=10, by_value=True)
    samplez.set(samplez.Section("Both", a, b), "k", 7)
    samplez.flush()
    assert samplez.get(a).count("k") == samplez.get(b).count("k") == 1
    assert [r.config for r in samplez.get_section(samplez.Section("again", a, b))] == [a, b]


def test_the_pending_batch_is_bounded_and_drops_the_oldest(samplez_on, config):
    samplez.configure(max_pending=100)
    for i in range(250):
        samplez.set(config, "k", i)
    assert engine.pending == 100
    summary = samplez.flush()
    assert (summary.applied, summary.dropped) == (100, 150)
    assert min(v for _, v in samplez.get(config).samples("k")) == 150
    assert samplez.flush().dropped == 0


def test_appends_racing_flushes_and_trims_lose_and_double_nothing(samplez_on, config):
    # Request threads append without a lock; flushes and trims take events
    # from the left under one. Every event set is applied or counted as
    # dropped, exactly once, however the threads interleave.
    samplez.configure(max_pending=500)
    threads, sets_each = 6, 3_000
    done = threading.Event()
    totals = {"applied": 0, "dropped": 0}

    def add() -> None:
        for i in range(sets_each):
            token = batch.begin()
            samplez.set(config, f"k{i % 7}", i)
            batch.end(token)

    def flush() -> None:
        while not done.is_set():
            summary = samplez.flush()
            totals["applied"] += summary.applied
            totals["dropped"] += summary.dropped

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the GIL allows
    try:
        flusher = threading.Thread(target=flush)
        flusher.start()
        adders = [threading.Thread(target=add) for _ in range(threads)]
        for thread in adders:
            thread.start()
        for thread in adders:
            thread.join()
        done.set()
        flusher.join()
    finally:
        sys.setswitchinterval(switch)
    assert engine.pending <= 500
    last = samplez.flush()
    applied, dropped = totals["applied"] + last.applied, totals["dropped"] + last.dropped
    assert applied + dropped == threads * sets_each
    assert samplez.get(config).total_events == applied


def test_configure_rejects_bad_settings():
    for kwargs in (
        {"flush_interval": 0},
        {"max_pending": 0},
        {"prefix": "has space"},
        {"clock": 5},
        {"flush": "sometimes"},
        {"store": "127.0.0.1:11211"},
    ):
        with pytest.raises(samplez.ConfigError):
            samplez.configure(**kwargs)


def test_the_background_flusher_applies_without_being_asked(memcached, config):
    import time

    samplez.configure(store=samplez.MemcacheStore(memcached.address), flush_interval=0.05)
    samplez.set(config, "k", 1)
    deadline = time.monotonic() + 5
    while samplez.get(config).total_events == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert samplez.get(config).total_events == 1
    assert engine.health["applied"] >= 1


@pytest.mark.parametrize(
    "value, error",
    [
        pytest.param(math.nan, ValueError, id="nan"),
        pytest.param(-math.inf, ValueError, id="-inf"),
        pytest.param(10**400, ValueError, id="int-past-float"),
        pytest.param(True, TypeError, id="bool"),
        pytest.param("3", TypeError, id="str"),
    ],
)
def test_bad_values_raise_inside_a_request_too(samplez_on, config, value, error):
    token = batch.begin()
    try:
        with pytest.raises(error, match="samplez value"):
            samplez.set(config, "k", value)
        samplez.set(config, "k", 2**53)  # a big int that fits a float is fine
    finally:
        batch.end(token)
    assert samplez.flush().applied == 1


def test_pending_events_hold_nothing_the_garbage_collector_tracks(samplez_on, config):
    # Tuples of ints, strs and numbers are untracked at their first
    # collection; one holding a metric would be promoted, and 10,000s of
    # them per flush set off full collections in every busy worker.
    token = batch.begin()
    samplez.set(config, "k", 1.5)
    samplez.set(samplez.Section("both", config), "j", 2)
    batch.end(token)
    samplez.set(config, "outside", 3)
    gc.collect()
    assert len(engine._pending) == 3
    assert not any(gc.is_tracked(event) for event in engine._pending)


def test_events_of_a_metric_dropped_before_the_flush_are_counted_as_dropped(samplez_on):
    config = samplez.Config(unique_name("gone"), period=60, samples=10, by_value=True)
    kept = samplez.Config(unique_name("kept"), period=60, samples=10, by_value=True)
    samplez.set(config, "k", 1)
    samplez.set(kept, "k", 1)
    del config
    gc.collect()
    summary = samplez.flush()
    assert (summary.applied, summary.dropped) == (1, 1)
    assert samplez.get(kept).count("k") == 1


def test_metrics_made_on_many_threads_get_their_own_slots():
    made: list[samplez.Config] = []

    def make() -> None:
        for _ in range(50):
            made.append(samplez.Config(unique_name("t"), period=60, samples=10, by_value=True))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({config.slot for config in made}) == len(made) == 400
    assert all(metric_at(config.slot) is config for config in made)


def test_keys_are_cut_at_the_call_so_pending_events_stay_small(samplez_on, config):
    long_key = "k" * 4096
    samplez.set(config, long_key, 1)
    samplez.set(config, long_key.encode(), 2)
    assert [len(event[1]) for event in engine._pending] == [config.max_key_length] * 2


def test_a_by_domain_key_keeps_its_host_past_max_key_length(samplez_on):
    domains = samplez.Config(unique_name("d"), period=60, samples=10, by_domain=True, max_key_length=10)
    samplez.set(domains, "https://www.example.com/" + "p" * 4096, 1)
    samplez.flush()
    assert samplez.get(domains).keys() == ["example.co"]


def test_the_pending_batch_is_bounded_in_bytes(samplez_on):
    wide = samplez.Config(unique_name("w"), period=60, samples=10, by_value=True, max_key_length=10_000)
    samplez.configure(max_pending_bytes=2**16)
    for i in range(100):
        samplez.set(wide, f"{i:04d}" + "x" * 4096, 1)
    assert engine.pending_bytes <= 2**16 and 0 < engine.pending < 100
    kept = engine.pending
    summary = samplez.flush()
    assert (summary.applied, summary.dropped) == (kept, 100 - kept)
    assert engine.pending_bytes == 0


def test_max_pending_bytes_is_checked():
    with pytest.raises(samplez.ConfigError, match="max_pending_bytes"):
        samplez.configure(max_pending_bytes=1000)

"""``read_together``: many metrics read in a few round trips, each reading
exactly what it reads alone."""

from __future__ import annotations

from typing import Any, Callable

import pytest

import samplez
from samplez.engine import engine
from samplez.flush import Context
from samplez.store.base import Store, get, set_
from samplez.store.prefetch import read_together
from tests.conftest import unique_name


def _metrics() -> list[Any]:
    return [
        samplez.Config(unique_name("res"), period=60, samples=50, by_value=True),
        samplez.RollingCounter(unique_name("roll"), window=60, buckets=6),
        samplez.RollingMax(unique_name("max"), window=60, buckets=6),
        samplez.SteppedCounter(unique_name("step"), step=60, keep=3),
        samplez.UniqueCounter(unique_name("uniq"), step=60),
        samplez.HyperLogLogCounter(unique_name("hll"), step=60),
        samplez.BitmapCounter(unique_name("bits"), step=60),
        samplez.CalendarCounter(unique_name("cal")),
    ]


def _fill(metrics: list[Any], keys: int) -> None:
    for i in range(keys * 3):
        for metric in metrics:
            samplez.set(metric, f"key{i % keys}", i)
    samplez.flush()


def _plain(value: Any) -> Any:
    """A reading as comparable data."""
    if isinstance(value, list):
        return [(key, reading.as_dict()) for key, reading in value]
    return value.as_dict()


def _reader(metric: Any, ctx: Context) -> Callable[[Store], Any]:
    def read(store: Store) -> Any:
        result = metric.read(Context(store, ctx.space, ctx.now))
        return result if metric.kind == "reservoir" else list(result.items())

    return read


def test_reads_what_each_reader_reads_alone_in_three_round_trips(samplez_on):
    metrics = _metrics()
    _fill(metrics, keys=20)
    ctx = engine.context()
    readers = [_reader(metric, ctx) for metric in metrics]
    together = read_together(samplez_on, readers)
    assert [_plain(v) for v in together.values] == [_plain(read(samplez_on)) for read in readers]
    # index, then data, then a bitmap's chunks: one pipeline each (one
    # server), however many metrics and keys.
    assert together.round_trips == 3
    assert together.failures == 0


@pytest.mark.parametrize("keys", [pytest.param(1, id="one-key"), pytest.param(60, id="sixty-keys")])
def test_round_trips_do_not_grow_with_keys(samplez_on, keys):
    metrics = _metrics()[:2]  # a reservoir and a rolling counter: two steps deep
    _fill(metrics, keys)
    ctx = engine.context()
    together = read_together(samplez_on, [_reader(metric, ctx) for metric in metrics])
    assert together.round_trips == 2


def test_a_reader_that_raises_gives_its_exception_and_spares_the_others(samplez_on):
    samplez_on.execute([set_("a", b"1", 60)])

    def broken(store: Store) -> Any:
        store.execute([get("a")])
        raise RuntimeError("boom")

    together = read_together(samplez_on, [broken, lambda s: s.execute([get("a")])[0]])
    assert isinstance(together.values[0], RuntimeError)
    assert together.values[1] == [b"1"]


def test_a_reader_deeper_than_the_rounds_still_reads_everything(samplez_on):
    chain = [f"k{i}" for i in range(8)]
    samplez_on.execute([set_(key, following.encode(), 60) for key, following in zip(chain, chain[1:] + ["end"])])

    def follow(store: Store) -> list[bytes]:
        seen, key = [], "k0"
        while key != "end":
            (raw,), _ = store.execute([get(key)])
            assert raw is not None, key
            seen.append(raw)
            key = raw.decode()
        return seen

    assert read_together(samplez_on, [follow]).values == [follow(samplez_on)]


def test_unreachable_reads_are_counted(clock):
    dead = samplez.MemcacheStore("127.0.0.1:1", timeout=0.2)
    together = read_together(dead, [lambda s: s.execute([get("a"), get("b")])[0]])
    assert together.failures == 2

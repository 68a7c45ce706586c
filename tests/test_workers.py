"""Worker heartbeats: each writing process lists itself in the store at its
flushes, and leaves the list when its heartbeat expires."""

from __future__ import annotations

import os

import samplez
from samplez import listings, workers
from samplez.engine import engine
from samplez.store.base import get, set_
from tests.conftest import unique_name


def read(clock):
    return workers.read_workers(engine.context())


def test_a_flush_lists_this_process_with_what_it_did(samplez_on, clock):
    hits = samplez.RollingCounter(unique_name("beat"), window=60)
    engine.heartbeat.last = -float("inf")
    before = engine.health["applied"]
    samplez.set(hits, "k")
    samplez.flush()
    [me] = read(clock)
    assert (me["pid"], me["applied"], me["id"]) == (os.getpid(), before, engine.heartbeat.id)
    assert me["rss"] > 0 and me["cpu"] > 0 and me["seen"] == clock()
    samplez.set(hits, "k")
    samplez.flush()  # within EVERY seconds of the last: no new heartbeat
    assert read(clock)[0]["applied"] == before
    engine.heartbeat.last = -float("inf")
    samplez.flush()  # nothing pending, but a heartbeat is due
    assert read(clock)[0]["applied"] == before + 2


def test_a_worker_leaves_the_list_when_its_heartbeat_expires(samplez_on, clock):
    engine.heartbeat.last = -float("inf")
    samplez.flush()
    assert len(read(clock)) == 1
    clock.advance(workers.TTL + 1)
    assert read(clock) == []
    other = workers.Heartbeat()  # another worker beats later: the expired one is dropped
    ctx = engine.context()
    plan = other.plan(ctx, {"requests": 0})
    results, _ = ctx.store.execute(next(plan))
    results, _ = ctx.store.execute(plan.send(results))
    assert [beat["id"] for beat in read(clock)] == [other.id]
    listing = listings.decode(ctx.store.execute([get(ctx.space.key("_workers"))])[0][0])
    assert list(listing) == [other.id]


def test_requests_served_are_counted(samplez_on, clock):
    import webtest

    client = webtest.TestApp(samplez.Middleware(lambda e, s: [s("200 OK", []) and b""], flush="request"))
    engine.heartbeat.last = -float("inf")
    served = engine.served
    for _ in range(3):
        client.get("/")
    engine.heartbeat.last = -float("inf")
    samplez.flush()
    assert read(clock)[0]["requests"] == served + 3


def test_garbage_under_the_listing_reads_as_no_workers(samplez_on, clock):
    ctx = engine.context()
    for value in (b"\x00garbage", b"\x01[1,2]", b'\x01{"../x": 1e300}'):
        ctx.store.execute([set_(ctx.space.key("_workers"), value, 60)])
        assert read(clock) == []

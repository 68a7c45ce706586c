"""fork() with samples pending: the parent keeps and flushes its own, the
child starts with an empty batch, a fresh flusher and its own sockets, so
nothing is lost or applied twice (gunicorn forks workers; so does
multiprocessing)."""

from __future__ import annotations

import os
import threading

import pytest

import samplez
from samplez.engine import engine
from tests.conftest import unique_name

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def run_child(body) -> int:
    """Fork; run ``body()`` in the child (truthy = success); return its exit status."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            code = 0 if body() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.fixture
def config() -> samplez.Config:
    return samplez.Config(unique_name("fork"), period=3600, samples=5000, by_value=True)


@pytest.mark.parametrize("mode", [pytest.param("background", id="flusher-running"), pytest.param("request", id="idle")])
def test_fork_with_pending_samples_neither_loses_nor_duplicates(memcached, clock, config, mode):
    samplez.configure(store=samplez.MemcacheStore(memcached.address), clock=clock, flush=mode, flush_interval=3600)
    samplez.set(config, "warm", 1)
    samplez.flush()  # the parent now holds a pooled connection to memcached
    for i in range(100):
        samplez.set(config, "parent", i)
    parent_thread = engine._thread
    assert engine.pending == 100

    def child() -> bool:
        fresh = engine.pending == 0 and engine._thread is None
        for i in range(40):
            samplez.set(config, "child", i)
        started = mode == "request" or (engine._thread is not None and engine._thread is not parent_thread)
        summary = samplez.flush()
        return fresh and started and summary.applied == 40 and summary.errors == 0

    assert run_child(child) == 0
    assert engine.pending == 100 and engine._thread is parent_thread
    summary = samplez.flush()
    assert summary.applied == 100 and summary.errors == 0

    result = samplez.get(config)
    assert result.total_events == 141
    assert (result.count("warm"), result.count("parent"), result.count("child")) == (1, 100, 40)


def test_fork_while_another_thread_holds_the_batch_lock(memcached, clock, config):
    # A fork taken while a request thread is inside engine.add() must not
    # leave the child's batch lock held forever.
    samplez.configure(store=samplez.MemcacheStore(memcached.address), clock=clock, flush="request")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with engine._lock:
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(10)
    try:

        def child() -> bool:
            samplez.set(config, "child", 1)
            return samplez.flush().applied == 1

        status = run_child(child)
    finally:
        release.set()
        thread.join()
    assert status == 0
    assert samplez.get(config).count("child") == 1

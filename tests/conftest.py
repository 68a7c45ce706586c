"""Fixtures: real memcached servers, an injected clock, and a fresh samplez
engine per test, run against both stores."""

from __future__ import annotations

import itertools
import os
import sys
import time
from typing import Any, Callable, Iterator

import pytest

import samplez
from samplez.engine import engine
from samplez.testing import MemcachedServer

_names = itertools.count()


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[MemcachedServer]:
    server = MemcachedServer().start()
    yield server
    server.kill()


@pytest.fixture
def memcached(memcached_server: MemcachedServer) -> MemcachedServer:
    """The session's memcached, emptied for this test."""
    memcached_server.flush_all()
    return memcached_server


@pytest.fixture
def spawn_memcached() -> Iterator[type[MemcachedServer]]:
    """Start extra memcached processes (for cluster and fault tests)."""
    started: list[MemcachedServer] = []

    class Tracked(MemcachedServer):
        def start(self) -> MemcachedServer:
            started.append(self)
            return super().start()

    yield Tracked
    for server in started:
        server.kill()


class Clock:
    """An injected clock: ``clock.advance(seconds)`` instead of sleeping."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "memcache"])
def store(request: pytest.FixtureRequest, clock: Clock) -> samplez.Store:
    """Each store-backed test runs on MemoryStore and on a real memcached."""
    if request.param == "memory":
        return samplez.MemoryStore()
    server = request.getfixturevalue("memcached")
    return samplez.MemcacheStore(server.address)


@pytest.fixture(autouse=True)
def fresh_engine() -> Iterator[None]:
    """Every test starts with default settings and an empty batch."""
    engine.stop()
    engine.clear()
    engine.configure(
        store=None,
        prefix="samplez",
        flush_interval=0.5,
        max_pending=100_000,
        max_pending_bytes=32 * 2**20,
        clock=time.time,
        flush="background",
    )
    yield
    engine.stop()
    engine.clear()


@pytest.fixture
def samplez_on(store: samplez.Store, clock: Clock) -> samplez.Store:
    """samplez configured on ``store`` with the injected clock; no
    background flusher, so each test decides when to flush."""
    samplez.configure(store=store, clock=clock, flush="request")
    return store


def unique_name(stem: str = "m") -> str:
    return f"{stem}_{os.getpid()}_{next(_names)}"


def wsgi_call(app: Callable[..., Any], path: str) -> Any:
    """Call a WSGI app for GET ``path`` the way a server does, outside
    webtest: what it returns is not iterated or closed."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SERVER_NAME": "x", "SERVER_PORT": "80"}
    environ.update({"wsgi.url_scheme": "http", "wsgi.input": None, "wsgi.errors": sys.stderr})
    return app(environ, lambda status, headers, exc_info=None: None)


def every_counter(max_keys: int = 100) -> list[Any]:
    """One counter of each kind, freshly named (a reservoir is a
    ``samplez.Config``)."""
    return [
        samplez.RollingCounter(unique_name("rolling"), window=60, max_keys=max_keys),
        samplez.RollingMax(unique_name("max"), window=60, max_keys=max_keys),
        samplez.SteppedCounter(unique_name("stepped"), step=60, max_keys=max_keys),
        samplez.UniqueCounter(unique_name("unique"), step=60, max_keys=max_keys),
        samplez.HyperLogLogCounter(unique_name("hll"), step=60, max_keys=max_keys),
        samplez.BitmapCounter(unique_name("bitmap"), step=60, max_keys=max_keys),
        samplez.CalendarCounter(unique_name("calendar"), max_keys=max_keys),
    ]


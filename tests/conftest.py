"""Fixtures: real memcached and Redis servers, an injected clock, and a
fresh samplez engine per test, run against every store."""

from __future__ import annotations

import itertools
import os
import sys
import time
from typing import Any, Callable, Iterator, Sequence

import pytest

import samplez
from samplez.engine import engine
from samplez.testing import MemcachedServer, RedisServer, ServerProcess

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


@pytest.fixture(scope="session")
def redis_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session: no persistence, as a cache."""
    server = RedisServer(directory=str(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.kill()


@pytest.fixture
def redis_server(redis_session: RedisServer) -> RedisServer:
    """The session's redis-server, emptied for this test."""
    redis_session.flush_all()
    return redis_session


@pytest.fixture
def spawn_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RedisServer]]:
    """Start extra redis-server processes (for cluster, fault and restart
    tests); each in a directory of its own unless given one."""
    started: list[RedisServer] = []

    def spawn(port: int | None = None, directory: str | None = None, **options: Any) -> RedisServer:
        where = directory or str(tmp_path_factory.mktemp("redis"))
        server = RedisServer(port=port, directory=where, **options).start()
        started.append(server)
        return server

    yield spawn
    for server in started:
        server.kill()


class Backend:
    """A networked store's kind (``'memcache'`` or ``'redis'``), for tests
    that start, kill and restart its servers: ``spawn()`` starts one
    (``port=`` to restart one), ``shared()`` is the session's, emptied,
    and ``store(servers)`` is a store on servers (or bare ports)."""

    def __init__(self, kind: str, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self._request = request

    def shared(self) -> ServerProcess:
        return self._request.getfixturevalue("memcached" if self.kind == "memcache" else "redis_server")

    def spawn(self, port: int | None = None, **options: Any) -> ServerProcess:
        if self.kind == "memcache":
            return self._request.getfixturevalue("spawn_memcached")(port=port, **options).start()
        return self._request.getfixturevalue("spawn_redis")(port=port, **options)

    def location(self, server: ServerProcess | int) -> str:
        port = server if isinstance(server, int) else server.port
        return f"127.0.0.1:{port}" if self.kind == "memcache" else f"redis://127.0.0.1:{port}/0"

    def option(self, server: ServerProcess) -> list[str]:
        """The command-line option that names ``server``."""
        return [f"--{self.kind}", self.location(server)]

    def environment(self, server: ServerProcess) -> dict[str, str]:
        """The environment variable that names ``server``."""
        return {f"SAMPLEZ_{self.kind.upper()}": self.location(server)}

    def store(self, servers: ServerProcess | int | Sequence[ServerProcess | int], **options: Any) -> samplez.Store:
        listed = servers if isinstance(servers, Sequence) else [servers]
        locations = [self.location(server) for server in listed]
        if self.kind == "memcache":
            return samplez.MemcacheStore(locations, **options)
        return samplez.RedisStore(locations, **options)


@pytest.fixture(params=["memcache", "redis"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each fault test runs on memcached and on redis-server."""
    return Backend(request.param, request)


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


@pytest.fixture(params=["memory", "memcache", "redis"])
def store(request: pytest.FixtureRequest, clock: Clock) -> Iterator[samplez.Store]:
    """Each store-backed test runs on MemoryStore, on a real memcached and
    on a real redis-server."""
    made: samplez.Store
    if request.param == "memory":
        made = samplez.MemoryStore()
    elif request.param == "memcache":
        made = samplez.MemcacheStore(request.getfixturevalue("memcached").address)
    else:
        made = samplez.RedisStore(request.getfixturevalue("redis_server").url)
    yield made
    made.close()


def stored_keys(request: pytest.FixtureRequest, store: samplez.Store) -> list[str]:
    """Every key ``store`` (the ``store`` fixture's) holds."""
    if isinstance(store, samplez.MemoryStore):
        return list(store._data)
    server = "redis_server" if isinstance(store, samplez.RedisStore) else "memcached"
    return request.getfixturevalue(server).keys()


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


#: A value each counter kind takes (unique counters and sketches count items).
A_VALUE = {
    "rolling": 1,
    "rolling_max": 2.5,
    "stepped": 1,
    "unique": "visitor",
    "hll": "visitor",
    "bitmap": 7,
    "calendar": 1,
}


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

"""Fixtures: real memcached servers, an injected clock, and a fresh samplez
engine per test, run against both stores."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from typing import Iterator

import pytest

import samplez
from samplez.engine import engine

MEMCACHED = shutil.which("memcached") or "/usr/bin/memcached"
_names = itertools.count()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MemcachedProcess:
    """A real memcached on a loopback port, started and killed by tests."""

    def __init__(self, port: int | None = None, memory_mb: int = 64) -> None:
        self.port = port or free_port()
        self.memory_mb = memory_mb
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> MemcachedProcess:
        args = [MEMCACHED, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", str(self.memory_mb), "-t", "2"]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"memcached exited with {self.proc.returncode}") from None
                time.sleep(0.02)
        raise RuntimeError("memcached did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def flush_all(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(b"flush_all\r\n")
            sock.recv(64)


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[MemcachedProcess]:
    server = MemcachedProcess().start()
    yield server
    server.kill()


@pytest.fixture
def memcached(memcached_server: MemcachedProcess) -> MemcachedProcess:
    """The session's memcached, emptied for this test."""
    memcached_server.flush_all()
    return memcached_server


@pytest.fixture
def spawn_memcached() -> Iterator[type[MemcachedProcess]]:
    """Start extra memcached processes (for cluster and fault tests)."""
    started: list[MemcachedProcess] = []

    class Tracked(MemcachedProcess):
        def start(self) -> MemcachedProcess:
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
        store=None, prefix="samplez", flush_interval=0.5, max_pending=100_000, clock=time.time, flush="background"
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

"""Memcache round trips: none on the request path, at most three per flush
whatever the number of configs and events.

Round trips are counted twice: by ``FlushSummary.round_trips`` and, to
check that figure, by counting the writes on the real sockets.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Iterator

import pytest
import webtest

import samplez
from samplez.store import wire
from tests.conftest import A_VALUE, every_counter, unique_name


class SilentMemcached:
    """A loopback server that accepts connections, reads what it is sent,
    and never answers: the worst memcached there is."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = 0
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        self.listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
                conn.setblocking(False)
                self.connections.append(conn)
            except OSError:
                pass
            for conn in self.connections:
                try:
                    self.received += len(conn.recv(65536))
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self.connections:
            conn.close()
        self.listener.close()


@pytest.fixture
def silent_memcached() -> Iterator[SilentMemcached]:
    server = SilentMemcached()
    yield server
    server.close()


@pytest.fixture
def socket_writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """One entry per ``sendall`` on a memcache socket: the name of the
    thread that wrote (one write = one round trip to one server)."""
    writes: list[str] = []
    connect = wire.Connection._connect

    class Counting:
        def __init__(self, sock: socket.socket) -> None:
            self._sock = sock

        def sendall(self, data: bytes) -> None:
            writes.append(threading.current_thread().name)
            self._sock.sendall(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._sock, name)

    monkeypatch.setattr(wire.Connection, "_connect", lambda self: Counting(connect(self)))
    return writes


def sampling_app(config: samplez.Config) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        samplez.set(config, environ["PATH_INFO"], 12)
        samplez.set(config, "/other", 3)
        samplez.set(config, "/third", 4)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


@pytest.mark.parametrize(
    "flush, request_thread_writes",
    [
        pytest.param("background", 0, id="background-flush-none-on-request-thread"),
        # The contrast that shows the detector works: the original design
        # wrote from the request thread after every response.
        pytest.param("request", 200, id="per-request-flush-writes-every-request"),
    ],
)
def test_request_path_makes_no_round_trip(memcached, socket_writes, flush, request_thread_writes):
    config = samplez.Config(unique_name("rt"), period=60, samples=1000, by_value=True)
    app = webtest.TestApp(
        samplez.Middleware(sampling_app(config), store=samplez.MemcacheStore(memcached.address), flush=flush)
    )
    me = threading.current_thread().name
    for i in range(200):
        assert app.get(f"/item/{i}").text == "ok"
    assert socket_writes.count(me) >= request_thread_writes
    assert (socket_writes.count(me) == 0) == (request_thread_writes == 0)
    samplez.flush()
    assert samplez.get(config).total_events == 600


def test_a_memcached_that_never_answers_does_not_slow_requests(silent_memcached):
    timeout = 3.0
    store = samplez.MemcacheStore(silent_memcached.address, connect_timeout=timeout, timeout=timeout)
    config = samplez.Config(unique_name("rt"), period=60, samples=1000, by_value=True)
    app = webtest.TestApp(samplez.Middleware(sampling_app(config), store=store, flush_interval=0.05))
    start = time.monotonic()
    for i in range(200):
        assert app.get(f"/item/{i}").status_int == 200
        if i == 0:
            # Let the flusher reach the silent server and hang on it.
            deadline = time.monotonic() + 5
            while not silent_memcached.received and time.monotonic() < deadline:
                time.sleep(0.01)
    elapsed = time.monotonic() - start
    assert silent_memcached.received > 0, "the flusher never wrote to the server"
    # Loose bound: 200 requests while the flusher hangs on a server that
    # never answers take far less than one store timeout.
    assert elapsed < timeout / 3


@pytest.mark.parametrize(
    "configs, events_each, servers",
    [
        pytest.param(50, 1000, 1, id="50-configs-x-1000-events"),
        pytest.param(3, 20_000, 1, id="3-configs-x-20000-events"),
        pytest.param(50, 200, 3, id="cluster-of-3-at-most-3-per-server"),
    ],
)
def test_a_flush_takes_at_most_three_round_trips_per_server(
    memcached, spawn_memcached, socket_writes, configs, events_each, servers
):
    addresses = [memcached.address] + [spawn_memcached().start().address for _ in range(servers - 1)]
    # A patient timeout: this counts round trips, and a 50,000-op pipeline on
    # a loaded 2-core machine may stall past the default half second.
    store = samplez.MemcacheStore(addresses, connect_timeout=5, timeout=5)
    samplez.configure(store=store, flush="request", max_pending=1_000_000, max_pending_bytes=2**30)
    metrics = [samplez.Config(unique_name("rt"), period=600, samples=1000, by_value=True) for _ in range(configs)]
    for config in metrics:
        for i in range(events_each):
            samplez.set(config, f"/k{i % 37}", i)
    summary = samplez.flush()
    assert summary.applied == configs * events_each and summary.errors == 0
    assert 2 * servers <= summary.round_trips <= 3 * servers
    assert len(socket_writes) == summary.round_trips  # the figure matches the wire
    for config in metrics:
        assert samplez.get(config).total_events == events_each


def test_every_kind_of_metric_shares_the_same_three_round_trips(memcached, socket_writes):
    samplez.configure(
        store=samplez.MemcacheStore(memcached.address), flush="request", max_pending=1_000_000, max_pending_bytes=2**30
    )
    reservoirs = [samplez.Config(unique_name("rt"), period=600, samples=500, by_value=True) for _ in range(10)]
    counters = [(counter, A_VALUE[counter.kind]) for counter in every_counter()]
    events = 0
    for i in range(1000):
        for config in reservoirs:
            samplez.set(config, f"/k{i % 13}", i)
            events += 1
        for counter, value in counters:
            samplez.set(counter, f"key{i % 5}", value)
            events += 1
    summary = samplez.flush()
    assert summary.applied == events and summary.errors == 0 and summary.dropped == 0
    assert summary.round_trips <= 3
    assert len(socket_writes) == summary.round_trips

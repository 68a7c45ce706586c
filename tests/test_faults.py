"""Reliability against real failures: memcached and Redis processes killed and
restarted, a server that never answers, a cluster losing a node, a full
memcache, garbage under our keys, pending samples at interpreter exit, and
servers that never close a response. (SIGTERM under gunicorn:
tests/test_gunicorn.py.)

Requests go through ``samplez.Middleware`` (webtest, in process); the
flusher runs in the background as in production. Nothing is mocked: every
store is a real memcached or redis-server this test starts and kills; the
tests taking ``backend`` run on both.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, Callable

import pytest
import webtest

import samplez
from samplez.engine import engine
from samplez.reservoir.sampling import encode_sample
from samplez.store import base as ops
from samplez.store.keys import FORMAT_VERSION
from samplez.testing import MemcachedServer, ServerProcess
from tests.conftest import Backend, Clock, every_counter, unique_name, wsgi_call
from tests.proxy import Proxy

DEADLINE = 10.0  # seconds: a bound for polling, never a measured figure
LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}  # the dashboard answers loopback clients


def eventually(check: Callable[[], bool], timeout: float = DEADLINE, step: float = 0.02) -> float:
    """Poll ``check`` until it holds; return how long it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(step)
    return time.monotonic() - start


def make_app(config: samplez.Config) -> Callable:
    def app(environ, start_response):
        samplez.set(config, environ["PATH_INFO"], 7)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


def reservoir(samples: int = 10_000, **extra) -> samplez.Config:
    return samplez.Config(unique_name("fault"), period=3600, samples=samples, by_value=True, **extra)


def hit(app: webtest.TestApp, path: str, times: int) -> list[int]:
    return [app.get(path).status_int for _ in range(times)]


def stat(server: MemcachedServer, name: str) -> int:
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            data += sock.recv(65536)
    for line in data.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == name:
            return int(parts[2])
    raise KeyError(name)


class HangingServer:
    """Accepts connections and reads whatever is sent, never answering."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.received = threading.Event()
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        with conn:
            try:
                while conn.recv(65536):
                    self.received.set()
            except OSError:
                pass

    def close(self) -> None:
        for sock in (self.listener, *self.conns):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept and recv
            except OSError:
                pass  # already closed by the peer
        self._thread.join(timeout=5)
        self.listener.close()


@pytest.fixture
def fixed_clock() -> Clock:
    # The flusher runs on real time; the clock only stamps events, so a
    # fixed one keeps every event of the test in one period.
    return Clock(1_800_000_000.0)


# -- one server killed and restarted ---------------------------------------


def test_server_killed_during_load_then_restarted(backend: Backend, fixed_clock):
    server = backend.spawn()
    interval = 0.1
    store = backend.store(server, dead_timeout=interval)
    config = reservoir()
    app = webtest.TestApp(samplez.Middleware(make_app(config), store=store, clock=fixed_clock, flush_interval=interval))

    statuses = hit(app, "/up", 200)
    eventually(lambda: samplez.get(config).total_events == 200)

    server.kill()
    errors_before = engine.health["errors"]
    statuses += hit(app, "/down", 200)
    eventually(lambda: engine.health["errors"] > errors_before)
    down = samplez.get(config)  # a read while down answers, empty
    assert not down.reachable and down.total_events == 0
    # The dashboard says so, on every page, without a 500.
    for page in ("/_samplez/", f"/_samplez/config/{config.name}", "/_samplez/health"):
        for suffix in ("", "?format=json"):
            assert app.get(page + suffix, extra_environ=LOOPBACK).status_int == 200
    assert "unreachable" in app.get("/_samplez/", extra_environ=LOOPBACK).text

    backend.spawn(port=server.port)
    restarted = time.monotonic()
    while samplez.get(config).count("/back") == 0:
        statuses += hit(app, "/back", 5)
        assert time.monotonic() - restarted < DEADLINE, "counting never resumed"
    resumed = time.monotonic() - restarted

    # From now on every event counts again, exactly.
    samplez.flush()
    before = samplez.get(config).total_events
    statuses += hit(app, "/after", 300)
    samplez.flush()
    assert samplez.get(config).total_events == before + 300
    assert set(statuses) == {200}
    # Two flush intervals, plus the dead-node window and slack for a
    # loaded machine; the soak (bench/soak_faults.py) reports the figure.
    assert resumed < 2 * interval + 2.0


def test_flushes_while_down_count_errors_and_never_raise(backend: Backend, clock):
    server = backend.spawn()
    samplez.configure(store=backend.store(server, dead_timeout=0.05), clock=clock, flush="request")
    config = reservoir()
    server.kill()
    for i in range(50):
        samplez.set(config, f"k{i}", i)
    summary = samplez.flush()
    assert summary.applied == 0 and summary.dropped == 50 and summary.errors >= 1
    assert engine.health["last_error"]
    assert engine.pending == 0  # failed events are dropped and counted, not kept forever

    backend.spawn(port=server.port)

    def applied() -> bool:
        samplez.set(config, "again", 1)
        return samplez.flush().applied == 1

    eventually(applied)
    assert samplez.get(config).count("again") >= 1


# -- a server that accepts and never answers -----------------------------------


def test_server_that_never_answers(backend: Backend, fixed_clock, caplog):
    hang = HangingServer()
    timeout = 2.0
    store = backend.store(hang.port, timeout=timeout, dead_timeout=0.1)
    config = reservoir()
    app = webtest.TestApp(samplez.Middleware(make_app(config), store=store, clock=fixed_clock, flush_interval=0.05))
    try:
        flushes = engine.health["flushes"]
        assert hit(app, "/first", 1) == [200]
        assert hang.received.wait(DEADLINE), "the flusher never wrote to the server"
        # The flusher is now blocked reading an answer that never comes;
        # requests are served meanwhile.
        assert hit(app, "/stuck", 100) == [200] * 100
        assert engine.health["flushes"] == flushes, "the flush should still be waiting"
        eventually(lambda: engine.health["flushes"] > flushes and engine.health["errors"] > 0, timeout + DEADLINE)
        assert any("timed out" in record.getMessage() for record in caplog.records)
    finally:
        hang.close()

    backend.spawn(port=hang.port)

    def counting() -> bool:
        hit(app, "/back", 1)
        return samplez.get(config).count("/back") > 0

    eventually(counting)


# -- a three-node cluster loses a node -------------------------------------------


def node_items(backend: Backend, server: ServerProcess, keys: list[str]) -> dict[str, bytes]:
    # A read that times out comes back empty: on a loaded machine the
    # default half second read a live node's keys as missing.
    return backend.store(server, connect_timeout=5, timeout=5).get_many(keys)


def test_cluster_node_killed_mid_load(backend: Backend, fixed_clock):
    nodes = [backend.spawn() for _ in range(3)]
    # Generous timeouts: on a loaded machine a slow answer must not take a
    # live node out of the ring and move its keys while we snapshot them.
    store = backend.store(nodes, connect_timeout=2, timeout=2, dead_timeout=0.2)
    config = reservoir(samples=300)
    app = webtest.TestApp(samplez.Middleware(make_app(config), store=store, clock=fixed_clock, flush_interval=0.05))
    index = int(fixed_clock() // config.period)
    keys = [engine.space.key(config.name, index, "n")] + [
        engine.space.key(config.name, index, slot) for slot in range(config.samples)
    ]

    statuses = hit(app, "/a", 600)
    # Waits for the flusher's flush too: the count is written before the
    # slots, so a read between them would see slots missing.
    samplez.flush()
    assert samplez.get(config).total_events == 600
    before = [node_items(backend, node, keys) for node in nodes]
    spread = [len(items) for items in before]
    assert all(count > 20 for count in spread), f"rendezvous hashing should spread the slots: {spread}, {engine.health}"

    victim, live = nodes[1], [nodes[0], nodes[2]]
    victim.kill()
    statuses += hit(app, "/b", 600)
    samplez.flush()
    for node, items in zip(live, (before[0], before[2])):
        after = node_items(backend, node, list(items))
        assert set(after) == set(items), "a live node lost keys"
    result = samplez.get(config)
    assert result.unique_samples >= len(before[0]) + len(before[2]) - 2

    backend.spawn(port=victim.port)

    def victim_serves() -> bool:
        hit(app, "/c", 20)
        return bool(node_items(backend, victim, keys))

    eventually(victim_serves)
    assert set(statuses) == {200}


# -- memcache full and evicting ----------------------------------------------------


def test_full_memcache_evicts_without_errors_or_garbage(spawn_memcached, fixed_clock):
    server = spawn_memcached(memory_mb=2).start()
    samplez.configure(store=samplez.MemcacheStore(server.address), clock=fixed_clock, flush="request")
    config = reservoir(samples=2000, max_key_length=10_000)
    written = {f"{i:04d}" + "é" * 9_000 for i in range(40)}  # ~18 KB per sample
    app = webtest.TestApp(samplez.Middleware(make_app(config)))
    for round_number in range(50):
        for key in written:
            assert app.get(f"/{round_number}").status_int == 200
            samplez.set(config, key, round_number)
        samplez.flush()
    assert stat(server, "evictions") > 0, "the test should have filled memcached"

    result = samplez.get(config)
    assert 0 < result.unique_samples < config.samples
    for key in result.keys():
        assert key in written or key.lstrip("/").isdigit()
        assert all(0 <= value <= 49 or value == 7 for _, value in result.samples(key))
    assert result.total_events >= result.unique_samples
    page = app.get(f"/_samplez/config/{config.name}?format=json", extra_environ=LOOPBACK)
    assert page.status_int == 200 and page.json


# -- garbage under our keys ----------------------------------------------------------

JUNK = [
    pytest.param(lambda i: bytes((i * 37 + j) % 256 for j in range(40)), id="junk-bytes"),
    pytest.param(lambda i: b"", id="empty"),
    pytest.param(lambda i: b"9" * 30, id="huge-number"),
    pytest.param(lambda i: b"18446744073709551615", id="max-uint64"),
    pytest.param(lambda i: b"1000000000000000000", id="19-digits"),
    pytest.param(lambda i: b"-12", id="negative"),
    pytest.param(lambda i: bytes([FORMAT_VERSION]) + b"\xff" * 3, id="short-versioned"),
    pytest.param(lambda i: bytes([FORMAT_VERSION]) + struct.pack("<dd", float("nan"), 1.0), id="nan-time"),
    pytest.param(lambda i: bytes([FORMAT_VERSION]) + struct.pack("<dd", 1.8e9, float("inf")), id="inf-value"),
    pytest.param(lambda i: encode_sample("k", 1.8e9, 1.0)[:-1] + b"\xff", id="bad-utf8-key"),
    pytest.param(lambda i: bytes([FORMAT_VERSION + 1]) + struct.pack("<dd", 1.8e9, 1.0), id="future-version"),
    pytest.param(lambda i: b"x" * 500_000, id="large"),
    pytest.param(lambda i: bytes([FORMAT_VERSION]) + b'["\\ud800", "<b>k</b>", 7]', id="versioned-json-surrogate"),
]


@pytest.mark.parametrize("junk", JUNK)
def test_garbage_in_every_value_is_skipped_then_overwritten(samplez_on, clock, junk):
    config = reservoir(samples=50)
    for i in range(30):
        samplez.set(config, f"key{i}", i)
    samplez.flush()
    index = int(clock() // config.period)
    keys = [engine.space.key(config.name, index, "n")]
    keys += [engine.space.key(config.name, index, slot) for slot in range(config.samples)]
    results, _ = samplez_on.execute([ops.set_(key, junk(i), 600) for i, key in enumerate(keys)])
    assert all(r is True for r in results)

    garbled = samplez.get(config)
    assert garbled.unique_samples == 0 and garbled.keys() == []
    assert garbled.rows() == [] and garbled.overall_rate() >= 0

    for i in range(20):
        samplez.set(config, "fresh", 100 + i)
    summary = samplez.flush()
    assert summary.applied == 20 and summary.dropped == 0
    result = samplez.get(config)
    assert result.count("fresh") == 20 and result.total_events == 20
    assert sorted(v for _, v in result.samples("fresh")) == [100.0 + i for i in range(20)]


# -- interpreter exit ---------------------------------------------------------------

EXIT_SCRIPT = """
import samplez
samplez.configure(store=samplez.MemcacheStore({address!r}), flush_interval=3600)
config = samplez.Config({name!r}, period=3600, samples=1000, by_value=True)
for i in range(250):
    samplez.set(config, "exit", i)
# No flush here, and the flush interval is an hour: only atexit can save them.
"""


def test_pending_samples_are_flushed_at_interpreter_exit(memcached):
    name = unique_name("exit")
    script = textwrap.dedent(EXIT_SCRIPT.format(address=memcached.address, name=name))
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    samplez.configure(store=samplez.MemcacheStore(memcached.address))
    config = samplez.Config(name, period=3600, samples=1000, by_value=True)
    # The run may straddle an hour boundary: count both periods.
    counted = [samplez.get(config, period=p) for p in ("current", "previous")]
    assert sum(r.total_events for r in counted) == 250
    assert sum(r.count("exit") for r in counted) == 250


# -- garbage under every key of every kind, dashboard included ------------------------


#: Per counter kind: the values to feed it, and a check that a fresh write
#: to the key ``'k'`` (5 of them, the last of value 5000) reads back.
FEEDS: dict[str, tuple[Callable[[int], Any], Callable[[Any], bool]]] = {
    "rolling": (lambda i: 1, lambda r: r["k"].total == 5),
    "rolling_max": (lambda i: float(i), lambda r: r["k"].max == 5000.0),
    "stepped": (lambda i: 1, lambda r: r["k"].value == 5),
    "unique": (lambda i: f"user{i}", lambda r: r["k"].value >= 1),
    "hll": (lambda i: f"user{i}", lambda r: r["k"].value >= 1),
    "bitmap": (lambda i: i, lambda r: r["k"].contains(5000)),
    "calendar": (lambda i: 1, lambda r: r["k"].hour == 5),
}


def every_kind() -> list[tuple[samplez.Metric, Callable[[int], Any], Callable[[Any], bool] | None]]:
    """One metric of each kind, the values to feed it and its check."""
    reservoir = samplez.Config(unique_name("junk_r"), period=3600, samples=50, by_value=True)
    return [(reservoir, lambda i: i, None), *((c, *FEEDS[c.kind]) for c in every_counter())]


@pytest.mark.parametrize("junk", JUNK)
def test_garbage_under_every_key_of_every_kind(backend: Backend, fixed_clock, junk):
    server = backend.shared()
    # Patient timeouts: "large" moves some 50 MB through one pipeline, which a
    # loaded machine may take longer than the default half second to send.
    store = backend.store(server, connect_timeout=10, timeout=10)
    samplez.configure(store=store, clock=fixed_clock, flush="request")
    metrics = every_kind()
    section = samplez.Section("Junk", *[m for m, _, _ in metrics])
    for metric, feed, _ in metrics:
        for i in range(40):
            samplez.set(metric, "k" if i % 2 else f"key{i}", feed(i))
    assert samplez.flush().dropped == 0
    keys = server.keys()
    assert len(keys) > 100 and all(key.startswith("samplez:") for key in keys)
    results, _ = store.execute([ops.set_(key, junk(i), 600) for i, key in enumerate(keys)])
    assert all(r is True for r in results)

    # Reads skip what they cannot parse; the dashboard renders every page.
    for metric, _, _ in metrics:
        samplez.get(metric)
    dashboard = webtest.TestApp(samplez.Dashboard(sections=section, store=store), extra_environ=LOOPBACK)
    for metric, _, _ in metrics:
        for page in (f"/config/{metric.name}", f"/config/{metric.name}/key?key=k"):
            assert dashboard.get(page).status_int == 200
            assert dashboard.get(page + ("&" if "?" in page else "?") + "format=json").status_int == 200
    assert dashboard.get("/").status_int == 200 and dashboard.get("/health").status_int == 200

    # Writes recover: the junked keys are written again and read back.
    for metric, _, _ in metrics:
        samplez.set(metric, "k", 5000 if metric.kind in ("rolling_max", "bitmap", "reservoir") else 1)
        if metric.kind in ("rolling", "stepped", "calendar"):
            for _ in range(4):
                samplez.set(metric, "k", 1)
    assert samplez.flush().dropped == 0  # refused increments on junk count as errors, then get repaired
    for metric, _, check in metrics:
        result = samplez.get(metric)
        if check is None:
            assert result.count("k") >= 1
        else:
            assert check(result), f"{metric.kind} did not recover: {result['k']}"


# -- servers that misbehave with the response -------------------------------------------


def streaming_app(config: samplez.Config) -> Callable:
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            samplez.set(config, environ["PATH_INFO"], 1)
            yield b"ok"

        return body()

    return app


@pytest.mark.parametrize("make", [pytest.param(make_app, id="list-body"), pytest.param(streaming_app, id="streamed")])
def test_a_response_never_closed_swallows_no_later_set(samplez_on, make):
    # A server (or a test client) that forgets close(): that request's
    # samples are never joined, and its batch stays the thread's, inactive:
    # every later samplez.set outside a request is an event of its own,
    # and does not vanish into it.
    config = reservoir()
    body = wsgi_call(samplez.Middleware(make(config)), "/leaked")
    assert b"".join(body) == b"ok"  # iterated, never closed
    samplez.set(config, "outside", 1)
    samplez.flush()
    assert samplez.get(config).count("outside") == 1


def test_a_response_closed_from_another_thread_still_counts(samplez_on):
    config = reservoir()
    body = wsgi_call(samplez.Middleware(streaming_app(config)), "/elsewhere")
    assert b"".join(body) == b"ok"
    closer = threading.Thread(target=body.close)
    closer.start()
    closer.join()
    samplez.flush()
    assert samplez.get(config).count("/elsewhere") == 1


def test_every_kind_reads_and_renders_with_the_store_down(backend: Backend, fixed_clock):
    server = backend.spawn()
    store = backend.store(server, connect_timeout=0.2, timeout=0.2)
    samplez.configure(store=store, clock=fixed_clock, flush="request")
    metrics = every_kind()
    for metric, feed, _ in metrics:
        for i in range(10):
            samplez.set(metric, "k", feed(i))
    assert samplez.flush().dropped == 0
    server.kill()

    for metric, feed, _ in metrics:
        samplez.get(metric)  # answers (empty), never raises
        samplez.set(metric, "k", feed(1))
    summary = samplez.flush()
    assert summary.applied == 0 and summary.dropped == len(metrics) and summary.errors > 0
    dashboard = webtest.TestApp(
        samplez.Dashboard(sections=samplez.Section("Down", *[m for m, _, _ in metrics]), store=store),
        extra_environ=LOOPBACK,
    )
    assert "unreachable" in dashboard.get("/").text
    for metric, _, _ in metrics:
        for page in (f"/config/{metric.name}", f"/config/{metric.name}/key?key=k&format=json"):
            assert dashboard.get(page).status_int == 200
    assert dashboard.get("/health?format=json").status_int == 200


def test_first_flush_after_a_quick_restart_is_not_lost(backend: Backend, clock):
    # The pooled socket died with the old process; the new one never saw a
    # byte of it, so the flush retries once on a fresh socket instead of
    # failing and taking the node out of the ring.
    server = backend.spawn()
    samplez.configure(store=backend.store(server), clock=clock, flush="request")
    config = reservoir()
    samplez.set(config, "before", 1)
    assert samplez.flush().applied == 1  # leaves a pooled connection
    server.kill()
    backend.spawn(port=server.port)
    for _ in range(25):
        samplez.set(config, "after", 1)
    summary = samplez.flush()
    assert (summary.applied, summary.dropped, summary.errors) == (25, 0, 0)
    assert samplez.get(config).count("after") == 25


HANGING_EXIT_SCRIPT = """
import samplez
samplez.configure(store=samplez.MemcacheStore({address!r}, timeout=0.3), flush_interval=3600)
config = samplez.Config("exit_hang", period=3600, samples=100, by_value=True)
for i in range(100):
    samplez.set(config, "k", i)
print("done", flush=True)
"""


def test_exit_with_a_store_that_never_answers_is_bounded_and_quiet():
    hang = HangingServer()
    try:
        script = HANGING_EXIT_SCRIPT.format(address=f"127.0.0.1:{hang.port}")
        finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    finally:
        hang.close()
    assert finished.returncode == 0 and finished.stdout == "done\n"
    assert hang.received.is_set(), "the exit flush should have tried"
    assert "Traceback" not in finished.stderr  # logged as a warning, not a crash


def test_a_clock_that_fails_later_costs_samples_not_requests(samplez_on, clock, caplog):
    config = reservoir()
    app = webtest.TestApp(samplez.Middleware(make_app(config), request_metrics=False))
    assert app.get("/fine").status_int == 200

    def broken() -> float:
        raise OSError("clock source gone")

    dropped = engine.health["dropped"]
    engine.clock = broken  # configure() checks a clock once; this one fails afterwards
    try:
        assert app.get("/during").text == "ok"
    finally:
        engine.clock = clock
    samplez.flush()
    assert engine.health["dropped"] == dropped + 1
    assert "clock failed" in caplog.text
    assert samplez.get(config).keys() == ["/fine"]


# -- answers that arrive a few bytes at a time ----------------------------------


def test_answers_split_across_many_receives_are_read_whole(memcached):
    # memcached's answers come back 7 bytes at a time: every reply line the
    # client reads is split across many receives.
    proxy = Proxy(memcached.port, answer_piece=7, answer_pause=0.0002)
    try:
        store = samplez.MemcacheStore(f"127.0.0.1:{proxy.port}", timeout=10)
        batch = [ops.set_(f"drip:{i}", f"v{i}".encode(), 60) for i in range(300)]
        batch += [ops.add("drip:0", b"x", 60), ops.add("drip:n", b"0", 60), ops.incr("drip:n", 5)]
        batch += [ops.get(f"drip:{i}") for i in range(0, 300, 7)] + [ops.touch("drip:1", 60), ops.delete("drip:2")]
        results, trips = store.execute(batch)
        assert trips == 1
        assert results[:300] == [True] * 300
        assert results[300:303] == [False, True, 5]
        assert results[303:-2] == [f"v{i}".encode() for i in range(0, 300, 7)]
        assert results[-2:] == [True, True]
    finally:
        proxy.close()

"""What RedisStore adds to the contract of tests/test_store.py: counters
that outlive a restart of a persisting Redis, a TTL on every key, the same
TTL meaning the same time as on memcached, Redis URLs, the missing extra,
and the round trips counted on the wire."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest

import samplez
from samplez.store import base as ops
from tests.conftest import A_VALUE, Clock, every_counter, unique_name
from tests.processes import environment


def calendar_and_stepped() -> tuple[samplez.CalendarCounter, samplez.SteppedCounter]:
    return samplez.CalendarCounter(unique_name("signups")), samplez.SteppedCounter(unique_name("logins"), step=3600)


def readings(calendar: samplez.CalendarCounter, stepped: samplez.SteppedCounter) -> tuple[Any, ...]:
    cal, step = samplez.get(calendar)["signup"], samplez.get(stepped)["login"]
    return cal.hour, cal.day, cal.month, cal.year, step.value, step.history


@pytest.mark.parametrize(
    "appendonly, kept",
    [
        pytest.param(True, True, id="appendonly-counts-survive"),
        # The contrast that shows the restart is real: a cache forgets.
        pytest.param(False, False, id="no-persistence-forgets"),
    ],
)
def test_calendar_and_stepped_counters_survive_a_restart(spawn_redis, tmp_path, appendonly, kept):
    clock = Clock()
    server = spawn_redis(appendonly=appendonly, directory=str(tmp_path))
    samplez.configure(store=samplez.RedisStore(server.url), clock=clock, flush="request")
    calendar, stepped = calendar_and_stepped()
    for _ in range(3):  # three steps of the stepped counter, three hours of the calendar
        for _ in range(40):
            samplez.set(calendar, "signup", 1)
            samplez.set(stepped, "login", 2)
        assert samplez.flush().dropped == 0
        clock.advance(3600)
    clock.advance(-3600)
    written = readings(calendar, stepped)
    assert written == (40, 120, 120, 120, 80, [(written[5][0][0], 80), (written[5][1][0], 80)])

    server.stop()  # SIGTERM: a clean shutdown, as on a host's reboot
    restarted = spawn_redis(port=server.port, appendonly=appendonly, directory=str(tmp_path))
    samplez.configure(store=samplez.RedisStore(restarted.url), clock=clock, flush="request")
    if kept:
        assert readings(calendar, stepped) == written
    else:
        assert readings(calendar, stepped) == (0, 0, 0, 0, 0, [])


def every_kind() -> list[tuple[samplez.Metric, Any]]:
    reservoir = samplez.Config(unique_name("res"), period=600, samples=100, by_value=True)
    return [(reservoir, 3), *((counter, A_VALUE[counter.kind]) for counter in every_counter())]


def test_every_key_a_flush_writes_expires(redis_server, clock):
    samplez.configure(store=samplez.RedisStore(redis_server.url), clock=clock, flush="request")
    for metric, value in every_kind():
        for i in range(20):
            samplez.set(metric, f"key{i % 3}", value)
    assert samplez.flush().dropped == 0
    client = redis_server.client()
    ttls = {key.decode(): client.ttl(key) for key in client.scan_iter(count=1000)}
    assert len(ttls) > 50
    assert {key: ttl for key, ttl in ttls.items() if ttl <= 0} == {}


@pytest.mark.parametrize(
    "ttl",
    [
        pytest.param(60, id="a-minute"),
        pytest.param(30 * 24 * 3600, id="thirty-days"),
        pytest.param(40 * 24 * 3600, id="forty-days-still-relative"),
        pytest.param(5 * 365 * 24 * 3600, id="five-years"),
    ],
)
def test_a_ttl_means_the_same_seconds_from_now_at_any_length(redis_server, ttl):
    # memcached reads an expiry past 30 days as a UNIX time, and the
    # memcache client sends one; Redis reads every TTL as seconds from now.
    store = samplez.RedisStore(redis_server.url)
    results, _ = store.execute([ops.set_("t:s", b"v", ttl), ops.add("t:a", b"v", ttl), ops.touch("t:s", ttl)])
    assert results == [True, True, True]
    client = redis_server.client()
    assert ttl - 5 <= client.ttl("t:s") <= ttl and ttl - 5 <= client.ttl("t:a") <= ttl


def test_a_ttl_of_zero_never_expires_as_on_memcached(redis_server):
    store = samplez.RedisStore(redis_server.url)
    results, _ = store.execute([ops.set_("t:z", b"v", 0), ops.set_("t:y", b"v", 60), ops.touch("t:y", 0)])
    assert results == [True, True, True]
    client = redis_server.client()
    assert client.ttl("t:z") == -1 and client.ttl("t:y") == -1


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per request redis-py writes to a socket: a pipeline is
    one write (one round trip to one server), whatever it holds."""
    import redis.connection

    sent: list[int] = []
    send = redis.connection.Connection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(1)
        send(self, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counted)
    return sent


def test_a_flush_of_every_kind_is_at_most_three_pipelines_on_the_wire(redis_server, clock, sends):
    store = samplez.RedisStore(redis_server.url)
    samplez.configure(store=store, clock=clock, flush="request", max_pending=1_000_000, max_pending_bytes=2**30)
    metrics = every_kind() + [(samplez.Config(unique_name("res"), period=600, samples=500, by_value=True), 1)] * 10
    store.execute([ops.get("t:warm")])  # the connection's handshake is not a flush's round trip
    sends.clear()
    events = 0
    for i in range(1000):
        for metric, value in metrics:
            samplez.set(metric, f"key{i % 5}", value)
            events += 1
    summary = samplez.flush()
    assert summary.applied == events and summary.errors == 0
    assert 2 <= summary.round_trips <= 3
    assert len(sends) == summary.round_trips  # the figure matches the wire


@pytest.mark.parametrize(
    "urls",
    [
        pytest.param("", id="empty"),
        pytest.param([], id="empty-list"),
        pytest.param("127.0.0.1:6379", id="no-scheme"),
        pytest.param("http://127.0.0.1:6379/0", id="wrong-scheme"),
        pytest.param("redis://127.0.0.1:notaport/0", id="bad-port"),
        pytest.param("redis://127.0.0.1:70000/0", id="port-out-of-range"),
        pytest.param("redis://127.0.0.1:6379/zero", id="bad-db"),
        pytest.param("redis:///0", id="no-host"),
        pytest.param("unix://", id="unix-without-path"),
        pytest.param([None], id="none"),
    ],
)
def test_bad_urls_raise_config_error(urls):
    with pytest.raises(samplez.ConfigError):
        samplez.RedisStore(urls)


@pytest.mark.parametrize(
    "urls, names",
    [
        pytest.param("redis://127.0.0.1", ["127.0.0.1:6379/0"], id="defaults"),
        pytest.param("redis://:secret@10.0.0.1:7000/3", ["10.0.0.1:7000/3"], id="password-never-shown"),
        pytest.param("redis://a:6379/0, redis://b:6379/0", ["a:6379/0", "b:6379/0"], id="comma-separated"),
        pytest.param(["rediss://a:6380/1"], ["a:6380/1"], id="tls"),
        pytest.param("unix:///run/redis.sock?db=2", ["unix:/run/redis.sock"], id="unix-socket"),
    ],
)
def test_urls_name_their_servers_without_credentials(urls, names):
    store = samplez.RedisStore(urls)
    assert store.servers == names and "secret" not in store.describe()


NO_REDIS_PY = """
import sys
sys.modules["redis"] = None  # as if redis-py were not installed
import samplez
samplez.configure(store=samplez.MemoryStore())  # samplez itself needs no redis-py
try:
    samplez.RedisStore("redis://127.0.0.1:6379/0")
except ImportError as exc:
    print(exc)
"""


def test_without_redis_py_the_error_names_the_extra():
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(NO_REDIS_PY)], env=environment(), capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert "pip install 'samplez[redis]'" in run.stdout

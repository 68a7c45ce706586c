"""One contract, three stores: MemoryStore and RedisStore must behave as
memcached does; a cluster of memcached or of Redis servers loses and slows
nodes by the same rules."""

from __future__ import annotations

import socket
from typing import Iterator

import pytest
from pymemcache.client.rendezvous import RendezvousHash

import samplez
from samplez.store import base as ops
from samplez.store.base import REFUSED, UNREACHABLE
from samplez.store.cluster import FAILURES_BEFORE_DEAD
from tests.conftest import Backend
from tests.proxy import Proxy


def run(store: samplez.Store, *batch: ops.Op) -> list:
    results, trips = store.execute(list(batch))
    assert trips == 1
    return results


def test_get_missing_then_set_then_get(store):
    assert run(store, ops.get("t:a")) == [None]
    assert run(store, ops.set_("t:a", b"hello", 60), ops.get("t:a")) == [True, b"hello"]


def test_add_refuses_an_existing_key(store):
    assert run(store, ops.add("t:b", b"1", 60), ops.add("t:b", b"2", 60), ops.get("t:b")) == [True, False, b"1"]


def test_add_then_incr_in_one_round_trip_is_race_free(store):
    results = run(store, ops.add("t:c", b"0", 60), ops.incr("t:c", 5), ops.add("t:c", b"0", 60), ops.incr("t:c", 7))
    assert results == [True, 5, False, 12]


def test_incr_of_a_missing_key_is_none(store):
    assert run(store, ops.incr("t:missing", 1)) == [None]


def test_incr_of_garbage_is_refused(store):
    assert run(store, ops.set_("t:g", b"\x00junk", 60), ops.incr("t:g", 1)) == [True, REFUSED]


def test_cas_stores_only_with_the_current_token(store):
    run(store, ops.set_("t:d", b"one", 60))
    [(value, token)] = run(store, ops.gets("t:d"))
    assert value == b"one"
    assert run(store, ops.cas("t:d", b"two", token, 60)) == [True]
    assert run(store, ops.cas("t:d", b"three", token, 60)) == [False]
    assert run(store, ops.get("t:d")) == [b"two"]


def test_cas_of_a_missing_key_fails(store):
    assert run(store, ops.cas("t:nokey", b"x", 12345, 60)) == [False]


def test_many_gets_in_one_round_trip(store):
    run(store, *[ops.set_(f"t:m{i}", str(i).encode(), 60) for i in range(0, 250, 2)])
    results = run(store, *[ops.get(f"t:m{i}") for i in range(250)])
    assert results == [str(i).encode() if i % 2 == 0 else None for i in range(250)]


def test_touch_and_delete(store):
    run(store, ops.set_("t:e", b"x", 60))
    assert run(store, ops.touch("t:e", 120), ops.delete("t:e"), ops.delete("t:e"), ops.touch("t:e", 5)) == [
        True,
        True,
        False,
        False,
    ]


def test_thousands_of_ops_are_one_round_trip_answered_in_order(store):
    # Past RedisStore's 1,000 ops per script call, and memcached's 100 keys
    # per multi-get: still one round trip, every answer in its place.
    batch = [op for i in range(2500) for op in (ops.add(f"t:n{i}", b"0", 60), ops.incr(f"t:n{i}", i + 1))]
    assert run(store, *batch) == [answer for i in range(2500) for answer in (True, i + 1)]
    assert run(store, *[ops.get(f"t:n{i}") for i in range(2500)]) == [str(i + 1).encode() for i in range(2500)]


def test_binary_values_survive(store):
    value = bytes(range(256)) * 40 + b"\r\nEND\r\n"
    assert run(store, ops.set_("t:bin", value, 60), ops.get("t:bin")) == [True, value]


def test_a_value_over_one_megabyte_is_refused(store):
    results = run(store, ops.set_("t:big", b"x" * (1024 * 1024 + 1), 60), ops.get("t:big"))
    assert results[0] is REFUSED
    assert results[1] is None


def test_expiry_over_thirty_days_is_sent_as_absolute_time(store):
    # Were 40 days sent as a relative TTL, memcached would read it as a
    # moment in 1970 and drop the value at once.
    assert run(store, ops.set_("t:long", b"kept", 40 * 24 * 3600), ops.get("t:long")) == [True, b"kept"]


def test_memory_store_expires_keys():
    now = [1000.0]
    store = samplez.MemoryStore(clock=lambda: now[0])
    run(store, ops.set_("t:x", b"1", 10))
    now[0] += 9
    assert run(store, ops.get("t:x")) == [b"1"]
    now[0] += 2
    assert run(store, ops.get("t:x")) == [None]


def test_an_unreachable_server_fails_every_op_without_raising(backend: Backend):
    from samplez.testing import free_port

    store = backend.store(free_port(), connect_timeout=0.2)
    results, trips = store.execute([ops.get("t:a"), ops.incr("t:b", 1)])
    assert results == [UNREACHABLE, UNREACHABLE]
    assert trips == 1
    assert "down" in next(iter(store.health().values()))
    # Marked dead: the next call does not even try.
    assert store.execute([ops.get("t:a")]) == ([UNREACHABLE], 0)


def test_a_cluster_spreads_keys_and_reads_them_back(backend: Backend):
    store = backend.store([backend.spawn() for _ in range(3)])
    keys = [f"t:k{i}" for i in range(300)]
    results, trips = store.execute([ops.set_(k, k.encode(), 60) for k in keys])
    assert all(results) and trips == 3
    assert store.get_many(keys) == {k: k.encode() for k in keys}


# -- a cluster node that is slow, or down ------------------------------------------


def owners(servers: list[str], keys: list[str]) -> dict[str, list[str]]:
    """The keys each server holds while every server is in the ring."""
    ring = RendezvousHash(servers)
    owned: dict[str, list[str]] = {server: [] for server in servers}
    for key in keys:
        owned[ring.get_node(key)].append(key)
    return owned


def write_round(store: samplez.Store, keys: list[str]) -> list[str]:
    """Set every key once; return the keys whose set failed."""
    results, _ = store.execute([ops.set_(key, b"v", 60) for key in keys])
    return [key for key, result in zip(keys, results) if result is not True]


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    """A port whose accept queue is full, so that a connect to it times
    out, as to a machine too busy to accept."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    held = socket.create_connection(("127.0.0.1", port))  # fills the queue
    try:
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                pytest.skip("this system accepts connections past a full queue")
        yield port
    finally:
        held.close()
        listener.close()


def test_a_node_that_answers_late_keeps_its_keys(backend: Backend):
    # A busy machine answers late: moving the node's keys to the others
    # would split their data between two nodes, and land it where a
    # reader of the whole cluster will not look once the node answers.
    nodes = [backend.spawn() for _ in range(3)]
    proxy = Proxy(nodes[1].port)
    try:
        store = backend.store([nodes[0], proxy.port, nodes[2]], connect_timeout=0.5, timeout=0.5, dead_timeout=60)
        servers = store.servers
        keys = [f"t:k{i}" for i in range(90)]
        owned = owners(servers, keys)
        proxy.answer_delay = 2.0
        for _ in range(FAILURES_BEFORE_DEAD - 1):
            assert write_round(store, keys) == owned[servers[1]]
        assert store.health()[servers[1]].startswith("failing: ")
        assert sorted(nodes[0].keys()) == sorted(owned[servers[0]])
        assert sorted(nodes[2].keys()) == sorted(owned[servers[2]])

        proxy.answer_delay = 0.0
        assert write_round(store, keys) == []
        assert store.health()[servers[1]] == "up"
        assert sorted(nodes[1].keys()) == sorted(owned[servers[1]])
    finally:
        proxy.close()


def test_a_node_that_never_accepts_leaves_the_ring_after_failing_in_a_row(backend: Backend, unaccepting_port):
    nodes = [backend.spawn() for _ in range(2)]
    store = backend.store([nodes[0], unaccepting_port, nodes[1]], connect_timeout=0.5, timeout=0.5, dead_timeout=60)
    servers = store.servers
    keys = [f"t:k{i}" for i in range(90)]
    owned = owners(servers, keys)
    for _ in range(FAILURES_BEFORE_DEAD - 1):  # a slow connect: the keys stay
        assert write_round(store, keys) == owned[servers[1]]
        assert sorted(nodes[0].keys() + nodes[1].keys()) == sorted(owned[servers[0]] + owned[servers[2]])
    assert write_round(store, keys) == owned[servers[1]]  # once too many: out of the ring
    assert store.health()[servers[1]].startswith("down: ")
    assert write_round(store, keys) == []
    assert sorted(nodes[0].keys() + nodes[1].keys()) == sorted(keys)


def test_a_node_that_refuses_connections_leaves_the_ring_at_once(backend: Backend):
    nodes = [backend.spawn() for _ in range(3)]
    store = backend.store(nodes, dead_timeout=60)
    servers = store.servers
    keys = [f"t:k{i}" for i in range(90)]
    owned = owners(servers, keys)
    nodes[1].kill()
    assert write_round(store, keys) == owned[servers[1]]
    assert store.health()[servers[1]].startswith("down: ")
    assert write_round(store, keys) == []  # its keys went to the live nodes
    assert sorted(nodes[0].keys() + nodes[2].keys()) == sorted(keys)


@pytest.mark.parametrize(
    "servers",
    [
        pytest.param("", id="empty"),
        pytest.param([], id="empty-list"),
        pytest.param("localhost:notaport", id="bad-port"),
        pytest.param("localhost:70000", id="port-out-of-range"),
        pytest.param([None], id="none"),
    ],
)
def test_bad_server_specs_raise_config_error(servers):
    with pytest.raises(samplez.ConfigError):
        samplez.MemcacheStore(servers)

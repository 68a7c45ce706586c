"""memcached, one server or a cluster, behind the :class:`Store` interface."""

from __future__ import annotations

import logging
import os
import threading
import time
from operator import itemgetter
from typing import Any, Iterable, Sequence

from pymemcache.client.rendezvous import RendezvousHash

from ..errors import ConfigError, StoreError
from .base import REFUSED, UNREACHABLE, Op, Store, all_keys_valid, valid_key
from .wire import Connection, ServerDown, StaleConnection

__all__ = ["MemcacheStore"]

log = logging.getLogger("samplez.store")


def _parse_server(server: str) -> tuple[str, int]:
    if not isinstance(server, str) or not server.strip():
        raise ConfigError(f"memcache server must be 'host:port', got {server!r}")
    host, sep, port = server.strip().rpartition(":")
    if not sep:
        host, port = port, "11211"
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"memcache server must be 'host:port', got {server!r}")
    return host, int(port)


def _seconds(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_key_of = itemgetter(1)  # an Op's key, read in C

#: Failed round trips in a row after which a node that still accepts
#: connections (it times out, or drops them) is taken out of the ring.
FAILURES_BEFORE_DEAD = 3


class _Node:
    """One server: a small pool of idle connections and its health."""

    def __init__(self, name: str, host: str, port: int, connect_timeout: float, timeout: float) -> None:
        self.name = name
        self.host, self.port = host, port
        self.connect_timeout, self.timeout = connect_timeout, timeout
        self.idle: list[Connection] = []
        self.lock = threading.Lock()
        self.dead_until = 0.0
        self.failures = 0  # failed round trips in a row
        self.last_error = ""

    def execute(self, ops: Sequence[Op]) -> list[Any]:
        with self.lock:
            conn = self.idle.pop() if self.idle else None
        if conn is None:
            conn = Connection(self.host, self.port, self.connect_timeout, self.timeout)
        try:
            results = conn.execute(ops)
        except StaleConnection:
            # Idle sockets of a restarted server all die alike: drop them
            # and try once on a new connection.
            self.close()
            conn = Connection(self.host, self.port, self.connect_timeout, self.timeout)
            results = conn.execute(ops)
        with self.lock:
            if len(self.idle) < 8:
                self.idle.append(conn)
                conn = None
        if conn is not None:
            conn.close()
        return results

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()


def _health(node: _Node, now: float) -> str:
    if node.dead_until > now:
        return f"down: {node.last_error}"
    return f"failing: {node.last_error}" if node.failures else "up"


class MemcacheStore(Store):
    """memcached through a pipelined text-protocol client.

    One server, or a list of them for a cluster: keys are spread by
    rendezvous (consistent) hashing as pymemcache's ``HashClient`` does. A
    node that is down (it refuses connections) is taken out of the ring for
    ``dead_timeout`` seconds (its keys go to the other nodes meanwhile),
    then retried. A node that times out may only be slow, as on a busy
    machine: it keeps its keys, and the ops sent to it fail, until it has
    failed ``FAILURES_BEFORE_DEAD`` round trips in a row; moving its keys
    would split their data between two nodes.

    :param servers: ``'host:port'``, a comma-separated string of them, or a
        list.
    :param connect_timeout: seconds to wait for a connection.
    :param timeout: seconds to wait for any answer; a server that accepts
        and never answers costs the flusher at most this, never a request.
    :param dead_timeout: seconds a node that is down stays out of the ring.

    >>> store = MemcacheStore(['10.0.0.1:11211', '10.0.0.2:11211'])
    """

    kind = "memcache"
    shared = True

    def __init__(
        self,
        servers: str | Iterable[str] = "127.0.0.1:11211",
        connect_timeout: float = 0.25,
        timeout: float = 0.5,
        dead_timeout: float = 0.5,
    ) -> None:
        if isinstance(servers, str):
            servers = [s for s in servers.split(",") if s.strip()]
        names = list(servers)
        if not names:
            raise ConfigError("servers must name at least one memcached, got none")
        for value, label in ((connect_timeout, "connect_timeout"), (timeout, "timeout")):
            if not _seconds(value) or not 0 < value <= 60:
                raise ConfigError(f"{label} must be a number of seconds in (0, 60], got {value!r}")
        if not _seconds(dead_timeout) or not 0 <= dead_timeout <= 3600:
            raise ConfigError(f"dead_timeout must be a number of seconds in [0, 3600], got {dead_timeout!r}")
        self.dead_timeout = float(dead_timeout)
        self._nodes: dict[str, _Node] = {}
        for server in names:
            host, port = _parse_server(server)
            name = f"{host}:{port}"
            self._nodes[name] = _Node(name, host, port, connect_timeout, timeout)
        self._ring = RendezvousHash(list(self._nodes))
        self._ring_lock = threading.Lock()
        self._pid = os.getpid()

    @property
    def servers(self) -> list[str]:
        return list(self._nodes)

    def describe(self) -> str:
        return f"memcache {', '.join(self._nodes)}"

    def health(self) -> dict[str, str]:
        """``{server: 'up' | 'failing: <last error>' | 'down: <last error>'}``,
        as the flusher last saw: a failing node keeps its keys, a down one is
        out of the ring."""
        now = time.monotonic()
        return {name: _health(node, now) for name, node in self._nodes.items()}

    def reset_after_fork(self) -> None:
        # The parent's sockets must never carry the child's commands.
        for node in self._nodes.values():
            node.idle = []
            node.lock = threading.Lock()
        self._ring_lock = threading.Lock()
        self._pid = os.getpid()

    def close(self) -> None:
        for node in self._nodes.values():
            node.close()

    def _revive(self, now: float) -> None:
        for name, node in self._nodes.items():
            if node.dead_until and node.dead_until <= now:
                node.dead_until = 0.0
                self._ring.add_node(name)

    def _failed(self, node: _Node, error: StoreError) -> None:
        """Count a failed round trip to ``node``; take it out of the ring
        when it is down or has failed too often in a row."""
        with self._ring_lock:
            node.failures += 1
            node.last_error = str(error)
            if not isinstance(error, ServerDown) and node.failures < FAILURES_BEFORE_DEAD:
                if node.failures == 1:
                    log.warning("samplez: %s; its keys stay on it, retried at the next flush", error)
                return
            if not node.dead_until:
                if len(self._nodes) > 1:
                    self._ring.remove_node(node.name)
                log.warning("samplez: %s; retrying in %.1fs", error, self.dead_timeout)
            node.dead_until = time.monotonic() + self.dead_timeout

    def execute(self, ops: Sequence[Op]) -> tuple[list[Any], int]:
        if not ops:
            return [], 0
        keys = list(map(_key_of, ops))
        bad = [] if all_keys_valid(keys) else [i for i, key in enumerate(keys) if valid_key(key) is None]
        if bad:
            # A key with a space or a newline would be read by memcached as
            # more protocol: refuse it here instead of sending it.
            log.error("samplez: refused %d malformed memcache keys, e.g. %r", len(bad), ops[bad[0]].key[:80])
            skip = set(bad)
            good = [i for i in range(len(ops)) if i not in skip]
            answers, trips = self.execute([ops[i] for i in good])
            results: list[Any] = [REFUSED] * len(ops)
            for i, answer in zip(good, answers):
                results[i] = answer
            return results, trips
        if self._pid != os.getpid():
            self.reset_after_fork()
        now = time.monotonic()
        groups: dict[str, list[int]] = {}
        with self._ring_lock:
            self._revive(now)
            if len(self._nodes) == 1:
                groups = {next(iter(self._nodes)): list(range(len(ops)))}
            else:
                for i, op in enumerate(ops):
                    groups.setdefault(self._ring.get_node(op.key), []).append(i)
        results = [UNREACHABLE] * len(ops)
        trips = 0
        for name, indices in groups.items():
            node = self._nodes.get(name)
            if node is None or node.dead_until > now:
                continue
            trips += 1
            whole = len(indices) == len(ops)  # one server (or one asked): no regrouping
            try:
                answers = node.execute(ops if whole else [ops[i] for i in indices])
            except StoreError as exc:
                self._failed(node, exc)
                continue
            node.failures = 0
            if whole:
                return answers, trips
            for i, answer in zip(indices, answers):
                results[i] = answer
        return results, trips

"""memcached, one server or a cluster, behind the :class:`Store` interface."""

from __future__ import annotations

import threading
from typing import Any, Iterable, Sequence

from ..errors import ConfigError
from .base import Op
from .cluster import FAILURES_BEFORE_DEAD, ClusterStore, Node, check_timeouts, listed
from .wire import Connection, StaleConnection

__all__ = ["FAILURES_BEFORE_DEAD", "MemcacheStore"]


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


class _Node(Node):
    """One memcached: a small pool of idle connections."""

    def __init__(self, name: str, host: str, port: int, connect_timeout: float, timeout: float) -> None:
        super().__init__(name)
        self.host, self.port = host, port
        self.connect_timeout, self.timeout = connect_timeout, timeout
        self.idle: list[Connection] = []
        self.lock = threading.Lock()

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

    def reset_after_fork(self) -> None:
        self.idle = []
        self.lock = threading.Lock()


class MemcacheStore(ClusterStore):
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
        names = listed(servers, "servers", "memcached")
        check_timeouts(connect_timeout, timeout, dead_timeout)
        nodes = []
        for server in names:
            host, port = _parse_server(server)
            nodes.append(_Node(f"{host}:{port}", host, port, connect_timeout, timeout))
        super().__init__(nodes, dead_timeout)

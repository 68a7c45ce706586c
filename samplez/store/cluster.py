"""Servers on a hash ring, with the rules for a node that is slow or down.

:class:`MemcacheStore` and :class:`RedisStore` differ only in how they
talk to one server (a :class:`Node`); what to do with a list of them is
written once here. Keys are spread by rendezvous (consistent) hashing as
pymemcache's ``HashClient`` does, so adding or losing a node moves only
that node's keys.

A node that is down (it refuses connections: :class:`ServerDown`) is taken
out of the ring for ``dead_timeout`` seconds, its keys going to the other
nodes meanwhile, then retried. A node that times out may only be slow, as
on a busy machine: it keeps its keys, and the ops sent to it fail, until
it has failed :data:`FAILURES_BEFORE_DEAD` round trips in a row; moving
its keys would split their data between two nodes.

Concurrency: ``execute`` runs on the flusher thread and on readers'
threads; the ring lock is held only to pick nodes and to count a failure,
never across a network call.
"""

from __future__ import annotations

import abc
import errno
import logging
import os
import threading
import time
from operator import itemgetter
from typing import Any, Iterable, Sequence

from pymemcache.client.rendezvous import RendezvousHash

from ..errors import ConfigError, StoreError
from .base import REFUSED, UNREACHABLE, Op, Store, all_keys_valid, valid_key

__all__ = ["DOWN_ERRNOS", "FAILURES_BEFORE_DEAD", "ClusterStore", "Node", "ServerDown", "check_timeouts", "listed"]

log = logging.getLogger("samplez.store")

#: Failed round trips in a row after which a node that still accepts
#: connections (it times out, or drops them) is taken out of the ring.
FAILURES_BEFORE_DEAD = 3

_key_of = itemgetter(1)  # an Op's key, read in C


class ServerDown(StoreError):
    """Raised when the server's host refused the connection (nothing
    listens on the port) or the network has no route to it: the server is
    down. A timeout is not this: a busy machine answers late too."""


#: The errors that say a server is down rather than slow (ENOENT: no one
#: listens on a Unix socket path).
DOWN_ERRNOS = frozenset((errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENOENT))


def _seconds(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def listed(servers: str | Iterable[str], label: str, kind: str) -> list[str]:
    """The servers named by ``servers`` (a comma-separated string or an
    iterable); :class:`ConfigError` when it names none."""
    if isinstance(servers, str):
        servers = [s for s in servers.split(",") if s.strip()]
    names = list(servers)
    if not names:
        raise ConfigError(f"{label} must name at least one {kind}, got none")
    return names


def check_timeouts(connect_timeout: float, timeout: float, dead_timeout: float) -> None:
    """Raise :class:`ConfigError` unless the three are sensible seconds."""
    for value, label in ((connect_timeout, "connect_timeout"), (timeout, "timeout")):
        if not _seconds(value) or not 0 < value <= 60:
            raise ConfigError(f"{label} must be a number of seconds in (0, 60], got {value!r}")
    if not _seconds(dead_timeout) or not 0 <= dead_timeout <= 3600:
        raise ConfigError(f"dead_timeout must be a number of seconds in [0, 3600], got {dead_timeout!r}")


class Node(abc.ABC):
    """One server and its health, as the ring sees it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dead_until = 0.0
        self.failures = 0  # failed round trips in a row
        self.last_error = ""

    @abc.abstractmethod
    def execute(self, ops: Sequence[Op]) -> list[Any]:
        """One round trip: every op's result, in order; raise
        :class:`StoreError` (:class:`ServerDown` when the server is down)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close idle connections."""

    @abc.abstractmethod
    def reset_after_fork(self) -> None:
        """Forget the parent's connections without closing them."""

    def health(self, now: float) -> str:
        if self.dead_until > now:
            return f"down: {self.last_error}"
        return f"failing: {self.last_error}" if self.failures else "up"


class ClusterStore(Store):
    """A :class:`Store` over one or more :class:`Node`, one round trip per
    node asked (see the module docstring for the ring's rules)."""

    def __init__(self, nodes: Sequence[Node], dead_timeout: float) -> None:
        self.dead_timeout = float(dead_timeout)
        self._nodes: dict[str, Node] = {node.name: node for node in nodes}
        self._ring = RendezvousHash(list(self._nodes))
        self._ring_lock = threading.Lock()
        self._pid = os.getpid()

    @property
    def servers(self) -> list[str]:
        return list(self._nodes)

    def describe(self) -> str:
        return f"{self.kind} {', '.join(self._nodes)}"

    def health(self) -> dict[str, str]:
        """``{server: 'up' | 'failing: <last error>' | 'down: <last error>'}``,
        as the flusher last saw: a failing node keeps its keys, a down one is
        out of the ring."""
        now = time.monotonic()
        return {name: node.health(now) for name, node in self._nodes.items()}

    def reset_after_fork(self) -> None:
        # The parent's sockets must never carry the child's commands.
        for node in self._nodes.values():
            node.reset_after_fork()
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

    def _failed(self, node: Node, error: StoreError) -> None:
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
            # more protocol; Redis is held to the same rule, so that a key
            # one store refuses is refused by all.
            log.error("samplez: refused %d malformed store keys, e.g. %r", len(bad), ops[bad[0]].key[:80])
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

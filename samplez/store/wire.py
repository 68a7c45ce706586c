"""One pipelined connection to one memcached server (text protocol).

pymemcache sends one command per round trip except for multi-key get and
set; the flush needs ``add``, ``incr``, ``gets``, ``cas`` and ``set`` mixed in
one write, so this module writes the whole list of ops at once and then reads
the answers in order. Consecutive ``get``/``gets`` ops become one multi-key
command.
"""

from __future__ import annotations

import codecs
import socket
import time
from typing import Any, Sequence

from ..errors import StoreError
from .base import REFUSED, RELATIVE_TTL_LIMIT, Op
from .cluster import DOWN_ERRNOS, ServerDown

__all__ = ["Connection", "ServerDown", "StaleConnection"]

_GET_CHUNK = 100
_STORE_REPLIES = {b"STORED": True, b"NOT_STORED": False, b"EXISTS": False, b"NOT_FOUND": False}
_STORES = frozenset(("add", "set", "cas"))
_GETS = frozenset(("get", "gets"))

# socket.getaddrinfo() encodes a host name with the "idna" codec, whose
# module Python imports at its first use: import it now rather than on the
# flusher thread at its first connect, where a fork() could catch the
# import's lock held and leave the child's connect waiting for ever.
codecs.lookup("idna")


class StaleConnection(StoreError):
    """Raised when a reused socket turns out closed before a byte of answer
    came back (the server restarted, or dropped an idle client): the server
    never read the commands, so they are safe to send again on a new one."""


class Connection:
    """A socket to ``host:port`` with bounded connect and read timeouts."""

    def __init__(self, host: str, port: int, connect_timeout: float, timeout: float) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._answered = False
        self._buf = b""
        self._pos = 0

    def __del__(self) -> None:
        # A pooled connection dropped with its store closes quietly.
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._buf, self._pos = b"", 0

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.timeout)
        return sock

    def execute(self, ops: Sequence[Op]) -> list[Any]:
        """Send every op in one write and read every answer; raise
        :class:`StoreError` (and drop the socket) on any transport fault,
        :class:`ServerDown` when the server is down."""
        payload, plan = _encode(ops)
        reused, self._answered = self._sock is not None, False
        try:
            if self._sock is None:
                self._sock = self._connect()
            self._sock.sendall(payload)
            return self._read_answers(ops, plan)
        except (OSError, ValueError, IndexError) as exc:
            self.close()
            stale = reused and not self._answered and isinstance(exc, ConnectionError)
            down = isinstance(exc, OSError) and exc.errno in DOWN_ERRNOS
            kind = StaleConnection if stale else ServerDown if down else StoreError
            raise kind(f"memcached {self.host}:{self.port}: {exc or type(exc).__name__}") from exc

    # -- reading ---------------------------------------------------------

    def _fill(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(262144)
        if not chunk:
            raise ConnectionError("connection closed by server")
        self._answered = True
        self._buf = self._buf[self._pos :] + chunk
        self._pos = 0

    def _line(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n", self._pos)
            if end >= 0:
                line = self._buf[self._pos : end]
                self._pos = end + 2
                return line
            self._fill()

    def _lines(self, count: int) -> list[bytes]:
        """The next ``count`` lines, split in C rather than found one by one."""
        while True:
            lines = self._buf[self._pos :].split(b"\r\n", count)
            if len(lines) > count:
                self._buf, self._pos = lines.pop(), 0
                return lines
            self._fill()

    def _data(self, size: int) -> bytes:
        while len(self._buf) - self._pos < size + 2:
            self._fill()
        data = self._buf[self._pos : self._pos + size]
        self._pos += size + 2
        return data

    def _read_values(self) -> dict[bytes, tuple[bytes, int]]:
        found: dict[bytes, tuple[bytes, int]] = {}
        while True:
            line = self._line()
            if line == b"END":
                return found
            parts = line.split()
            if not parts or parts[0] != b"VALUE":
                raise ValueError(f"unexpected reply {line[:60]!r}")
            token = int(parts[4]) if len(parts) > 4 else 0
            found[parts[1]] = (self._data(int(parts[3])), token)

    def _read_answers(self, ops: Sequence[Op], plan: list[tuple[int, int, str]]) -> list[Any]:
        results: list[Any] = [None] * len(ops)
        step, steps = 0, len(plan)
        while step < steps:
            start, stop, cmd = plan[step]
            if cmd in _GETS:
                found: dict[bytes, tuple[bytes, int]] = {}
                for _ in range(0, stop - start, _GET_CHUNK):
                    found.update(self._read_values())
                for i in range(start, stop):
                    hit = found.get(ops[i].key.encode())
                    if hit is None:
                        results[i] = None
                    else:
                        results[i] = hit[0] if cmd == "get" else hit
                step += 1
                continue
            # A run of commands answered by one line each (a flush's slot
            # writes): read all their lines at once.
            run = step + 1
            while run < steps and plan[run][2] not in _GETS:
                run += 1
            for (start, _, cmd), line in zip(plan[step:run], self._lines(run - step)):
                if cmd in _STORES:
                    results[start] = _STORE_REPLIES.get(line, REFUSED)
                else:
                    results[start] = _one_line_answer(cmd, line)
            step = run
        return results


def _one_line_answer(cmd: str, line: bytes) -> Any:
    """The answer to a command other than a store or a get."""
    if cmd == "incr":
        return None if line == b"NOT_FOUND" else _number_or_refused(line)
    if cmd == "touch":
        return True if line == b"TOUCHED" else (False if line == b"NOT_FOUND" else REFUSED)
    return True if line == b"DELETED" else (False if line == b"NOT_FOUND" else REFUSED)


def _number_or_refused(line: bytes) -> Any:
    return int(line) if line.isdigit() else REFUSED


#: memcached keeps expiry times in 32 bits: a later one expires the item at
#: once, so very long TTLs are cut to this (January 2038).
MAX_EXPTIME = 2**31 - 1


def _absolute_expiry(ttl: int) -> int:
    """The UNIX time ``ttl`` seconds from now, for a TTL over 30 days, which
    memcached would read as a UNIX time."""
    return min(int(time.time()) + ttl, MAX_EXPTIME)


def _encode(ops: Sequence[Op]) -> tuple[bytes, list[tuple[int, int, str]]]:
    """The bytes to send and, per command written, the span of ops it
    answers and its name."""
    out: list[bytes] = []
    plan: list[tuple[int, int, str]] = []
    i, n = 0, len(ops)
    while i < n:
        cmd, key, value, ttl, token, delta = ops[i]  # unpacked: an Op's fields are slow to read one by one
        if cmd in _GETS:
            j = i
            while j < n and ops[j][0] == cmd:
                j += 1
            for chunk in range(i, j, _GET_CHUNK):
                keys = " ".join(o.key for o in ops[chunk : min(j, chunk + _GET_CHUNK)])
                out.append(f"{cmd} {keys}\r\n".encode())
            plan.append((i, j, cmd))
            i = j
            continue
        if ttl > RELATIVE_TTL_LIMIT:
            ttl = _absolute_expiry(ttl)
        if cmd == "set" or cmd == "add":
            out.append(f"{cmd} {key} 0 {ttl} {len(value)}\r\n".encode() + value + b"\r\n")
        elif cmd == "cas":
            out.append(f"cas {key} 0 {ttl} {len(value)} {token}\r\n".encode() + value + b"\r\n")
        elif cmd == "incr":
            out.append(f"incr {key} {delta}\r\n".encode())
        elif cmd == "touch":
            out.append(f"touch {key} {ttl}\r\n".encode())
        elif cmd == "delete":
            out.append(f"delete {key}\r\n".encode())
        else:
            raise ValueError(f"unknown store command {cmd!r}")
        plan.append((i, i + 1, cmd))
        i += 1
    return b"".join(out), plan

"""Helpers for testing code that uses samplez against a real memcached
or Redis.

>>> with MemcachedServer() as server:
...     samplez.configure(store=samplez.MemcacheStore(server.address), flush='request')
>>> with RedisServer() as server:
...     samplez.configure(store=samplez.RedisStore(server.url), flush='request')
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any, TypeVar
from urllib.parse import unquote

__all__ = ["MemcachedServer", "RedisServer", "free_port"]


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_Server = TypeVar("_Server", bound="ServerProcess")


class ServerProcess:
    """A server binary on a loopback port: ``start()`` waits until it
    answers, ``kill()`` stops it at once (SIGKILL, as a crash would),
    ``stop()`` asks it to (SIGTERM), and a ``with`` block starts and kills.

    :param port: the port (default: a free one); reuse it to restart.
    """

    #: The binary, for messages.
    name = "server"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        # A port we chose may be taken before the server binds it (by a
        # loopback connection given it as its own); until the server has
        # run once, start() may then choose another.
        self._port_movable = port is None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The command line that runs the server on ``self.port``."""
        raise NotImplementedError

    def start(self: _Server) -> _Server:
        for attempt in range(3):
            if attempt:
                if not self._port_movable:
                    break
                self.port = free_port()  # ours was taken before the server bound it
            if self._launch():
                self._port_movable = False
                return self
        code = self.proc.returncode if self.proc else None
        raise RuntimeError(f"{self.name} exited with {code} on port {self.port}")

    def _launch(self) -> bool:
        """Run the server on ``self.port`` until it answers (True), or until
        it exits (False: the port was not free)."""
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._answers() and self.proc.poll() is None:
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"{self.name} did not start on port {self.port}")

    def _ask(self, request: bytes, size: int = 64) -> bytes:
        """The first bytes the server answers to ``request``; a connect
        alone proves nothing: a loopback connect to a port no one listens
        on can be given that very port as its own and reach itself."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(request)
            return sock.recv(size)

    def _answers(self) -> bool:
        raise NotImplementedError

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM, and wait: the server shuts down as it would on a
        host's shutdown (Redis writes its append-only file)."""
        self._signal(signal.SIGTERM)

    def _signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)
            self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self: _Server) -> _Server:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.kill()


class MemcachedServer(ServerProcess):
    """The ``memcached`` binary on a loopback port.

    :param port: the port (default: a free one); reuse it to restart.
    :param memory_mb: memcached's ``-m``: a small one makes it evict.
    :param threads: memcached's ``-t``.
    """

    name = "memcached"

    def __init__(self, port: int | None = None, memory_mb: int = 64, threads: int = 2) -> None:
        super().__init__(port)
        self.memory_mb = memory_mb
        self.threads = threads

    def command(self) -> list[str]:
        binary = shutil.which("memcached") or "/usr/bin/memcached"
        args = [binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0"]
        args += ["-m", str(self.memory_mb), "-t", str(self.threads)]
        if os.geteuid() == 0:
            args += ["-u", "root"]  # memcached refuses to run as root without it
        return args

    def _answers(self) -> bool:
        try:
            return self._ask(b"version\r\n").startswith(b"VERSION")
        except OSError:
            return False

    def flush_all(self) -> None:
        """Empty the server."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(b"flush_all\r\n")
            sock.recv(64)

    def keys(self) -> list[str]:
        """Every key the server holds (``lru_crawler metadump``)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"lru_crawler metadump all\r\n")
            data = b""
            while not data.endswith(b"END\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        return [unquote(line.split()[0][4:].decode()) for line in data.splitlines() if line.startswith(b"key=")]


class RedisServer(ServerProcess):
    """The ``redis-server`` binary on a loopback port, in a data directory
    of its own (a temporary one by default).

    :param port: the port (default: a free one); reuse it to restart.
    :param appendonly: persist every write (``appendonly yes``,
        ``appendfsync always``), so that data outlives a restart; off by
        default (``--save '' --appendonly no``), as a cache.
    :param directory: where Redis keeps its files; reuse it to restart on
        the same data.
    :param maxmemory_mb: a memory limit, with LRU eviction past it.
    """

    name = "redis-server"

    def __init__(
        self,
        port: int | None = None,
        appendonly: bool = False,
        directory: str | None = None,
        maxmemory_mb: int | None = None,
    ) -> None:
        super().__init__(port)
        self.appendonly = appendonly
        self.directory = directory or tempfile.mkdtemp(prefix="samplez-redis-")
        self.maxmemory_mb = maxmemory_mb

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.directory]
        args += ["--save", "", "--daemonize", "no", "--logfile", ""]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.maxmemory_mb is not None:
            args += ["--maxmemory", f"{self.maxmemory_mb}mb", "--maxmemory-policy", "allkeys-lru"]
        return args

    def _answers(self) -> bool:
        # A server still loading its data answers -LOADING, not +PONG.
        try:
            return self._ask(b"PING\r\n").startswith(b"+PONG")
        except OSError:
            return False

    def client(self) -> Any:
        """A redis-py client of this server (redis-py must be installed)."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def flush_all(self) -> None:
        """Empty the server."""
        self._ask(b"FLUSHALL\r\n")

    def keys(self) -> list[str]:
        """Every key the server holds."""
        return [key.decode() for key in self.client().scan_iter(count=1000)]

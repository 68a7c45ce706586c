"""Helpers for testing code that uses samplez against a real memcached.

>>> with MemcachedServer() as server:
...     samplez.configure(store=samplez.MemcacheStore(server.address), flush='request')
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from typing import Any, TypeVar
from urllib.parse import unquote

__all__ = ["MemcachedServer", "free_port"]


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_Server = TypeVar("_Server", bound="MemcachedServer")


class MemcachedServer:
    """The ``memcached`` binary on a loopback port: ``start()`` waits until it
    accepts connections, ``kill()`` stops it at once (SIGKILL, as a crash
    would), and a ``with`` block does both.

    :param port: the port (default: a free one); reuse it to restart.
    :param memory_mb: memcached's ``-m``: a small one makes it evict.
    :param threads: memcached's ``-t``.
    """

    def __init__(self, port: int | None = None, memory_mb: int = 64, threads: int = 2) -> None:
        self.port = port or free_port()
        # A port we chose may be taken before memcached binds it (by a
        # loopback connection given it as its own); until the server has
        # run once, start() may then choose another.
        self._port_movable = port is None
        self.memory_mb = memory_mb
        self.threads = threads
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self: _Server) -> _Server:
        for attempt in range(3):
            if attempt:
                if not self._port_movable:
                    break
                self.port = free_port()  # ours was taken before memcached bound it
            if self._launch():
                self._port_movable = False
                return self
        raise RuntimeError(f"memcached exited with {self.proc.returncode if self.proc else None} on port {self.port}")

    def _launch(self) -> bool:
        """Run memcached on ``self.port`` until it answers (True), or until
        it exits (False: the port was not free)."""
        binary = shutil.which("memcached") or "/usr/bin/memcached"
        args = [binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0"]
        args += ["-m", str(self.memory_mb), "-t", str(self.threads)]
        if os.geteuid() == 0:
            args += ["-u", "root"]  # memcached refuses to run as root without it
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._answers() and self.proc.poll() is None:
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"memcached did not start on port {self.port}")

    def _answers(self) -> bool:
        """Whether memcached answers ``version`` on the port. A connect alone
        proves nothing: a loopback connect to a port no one listens on can
        be given that very port as its own and reach itself."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"version\r\n")
                return sock.recv(64).startswith(b"VERSION")
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

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

    def __enter__(self) -> MemcachedServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.kill()

"""A loopback TCP proxy in front of a real memcached, for tests that watch
or disturb the wire: it records every byte clients send, and can hand the
server's answers back a few bytes at a time."""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable


class Proxy:
    """Forwards loopback TCP to ``upstream_port``. ``sent`` holds what
    clients sent; with ``answer_piece``, answers go back in pieces of that
    many bytes, ``answer_pause`` seconds apart (TCP_NODELAY), so a reply
    line is split across many receives. Each answer waits
    ``answer_delay`` seconds first (set it at any time), as from a server
    on a busy machine."""

    def __init__(self, upstream_port: int, answer_piece: int | None = None, answer_pause: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.answer_piece = answer_piece
        self.answer_pause = answer_pause
        self.answer_delay = 0.0
        self.sent = bytearray()
        self._lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            if self.answer_piece is not None:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._socks += [client, upstream]
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client), daemon=True).start()

    def _requests(self, source: socket.socket, sink: socket.socket) -> None:
        def forward(data: bytes) -> None:
            with self._lock:
                self.sent += data
            sink.sendall(data)

        self._pump(source, sink, forward)

    def _answers(self, source: socket.socket, sink: socket.socket) -> None:
        piece, pause = self.answer_piece, self.answer_pause

        def answer(data: bytes) -> None:
            time.sleep(self.answer_delay)
            if piece is None:
                sink.sendall(data)
                return
            for start in range(0, len(data), piece):
                sink.sendall(data[start : start + piece])
                time.sleep(pause)

        self._pump(source, sink, answer)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, forward: Callable[[bytes], object]) -> None:
        try:
            while data := source.recv(65536):
                forward(data)
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        for sock in (self.listener, *self._socks):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

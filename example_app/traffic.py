"""Demo traffic: a few client threads sending a realistic mix of requests
to the demo's own server, so every dashboard panel fills within seconds.

Pages are Zipf-distributed (a few are hot, most are cold), shop accounts and
outbound domains too; latencies vary per endpoint; about 4 % of requests
hit missing pages (404) and 2 % a failing one (500). Each simulated user
sends its id in a ``uid`` cookie.
"""

from __future__ import annotations

import http.client
import itertools
import random
import threading
import time
from typing import Callable
from urllib.parse import quote

__all__ = ["Traffic", "zipf_weights"]

USERS = 300
ACCOUNTS = [f"shop{n:02d}" for n in range(1, 26)]
DOMAINS = [
    "https://www.example.com/",
    "https://news.example.org/story/",
    "http://blog.example.net/post/",
    "https://shop.example.co.uk/item/",
    "https://docs.example.io/page/",
    "http://192.0.2.10/status/",
    "https://cdn.example.com/img/",
    "not a url at all/",
]


def zipf_weights(n: int, s: float = 1.2) -> list[float]:
    """Cumulative weights of ranks 1..n under Zipf(s), for random.choices."""
    return list(itertools.accumulate(1 / rank**s for rank in range(1, n + 1)))


_ARTICLES = zipf_weights(1000)
_ACCOUNTS = zipf_weights(len(ACCOUNTS))
_DOMAINS = zipf_weights(len(DOMAINS), 1.0)


def _content(rnd: random.Random) -> tuple[str, str]:
    return "GET", f"/content/{rnd.choices(range(1, 1001), cum_weights=_ARTICLES)[0]}"


def _product(rnd: random.Random) -> tuple[str, str]:
    account = rnd.choices(ACCOUNTS, cum_weights=_ACCOUNTS)[0]
    return "GET", f"/shop/{account}/product/{rnd.randint(1, 200)}"


def _checkout(rnd: random.Random) -> tuple[str, str]:
    return "POST", f"/shop/{rnd.choices(ACCOUNTS, cum_weights=_ACCOUNTS)[0]}/checkout"


def _search(rnd: random.Random) -> tuple[str, str]:
    return "GET", f"/search?q={rnd.choice(['hats', 'shoes', 'tea', 'maps', 'lamps'])}"


def _api(rnd: random.Random) -> tuple[str, str]:
    return "GET", "/api/items"


def _outbound(rnd: random.Random) -> tuple[str, str]:
    target = rnd.choices(DOMAINS, cum_weights=_DOMAINS)[0] + str(rnd.randint(1, 50))
    return "GET", f"/go?url={quote(target, safe='')}"


def _missing(rnd: random.Random) -> tuple[str, str]:
    return "GET", f"/no/such/page/{rnd.randint(1, 20)}"


def _boom(rnd: random.Random) -> tuple[str, str]:
    return "GET", "/boom"


#: (share of requests, request maker)
MIX: list[tuple[float, Callable[[random.Random], tuple[str, str]]]] = [
    (0.53, _content),
    (0.15, _product),
    (0.03, _checkout),
    (0.08, _search),
    (0.07, _api),
    (0.08, _outbound),
    (0.04, _missing),
    (0.02, _boom),
]


class Traffic:
    """Sends about ``rate`` requests per second to ``host:port`` from
    ``threads`` client threads until :meth:`stop`.

    >>> traffic = Traffic('127.0.0.1', 8000).start()
    >>> traffic.stop()
    """

    def __init__(self, host: str, port: int, rate: float = 200.0, threads: int = 2, seed: int | None = None) -> None:
        self.host, self.port = host, port
        self.rate, self.threads = rate, threads
        self.seed = seed
        self.sent = 0
        self.failed = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def start(self) -> Traffic:
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, args=(n,), name=f"demo-traffic-{n}", daemon=True)
            self._workers.append(worker)
            worker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=5)

    def _run(self, number: int) -> None:
        rnd = random.Random(None if self.seed is None else self.seed + number)
        shares = list(itertools.accumulate(share for share, _ in MIX))
        makers = [maker for _, maker in MIX]
        interval = self.threads / self.rate
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        next_at = time.monotonic()
        while not self._stop.is_set():
            method, path = rnd.choices(makers, cum_weights=shares)[0](rnd)
            headers = {"Cookie": f"uid={rnd.randint(1, USERS)}", "User-Agent": "samplez-demo-traffic"}
            ok = self._send(conn, method, path, headers)
            with self._lock:
                self.sent += 1
                self.failed += not ok
            if not ok:
                conn.close()
                self._stop.wait(0.5)  # the server is restarting or gone: back off
            next_at = max(next_at + interval, time.monotonic() - 1)
            self._stop.wait(max(0.0, next_at - time.monotonic()))
        conn.close()

    @staticmethod
    def _send(conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str]) -> bool:
        try:
            conn.request(method, path, headers=headers)
            conn.getresponse().read()
            return True
        except (OSError, http.client.HTTPException):
            conn.close()
            return False

"""ASGIMiddleware under real uvicorn servers against one real memcached:
four workers count exactly and flush what they hold at SIGTERM; 200
concurrent requests in one worker keep their own batches; streaming,
failures, disconnects, lifespan, websockets, the dashboard, FastAPI and
Django, each seen from a client."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from typing import Any, Iterator

import httpx
import pytest

import samplez
from samplez.requests import default_request_metrics
from samplez.testing import MemcachedServer, free_port
from tests.asgi_apps import EACH, HITS
from tests.processes import ROOT, environment, stop

pytestmark = pytest.mark.slow

METRICS = default_request_metrics()


@contextlib.contextmanager
def uvicorn(
    memcached: MemcachedServer, app: str, workers: int = 1, interval: str = "0.5"
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``uvicorn app`` on a free loopback port, storing to ``memcached``;
    its base URL. SIGTERM'd and waited for on the way out."""
    port = free_port()
    env = environment(
        SAMPLEZ_MEMCACHE=memcached.address,
        SAMPLEZ_TEST_FLUSH_INTERVAL=interval,
        DJANGO_SETTINGS_MODULE="tests.django_project.settings",
    )
    argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers), "--log-level", "warning", "--timeout-graceful-shutdown", "20"]
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"uvicorn exited: {proc.stderr.read() if proc.stderr else ''}"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        stop(proc, timeout=60)


def get_all(base: str, paths: list[str], concurrency: int) -> list[int]:
    """GET every path, ``concurrency`` at a time; the statuses, in order."""

    async def run() -> list[int]:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
            gate = asyncio.Semaphore(concurrency)

            async def one(path: str) -> int:
                async with gate:
                    return (await client.get(path)).status_code

            return await asyncio.gather(*map(one, paths))

    return asyncio.run(run())


def totals(metric: Any) -> dict[str, int]:
    result = samplez.get(metric)
    return {key: result[key].total for key in result.keys()}


@pytest.mark.parametrize(
    "interval",
    [
        pytest.param("0.5", id="flushing"),
        pytest.param("3600", id="all-at-sigterm"),
    ],
)
def test_four_workers_count_exactly(memcached, interval):
    samplez.configure(store=samplez.MemcacheStore(memcached.address))
    sent = 4000
    with uvicorn(memcached, "tests.asgi_apps:site", workers=4, interval=interval) as (base, proc):
        assert set(get_all(base, ["/hit"] * sent, concurrency=16)) == {200}
        if interval == "3600":
            assert totals(HITS) == {}  # nothing flushed yet
        code, _, err = stop(proc, timeout=60)
        assert code == 0, err
    hits = samplez.get(HITS)
    # Each worker's lifespan set once: all four flushed as they stopped.
    assert (hits["hit"].cumulative, hits["lifespan"].cumulative) == (sent, 4)
    assert samplez.get(METRICS.requests)["GET /hit"].cumulative == sent
    latency = samplez.get(METRICS.latency)
    assert latency.count("GET /hit") == sent


def test_200_concurrent_requests_in_one_worker_keep_their_own_batches(memcached):
    samplez.configure(store=samplez.MemcacheStore(memcached.address))
    with uvicorn(memcached, "tests.asgi_apps:site") as (base, _):
        assert get_all(base, [f"/n/{n}" for n in range(200)], concurrency=200) == [200] * 200
    result = samplez.get(EACH)
    assert sorted(value for _, value in result.samples("all")) == list(range(200))
    assert [result.samples(f"r{n}")[0][1] for n in range(200)] == list(range(200))


def leave_mid_stream(base: str) -> bytes:
    """GET /endless, read its first chunk, and hang up."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        return sock.recv(4096)


def test_a_starlette_site_under_uvicorn(memcached):
    from websockets.sync.client import connect

    samplez.configure(store=samplez.MemcacheStore(memcached.address))
    with uvicorn(memcached, "tests.asgi_apps:site") as (base, _):
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/stream").text == "row 0\nrow 1\nrow 2\n"
            # uvicorn closes a connection whose app raised: not one to reuse.
            assert client.get("/fail", headers={"Connection": "close"}).status_code == 500
            assert client.get("/nowhere").status_code == 404
            page = client.get("/_samplez/?format=json")
            assert page.status_code == 200 and "Requests" in [s["title"] for s in page.json()["sections"]]
        assert b"200 OK" in leave_mid_stream(base)
        with connect(base.replace("http", "ws") + "/ws") as websocket:
            websocket.send("hi")
            assert websocket.recv(timeout=10) == "hi"
        time.sleep(0.3)  # the server sees the hang-up at its next chunk
    assert totals(HITS) == {"streamed": 3, "fail": 1, "endless": 1, "lifespan": 1}
    requests = {"GET /stream": 1, "GET /fail": 1, "GET (unmatched)": 1, "GET /endless": 1}
    assert totals(METRICS.requests) == requests
    assert totals(METRICS.statuses) == {"200": 2, "500": 1, "404": 1}


@pytest.mark.parametrize(
    "app, path, key, hits",
    [
        pytest.param("tests.asgi_apps:api", "/items/7", "GET /items/{item_id}", {"fastapi": 1}, id="fastapi"),
        pytest.param(
            "tests.asgi_apps:django", "/shop/acme/item/2", "GET /shop/<str:account>/item/<int:item>", {}, id="django"
        ),
    ],
)
def test_fastapi_and_django_under_uvicorn(memcached, app, path, key, hits):
    samplez.configure(store=samplez.MemcacheStore(memcached.address))
    with uvicorn(memcached, app) as (base, _):
        assert get_all(base, [path, path, "/no/such/page"], concurrency=1) == [200, 200, 404]
    assert totals(METRICS.requests) == {key: 2, "GET (unmatched)": 1}
    assert totals(HITS) == {name: 2 * count for name, count in hits.items()}


def test_the_demo_serves_under_uvicorn(memcached):
    samplez.configure(store=samplez.MemcacheStore(memcached.address))
    with uvicorn(memcached, "example_app.asgi:app", workers=2) as (base, _):
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/content/2").status_code == 200
            assert client.get("/feed").text.count("/content/") == 10
            assert client.get("/_samplez/").status_code == 200
    assert totals(METRICS.requests) == {"GET /content/{item:int}": 1, "GET /feed": 1}

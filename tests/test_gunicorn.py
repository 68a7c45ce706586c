"""``gunicorn -w 4 example_app:app`` against one real memcached (or Redis):
the counts of every worker add up exactly (each forked worker flushes its own batch,
none is lost or applied twice), and SIGTERM flushes what is pending."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

import samplez
from example_app import metrics
from samplez import workers
from samplez.engine import engine
from samplez.testing import free_port
from tests.conftest import Backend
from tests.processes import ROOT, environment

pytestmark = pytest.mark.slow

GUNICORN = Path(sys.executable).with_name("gunicorn")
ENDPOINT = "GET /api/items"
WORKERS, CLIENTS = 4, 4


@contextlib.contextmanager
def gunicorn(store_env: dict[str, str], *args: str) -> Iterator[tuple[int, subprocess.Popen]]:
    """gunicorn serving the demo on a free port, on the store ``store_env``
    names; SIGTERM'd and waited for on the way out."""
    port = free_port()
    env = environment(**store_env)
    argv = [str(GUNICORN), "-w", str(WORKERS), "-b", f"127.0.0.1:{port}", "--graceful-timeout", "20", *args]
    proc = subprocess.Popen(
        [*argv, "example_app:app"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"gunicorn exited: {proc.stderr.read()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.05)
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def hammer(port: int, per_client: int) -> list[str]:
    """``CLIENTS`` threads each sending ``per_client`` GETs; the failures."""
    failures: list[str] = []
    deadline = time.monotonic() + 120

    def client() -> None:
        for _ in range(per_client):
            if time.monotonic() > deadline:
                failures.append("out of time")
                return
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/api/items", headers={"Cookie": "uid=1"})
                response = conn.getresponse()
                response.read()
                conn.close()
                if response.status != 200:
                    failures.append(str(response.status))
            except OSError as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def counted() -> tuple[int, int]:
    """(requests counted by the rolling counter, latency samples' events)."""
    requests = samplez.get(metrics.REQUESTS)[ENDPOINT].cumulative
    latency = sum(samplez.get(metrics.LATENCY_SAMPLES, period=p).total_events for p in ("current", "previous"))
    return requests, latency


def test_four_workers_count_exactly(backend: Backend):
    server = backend.shared()
    samplez.configure(store=backend.store(server))
    sent = CLIENTS * 2000
    with gunicorn(backend.environment(server)) as (port, _):
        assert hammer(port, sent // CLIENTS) == []
        # The workers' flushers run every 0.5 s, and a worker that loses a
        # compare-and-swap on the shared actives applies it at its next
        # flush: wait for them, bounded.
        deadline = time.monotonic() + 30
        while (counted(), actives()) != ((sent, sent), 1) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert counted() == (sent, sent)
        assert actives() == 1
        # The workers that served requests list themselves (a worker that got
        # no connection never wrote, so never beat).
        live = workers.read_workers(engine.context())
        assert 1 <= len({beat["pid"] for beat in live}) <= WORKERS
        assert all(beat["pid"] != os.getpid() for beat in live)


def actives() -> int:
    """Users active today, or yesterday if the test ran across midnight
    UTC (the day's step turned between the requests and this read)."""
    reading = samplez.get(metrics.DAILY_ACTIVES)["site"]
    return max([reading.value, *(value for _, value in reading.history[:1])])


def test_sigterm_flushes_what_the_workers_hold(memcached, tmp_path):
    # Every worker's flusher waits an hour: what reaches memcached was
    # flushed as the worker exited.
    conf = tmp_path / "gunicorn_conf.py"
    conf.write_text("import samplez\n\n\ndef post_fork(server, worker):\n    samplez.configure(flush_interval=3600)\n")
    samplez.configure(store=samplez.MemcacheStore(memcached.address))
    sent = CLIENTS * 500
    with gunicorn({"SAMPLEZ_MEMCACHE": memcached.address}, "-c", str(conf)) as (port, proc):
        assert hammer(port, sent // CLIENTS) == []
        assert counted() == (0, 0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert counted() == (sent, sent)

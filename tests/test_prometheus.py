"""A real Prometheus server scraping the demo under gunicorn (several
workers, one memcached) stores the same request counts as ``samplez.get``
reads, to the request."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlencode
from urllib.request import urlopen

import pytest

import samplez
from samplez.requests import default_request_metrics
from samplez.testing import free_port
from tests.test_gunicorn import CLIENTS, WORKERS, gunicorn, hammer

pytestmark = pytest.mark.slow

SCRAPE_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: samplez
    metrics_path: /_samplez/metrics
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


@contextlib.contextmanager
def prometheus(tmp_path: Path, target_port: int) -> Iterator[str]:
    """Prometheus on a free loopback port scraping ``target_port`` every
    second; its base URL. Stopped by its pid on the way out."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: apt-get install prometheus (./dev does)"
    config = tmp_path / "prometheus.yml"
    config.write_text(SCRAPE_CONFIG.format(port=target_port))
    port = free_port()
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with open(tmp_path / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url), 60, lambda: (tmp_path / "prometheus.log").read_text()[-2000:])
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ready(url: str) -> bool:
    try:
        with urlopen(url + "/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def wait_for(condition: Callable[[], Any], seconds: float, explain: Callable[[], Any] = lambda: "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, explain()
        time.sleep(0.2)


def query(url: str, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
    """An instant query's vector: ``{sorted labels without __name__/job/instance: value}``."""
    with urlopen(f"{url}/api/v1/query?{urlencode({'query': promql})}", timeout=10) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    vector = {}
    for item in answer["data"]["result"]:
        labels = {k: v for k, v in item["metric"].items() if k not in ("__name__", "job", "instance")}
        vector[tuple(sorted(labels.items()))] = float(item["value"][1])
    return vector


def read_counts() -> tuple[dict[Any, float], dict[Any, float]]:
    """What ``samplez.get`` reads of the request metrics, labelled as
    /metrics labels them."""
    metrics = default_request_metrics()
    requests = {}
    for key, reading in samplez.get(metrics.requests).items():
        method, _, route = key.partition(" ")
        requests[(("method", method), ("route", route))] = float(reading.cumulative)
    statuses = {(("status", key),): float(r.cumulative) for key, r in samplez.get(metrics.statuses).items()}
    return requests, statuses


def test_prometheus_stores_what_samplez_get_reads(memcached, tmp_path):
    samplez.configure(store=samplez.MemcacheStore(memcached.address))
    per_client = 150
    sent = CLIENTS * per_client
    endpoint = (("method", "GET"), ("route", "/api/items"))
    with gunicorn({"SAMPLEZ_MEMCACHE": memcached.address}) as (port, _), prometheus(tmp_path, port) as url:
        wait_for(lambda: query(url, 'up{job="samplez"}') == {(): 1.0}, 30, lambda: query(url, "up"))
        assert hammer(port, per_client) == []
        # Traffic has stopped: wait for the workers' last flush, then for a
        # scrape that started after it.
        wait_for(lambda: read_counts()[0].get(endpoint) == sent, 30, read_counts)
        flushed = time.time()
        wait_for(lambda: query(url, 'timestamp(up{job="samplez"})').get((), 0) > flushed, 30)

        requests, statuses = read_counts()
        assert requests[endpoint] == sent
        assert query(url, "samplez_http_requests_total") == requests
        assert query(url, "samplez_http_statuses_total") == statuses
        assert query(url, 'up{job="samplez"}') == {(): 1.0}
        latency = query(url, "samplez_http_latency_seconds_count")
        assert latency[endpoint] == sent  # fewer requests than samples: exact
        p95 = query(url, 'samplez_http_latency_seconds{quantile="0.95"}')
        assert 0 < p95[tuple(sorted((*endpoint, ("quantile", "0.95"))))] < 10

        def workers() -> dict[Any, float]:
            return query(url, "samplez_worker_start_time_seconds")

        # Each worker lists itself at its heartbeats (a lost race lists it
        # at the next one, 5 s later).
        wait_for(lambda: len(workers()) == WORKERS, 30, workers)
        assert all(dict(labels)["pid"].isdigit() and dict(labels)["host"] for labels in workers())

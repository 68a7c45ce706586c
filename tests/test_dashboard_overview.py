"""The overview the dashboard opens on and the workers on the Health page:
their JSON twins after known traffic at an injected clock, on both stores,
and the plain messages when there is nothing to show."""

from __future__ import annotations

import os
import statistics
import time

import pytest
import webtest

import samplez
from samplez import workers
from samplez.dashboard.overview import NOW_SECONDS
from samplez.dashboard.views import STUCK_AFTER, worker_view
from samplez.engine import engine
from samplez.registry import unregister
from tests.conftest import unique_name

LOCAL = {"REMOTE_ADDR": "127.0.0.1"}
XSS = "<img src=x onerror=alert(1)>"
#: Per minute: ten fast requests of 1..10 ms, two slow ones (100 ms, and
#: a 500 of 300 ms).
FAST = [float(ms) for ms in range(1, 11)]
SLOW = [100.0, 300.0]
MINUTES = 20


def quantile(values, q):
    """The q-th percentile, linearly interpolated between closest ranks."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def served(metrics, key, status, ms):
    """One request, recorded as the middleware records it."""
    samplez.set(metrics.requests, key)
    samplez.set(metrics.statuses, status)
    samplez.set(metrics.latency, key, ms)
    samplez.set(metrics.slowest, key, ms)


@pytest.fixture
def metrics():
    metrics = samplez.RequestMetrics(prefix=unique_name("http"))
    yield metrics
    unregister(metrics.section)


@pytest.fixture
def traffic(samplez_on, clock, metrics):
    """Twenty minutes of traffic, the first ten in the latency reservoir's
    previous period (an hour), the last ten in its current one; read 30 s
    into the last minute."""
    clock.now = 1_800_000_000.0 - 10 * 60 + 5  # 5 s into a minute, 10 minutes before the hour
    for minute in range(MINUTES):
        for ms in FAST:
            served(metrics, "GET /fast", "200", ms)
        served(metrics, "GET /slow", "200", SLOW[0])
        served(metrics, "GET /slow", "500", SLOW[1])
        samplez.flush()
        if minute < MINUTES - 1:
            clock.advance(60)
    clock.advance(25)
    return metrics


def overview(metrics):
    app = webtest.TestApp(samplez.Dashboard(sections=[metrics.section]), extra_environ=LOCAL)
    return app, app.get("/?format=json").json


def test_the_overview_after_known_traffic(traffic):
    _, data = overview(traffic)
    o = data["overview"]
    assert o["enabled"] and o["message"] is None
    roles = ("requests", "statuses", "latency", "slowest")
    assert o["metrics"] == {role: getattr(traffic, role).name for role in roles}
    assert (o["window"], o["step"], o["now_seconds"]) == (3600, 60, NOW_SECONDS)
    since = (MINUTES - 1) * 60 + 30  # from the first busy minute's start to now
    assert o["requests"] == 12 * MINUTES and o["requests_per_second"] == pytest.approx(12 * MINUTES / since)
    every = FAST + SLOW
    now = o["now"]  # the five newest minutes, the newest 30 s in
    assert now["seconds"] == 4 * 60 + 30 and now["requests"] == 60 and now["errors"] == 5
    assert now["requests_per_second"] == pytest.approx(60 / 270) and now["error_rate"] == pytest.approx(1 / 12)
    assert now["samples"] == 60
    for q in (50, 95, 99):
        assert now[f"p{q}"] == pytest.approx(quantile(every * 5, q))


def test_the_overview_series_has_one_value_a_minute(traffic):
    series = overview(traffic)[1]["overview"]["series"]
    assert {len(values) for values in series.values()} == {60}
    quiet, busy = 60 - MINUTES, MINUTES
    assert series["requests_per_second"] == [0] * quiet + [pytest.approx(12 / 60)] * (busy - 1) + [12 / 30]
    assert series["error_rate"] == [None] * quiet + [pytest.approx(1 / 12)] * busy
    for q in (50, 95, 99):
        # Both latency periods feed the chart: the first ten busy minutes
        # are in the previous hour's reservoir.
        assert series[f"p{q}"] == [None] * quiet + [pytest.approx(quantile(FAST + SLOW, q))] * busy


def test_the_busiest_and_the_slowest_endpoints(traffic):
    app, data = overview(traffic)
    since = (MINUTES - 1) * 60 + 30
    busiest = data["overview"]["busiest"]
    assert [(row["key"], row["requests"]) for row in busiest] == [("GET /fast", 200), ("GET /slow", 40)]
    assert busiest[0]["rate"] == pytest.approx(200 / since) and busiest[0]["share"] == pytest.approx(200 / 240)
    slowest = data["overview"]["slowest"]
    assert [row["key"] for row in slowest] == ["GET /slow", "GET /fast"]
    assert slowest[0]["samples"] == 40 and slowest[0]["max"] == 300 and slowest[1]["max"] == 10
    assert slowest[0]["p50"] == 200 and slowest[0]["p95"] == pytest.approx(quantile(SLOW * 20, 95))
    page = app.get("/")
    for name, key in ((traffic.requests.name, "GET /fast"), (traffic.latency.name, "GET /slow")):
        link = page.click(href=rf"/config/{name}/key\?key=", index=0)  # the overview's first row
        assert link.status_int == 200 and f"<code>{key}</code>" in link.text


def test_the_index_keeps_its_sections_and_adds_overview_and_workers(traffic):
    _, data = overview(traffic)
    assert {"sections", "overview", "workers", "health", "unreachable"} <= set(data)
    assert [s["title"] for s in data["sections"]] == ["Requests"]
    assert data["workers"] == data["health"]["workers"]


def test_with_no_request_yet_the_overview_says_so(samplez_on, metrics):
    app, data = overview(metrics)
    assert data["overview"]["enabled"] and data["overview"]["requests"] == 0
    assert data["overview"]["message"] == "No requests recorded in the last hour yet."
    assert data["overview"]["busiest"] == [] and data["overview"]["slowest"] == []
    assert "No requests recorded in the last hour yet." in app.get("/").text


def test_without_request_metrics_the_overview_says_so(samplez_on):
    config = samplez.Config(unique_name("lat"), period=60, samples=10, by_value=True)
    app = webtest.TestApp(samplez.Dashboard(sections=samplez.Section("Only", config)), extra_environ=LOCAL)
    data = app.get("/?format=json").json["overview"]
    assert data == {"enabled": False, "message": data["message"]} and "Request metrics are not on" in data["message"]
    page = app.get("/")
    assert page.status_int == 200 and "Request metrics are not on this dashboard" in page.text
    unregister(config)


def test_a_middleware_without_request_metrics_opens_on_the_message(samplez_on):
    config = samplez.Config(unique_name("lat"), period=60, samples=10, by_value=True)
    only = samplez.Section("Only", config)
    site = samplez.Middleware(lambda e, s: [s("200 OK", []) and b""], request_metrics=False, sections=[only])
    app = webtest.TestApp(site, extra_environ=LOCAL)
    app.get("/")
    data = app.get("/_samplez/?format=json").json
    assert data["overview"]["enabled"] is False and [s["title"] for s in data["sections"]] == ["Only"]
    unregister(only)


def beat(ctx, host="web-1", **stats):
    """Write a heartbeat of another worker on ``host``."""
    other = workers.Heartbeat()
    other.host = host
    plan = other.plan(ctx, {"requests": 0, "pending": 0, "dropped": 0, "errors": 0, **stats})
    results, _ = ctx.store.execute(next(plan))
    ctx.store.execute(plan.send(results))
    return other


def test_the_health_page_lists_every_live_worker(samplez_on, clock, monkeypatch):
    monkeypatch.setitem(engine.health, "dropped", 0)  # what earlier tests dropped is not this test's
    engine.heartbeat.last = -float("inf")
    samplez.flush()
    ctx = engine.context()
    stuck = beat(ctx, host=XSS, last_flush=time.time() - 60, dropped=3)
    app = webtest.TestApp(samplez.Dashboard(), extra_environ=LOCAL)
    rows = {row["id"]: row for row in app.get("/health?format=json").json["health"]["workers"]}
    me, other = rows[engine.heartbeat.id], rows[stuck.id]
    assert me["pid"] == os.getpid() and me["problems"] == [] and 0 <= me["uptime"] < 3600
    assert me["last_flush_age"] is not None and me["last_flush_age"] < STUCK_AFTER
    assert other["host"] == XSS and other["problems"] == ["no flush for 1 min", "dropped 3 events"]
    page = app.get("/health")
    assert page.text.count('<tr class="stuck">') == 1 and "no flush for 1 min; dropped 3 events" in page.text
    assert XSS not in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text
    index = app.get("/")
    assert "2 live" in index.text and "1 flagged" in index.text


@pytest.mark.parametrize(
    "heartbeat, problems",
    [
        pytest.param({"last_flush": 995.0, "started": 900.0}, [], id="flushed-5s-ago"),
        pytest.param({"last_flush": 1000.0 - STUCK_AFTER - 1, "started": 0.0}, ["no flush for 16 s"], id="late"),
        pytest.param({"last_flush": None, "started": 998.0}, [], id="new-not-flushed-yet"),
        pytest.param({"last_flush": None, "started": 900.0}, ["no flush for 1 min 40 s"], id="never-flushed"),
        pytest.param({"last_flush": 999.0, "dropped": 12}, ["dropped 12 events"], id="dropped"),
        pytest.param({"last_flush": "soon", "started": [1], "dropped": "x"}, ["no flush time"], id="garbage"),
    ],
)
def test_a_worker_is_flagged_when_it_looks_stuck(heartbeat, problems):
    row = worker_view({"id": "w", "pid": 7, "host": "h", **heartbeat}, now=1000.0)
    assert row["problems"] == problems
    assert set(row) >= {"pid", "host", "uptime", "rss", "cpu", "requests", "pending", "dropped", "errors"}

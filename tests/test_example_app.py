"""The demo: every page feeds the metrics a real site would, the dashboard
shows every kind, demo traffic fills it, and ``python -m example_app``
flushes every pending sample when stopped."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.request import urlopen

import pytest
import webtest
from werkzeug.serving import make_server

import example_app
import samplez
from example_app import metrics
from example_app.site import create_app
from example_app.traffic import Traffic
from samplez.engine import engine
from tests.conftest import Backend
from tests.processes import python_m, stop

ROOT = Path(__file__).resolve().parent.parent
KINDS = {"reservoir", "rolling", "rolling_max", "stepped", "unique", "hll", "bitmap", "calendar"}


@pytest.fixture
def site(samplez_on):
    return webtest.TestApp(create_app(), extra_environ={"REMOTE_ADDR": "127.0.0.1"})


def content(url: str) -> int:
    return samplez.get(metrics.POPULAR.metrics[0]).count(url)


@pytest.mark.parametrize(
    "method, path, status, endpoint, check",
    [
        pytest.param(
            "GET", "/content/3", 200, "GET /content/<int:item>",
            lambda: content("http://localhost/content/3") == 1, id="article",
        ),
        pytest.param(
            "GET", "/shop/acme/product/3", 200, "GET /shop/<account>/product/<int:item>",
            lambda: (samplez.get(metrics.PAGEVIEWS)["acme"].day, samplez.get(metrics.SHOP_VISITORS)["acme"].value)
            == (1, 1),
            id="product",
        ),
        pytest.param(
            "POST", "/shop/acme/checkout", 200, "POST /shop/<account>/checkout",
            lambda: samplez.get(metrics.ORDERS)["acme"].value == 1, id="checkout",
        ),
        pytest.param(
            "GET", "/go?url=https%3A%2F%2Fwww.news.example.com%2Fa", 302, "GET /go",
            lambda: samplez.get(metrics.OUTBOUND_DOMAINS).count("example.com") == 1, id="outbound",
        ),
        pytest.param(
            "GET", "/go?url=javascript:alert(1)", 400, "GET /go",
            lambda: (samplez.get(metrics.ERRORS)["400"].total, samplez.get(metrics.OUTBOUND_DOMAINS).total_events)
            == (1, 0),
            id="outbound-refused",
        ),
        pytest.param(
            "GET", "/no/such/page", 404, "(no route)",
            lambda: samplez.get(metrics.ERRORS)["404"].total == 1, id="not-found",
        ),
        pytest.param(
            "GET", "/boom", 500, "GET /boom",
            lambda: samplez.get(metrics.ERRORS)["500"].total == 1, id="server-error",
        ),
        pytest.param("GET", "/search?q=tea", 200, "GET /search", lambda: True, id="search"),
        pytest.param("GET", "/api/items", 200, "GET /api/items", lambda: True, id="api"),
    ],
)  # fmt: skip
def test_each_page_feeds_the_metrics_a_real_site_would(site, method, path, status, endpoint, check):
    site.request(path, method=method, status=status, headers={"Cookie": "uid=7"})
    assert check()
    latency = samplez.get(metrics.LATENCY_SAMPLES)
    assert (latency.total_events, latency.keys()) == (1, [endpoint])
    assert latency.min(endpoint) > 0 and samplez.get(metrics.LATENCY_MAX)[endpoint].max == latency.max(endpoint)
    assert samplez.get(metrics.REQUESTS)[endpoint].total == 1
    assert samplez.get(metrics.VISITORS_HLL)["site"].value == 1
    assert samplez.get(metrics.DAILY_ACTIVES)["site"].contains(7)


def test_visitors_without_a_user_id_count_by_address(site):
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.1"):
        site.get("/api/items", extra_environ={"REMOTE_ADDR": address})
    assert samplez.get(metrics.VISITORS_HLL)["site"].value == 2
    assert samplez.get(metrics.DAILY_ACTIVES)["site"].value == 0


def test_the_dashboard_shows_every_kind_of_config_and_counter(site):
    site.get("/shop/acme/product/1", headers={"Cookie": "uid=3"})
    page = site.get("/_samplez/?format=json").json
    assert [s["title"] for s in page["sections"]] == ["Requests", *(s.title for s in metrics.SECTIONS)]
    assert {m["kind"] for s in page["sections"] for m in s["metrics"]} == KINDS
    assert "Popular content" in site.get("/_samplez/").text


def test_the_dashboard_opens_on_the_overview_of_the_flask_routes(site):
    for path in ("/content/1", "/content/2", "/shop/acme/product/1", "/nowhere"):
        site.get(path, status="*")
    overview = site.get("/_samplez/?format=json").json["overview"]
    assert overview["enabled"] and overview["requests"] == 4
    assert {row["key"]: row["requests"] for row in overview["busiest"]} == {
        "GET /content/<int:item>": 2,
        "GET /shop/<account>/product/<int:item>": 1,
        "GET (unmatched)": 1,
    }
    assert {row["key"] for row in overview["slowest"]} == {row["key"] for row in overview["busiest"]}


def test_page_views_per_account_answer_the_calendar_api(site, clock):
    for _ in range(2):
        site.get("/shop/acme/product/1")
    site.get("/shop/other/product/1")
    today = datetime.fromtimestamp(clock(), timezone.utc)
    base = f"/_samplez/api/stats/track/acme/pageviews/{today.year}/{today.month:02d}"
    answer = site.get(base).json
    assert (answer["event"], answer["key"], answer["month"]) == ("pageviews", "acme", today.month)
    assert answer["data"][str(today.day)] == 2
    everyone = site.get(f"/_samplez/api/stats/track/all/pageviews/{today.year}").json
    assert everyone["data"][str(today.month)] == 3


def test_demo_traffic_fills_every_panel(samplez_on):
    server = make_server("127.0.0.1", 0, create_app(), threaded=True)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    traffic = Traffic("127.0.0.1", server.server_port, rate=1000, seed=42).start()
    try:
        deadline = time.monotonic() + 30
        while traffic.sent < 400 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        traffic.stop()
        server.shutdown()
    assert traffic.sent >= 400 and traffic.failed == 0
    for section in metrics.SECTIONS:
        for metric in section.metrics:
            assert samplez.get(metric).keys(), f"{metric.name} is empty"
    errors = samplez.get(metrics.ERRORS)
    assert {"404", "500"} <= set(errors.keys())
    top = samplez.get(metrics.POPULAR.metrics[0]).rows(limit=1)[0]["key"]
    assert top.endswith("/content/1")  # Zipf: the first article is the hottest


def test_the_app_reads_its_store_from_the_environment(monkeypatch, backend: Backend):
    server = backend.shared()
    for name, value in backend.environment(server).items():
        monkeypatch.setenv(name, value)
    example_app.app_from_environment()
    assert engine.store.kind == backend.kind
    assert engine.store.servers == backend.store(server).servers


def test_example_app_app_is_the_wrapped_wsgi_app():
    assert isinstance(example_app.app, samplez.Middleware)


def demo(*args: str) -> subprocess.Popen:
    return python_m("example_app", *args)


def test_python_m_example_app_serves_and_flushes_everything_when_stopped(backend: Backend):
    server = backend.shared()
    proc = demo("--port", "0", "--traffic", "--rate", "300", *backend.option(server))
    try:
        assert f"storing to {backend.kind}" in proc.stdout.readline()
        url = proc.stdout.readline().split("samplez dashboard: ", 1)[1].strip()
        deadline = time.monotonic() + 30
        while True:
            page = json.load(urlopen(url + "?format=json", timeout=5))
            kinds = {m["kind"] for s in page["sections"] for m in s["metrics"] if m.get("rows")}
            if kinds == KINDS:
                break
            assert time.monotonic() < deadline, f"the demo's dashboard never filled: {sorted(kinds)}"
            time.sleep(0.2)
    finally:
        status, out, err = stop(proc)
    assert status == 0, err
    sent = int(out.split("samplez demo stopped: ")[1].split(" demo requests sent")[0])
    # Every request the traffic sent was measured and flushed before exit
    # (the dashboard's own pages are not measured).
    samplez.configure(store=backend.store(server))
    latency = [samplez.get(metrics.LATENCY_SAMPLES, period=p) for p in ("current", "previous")]
    assert sent > 0 and sum(r.total_events for r in latency) == sent


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(["--memcache", "host:port"], "--memcache: memcache server must be 'host:port'", id="memcache"),
        pytest.param(["--redis", "host:6379"], "--redis: redis server must be a URL", id="redis"),
        pytest.param(["--memcache", "a:1", "--redis", "redis://a"], "are mutually exclusive", id="memcache-and-redis"),
        pytest.param(["--port", "70000"], "--port must be in [0, 65535], got 70000", id="port"),
        pytest.param(["--rate", "0"], "--rate must be in (0, 10000], got 0.0", id="rate"),
    ],
)
def test_python_m_example_app_explains_bad_arguments(args, message):
    proc = demo(*args)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and message in err

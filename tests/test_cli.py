"""``python -m samplez``: loading metrics by name, the store options, and the
dashboard served alone over real HTTP, reading what another process wrote
to memcached or Redis."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from typing import Any, Callable
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest

import samplez
from example_app import metrics
from samplez.cli import UsageError, load_metrics
from samplez.cli.common import store_from
from tests.conftest import Backend, unique_name
from tests.processes import python_m, stop


@pytest.mark.parametrize(
    "spec, message",
    [
        pytest.param("nocolon", "expected module:attribute", id="no-colon"),
        pytest.param("no_such_module_xyz:A", "cannot import", id="no-module"),
        pytest.param("samplez:NoSuch", "has no attribute", id="no-attribute"),
        pytest.param("samplez:__version__", "must be a Section", id="not-metrics"),
    ],
)
def test_load_metrics_says_what_is_wrong(spec, message):
    with pytest.raises(UsageError, match=message):
        load_metrics(spec)


@pytest.mark.parametrize(
    "spec, expected",
    [
        pytest.param("example_app.metrics:SECTIONS", list(metrics.SECTIONS), id="tuple-of-sections"),
        pytest.param("example_app.metrics:SHOPS", [metrics.SHOPS], id="section"),
        pytest.param("example_app.metrics:PAGEVIEWS", [metrics.PAGEVIEWS], id="counter"),
    ],
)
def test_load_metrics_accepts_sections_and_metrics(spec, expected):
    assert load_metrics(spec) == expected


def command(*args: str) -> subprocess.Popen:
    return python_m("samplez", *args)


def get(url: str, **headers: str) -> tuple[int, bytes]:
    try:
        with urlopen(Request(url, headers=headers), timeout=10) as response:
            return response.status, response.read()
    except HTTPError as error:
        return error.code, error.read()


def dashboard(store_option: list[str], *args: str):
    proc = command("dashboard", *store_option, "--port", "0", *args)
    line = proc.stdout.readline()
    assert line.startswith("samplez dashboard: http://"), proc.communicate(timeout=10)
    return proc, line.split(": ", 1)[1].strip()


def test_the_dashboard_alone_shows_what_the_app_wrote(backend: Backend):
    server = backend.shared()
    samplez.configure(store=backend.store(server))
    for _ in range(3):
        samplez.set(metrics.REQUESTS, "GET /api/items")
    samplez.set(metrics.LATENCY, "GET /api/items", 12.5)
    assert samplez.flush().applied == 5
    proc, url = dashboard(backend.option(server), "--sections", "example_app.metrics:SECTIONS")
    try:
        status, body = get(url + "?format=json")
        assert status == 200
        page = json.loads(body)
        assert [s["title"] for s in page["sections"]] == [s.title for s in metrics.SECTIONS]
        shown = {m["name"]: m for s in page["sections"] for m in s["metrics"]}
        assert shown["requests_1m"]["rows"][0]["key"] == "GET /api/items"
        assert shown["requests_1m"]["rows"][0]["value"] == 3
        assert shown["latency_5m"]["total_events"] == 1
        status, body = get(url)
        assert status == 200 and b"Popular content" in body
    finally:
        assert stop(proc)[0] == 0


def test_the_dashboard_alone_can_ask_for_basic_auth(memcached):
    sections = ["--sections", "example_app.metrics:SHOPS", "--sections", "example_app.metrics:REQUESTS"]
    proc, url = dashboard(["--memcache", memcached.address], *sections, "--auth", "ops:s3cret")
    try:
        assert get(url)[0] == 401
        token = base64.b64encode(b"ops:s3cret").decode()
        status, body = get(url + "?format=json", Authorization=f"Basic {token}")
        assert status == 200
        shown = [(s["title"], [m["name"] for m in s["metrics"]]) for s in json.loads(body)["sections"]]
        assert shown == [("Shops", ["pageviews", "orders_1h"]), ("Other", ["requests_1m"])]
    finally:
        assert stop(proc)[0] == 0


def test_the_dashboard_alone_serves_metrics_to_its_own_credentials(memcached):
    samplez.configure(store=samplez.MemcacheStore(memcached.address))
    samplez.set(metrics.REQUESTS, "GET /api/items")
    assert samplez.flush().applied == 1
    sections = ["--sections", "example_app.metrics:TRAFFIC"]
    proc, url = dashboard(
        ["--memcache", memcached.address], *sections, "--auth", "ops:s3cret", "--metrics-auth", "prom:pw"
    )
    try:
        prom = "Basic " + base64.b64encode(b"prom:pw").decode()
        assert get(url, Authorization=prom)[0] == 401
        status, body = get(url + "metrics", Authorization=prom)
        assert status == 200
        assert b'samplez_requests_1m_total{key="GET /api/items"} 1.0' in body
    finally:
        assert stop(proc)[0] == 0


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(["dashboard", "--sections", "nowhere:X"], "cannot import 'nowhere'", id="sections"),
        pytest.param(["dashboard", "--auth", "nopassword"], "--auth must be USER:PASSWORD", id="auth"),
        pytest.param(["dashboard", "--metrics-auth", ":pw"], "--metrics-auth must be USER:PASSWORD", id="metrics-auth"),
        pytest.param(["dashboard", "--memcache", "a:b:c"], "--memcache: memcache server must be", id="memcache"),
        pytest.param(["dashboard", "--redis", "a:6379"], "--redis: redis server must be a URL", id="redis"),
        pytest.param(
            ["ingest", "--memcache", "a:1", "--redis", "redis://a"],
            "--memcache and --redis are mutually exclusive",
            id="memcache-and-redis",
        ),
        pytest.param(["ingest", "--batch-size", "0"], "--batch-size must be in [1, 1000000], got 0", id="batch"),
        pytest.param(["ingest", "--default", "x"], "default needs", id="default-without-counters"),
        pytest.param([], "required: command", id="no-command"),
    ],
)
def test_bad_arguments_are_explained(args, message):
    proc = command(*args)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and message in err, err


def test_help_names_the_commands():
    proc = command("--help")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "ingest" in out and "dashboard" in out


@pytest.mark.parametrize(
    "memcache, redis, environ, expected",
    [
        pytest.param(None, None, {}, None, id="nothing-is-this-process"),
        pytest.param(None, None, {"SAMPLEZ_MEMCACHE": "a:1"}, "memcache a:1", id="memcache-from-environment"),
        pytest.param(None, None, {"SAMPLEZ_REDIS": "redis://a/2"}, "redis a:6379/2", id="redis-from-environment"),
        pytest.param("b:2", None, {"SAMPLEZ_REDIS": "redis://a"}, "memcache b:2", id="option-over-environment"),
        pytest.param(None, "redis://b", {"SAMPLEZ_MEMCACHE": "a:1"}, "redis b:6379/0", id="redis-option-first"),
    ],
)
def test_the_store_options_and_environment(memcache, redis, environ, expected):
    store = store_from(memcache, redis, environ)
    assert (store.describe() if store is not None else None) == expected


def test_both_stores_in_the_environment_is_a_usage_error():
    with pytest.raises(UsageError, match=r"\$SAMPLEZ_MEMCACHE and \$SAMPLEZ_REDIS are mutually exclusive"):
        store_from(None, None, {"SAMPLEZ_MEMCACHE": "a:1", "SAMPLEZ_REDIS": "redis://a"})


def wait_for(check: Callable[[], bool], timeout: float = 20) -> None:
    """Poll ``check`` until it is true (an assertion error past ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_ingest_then_dashboard_share_no_module_only_the_store(backend: Backend):
    """Bootic's flow across processes: ingest makes a calendar counter per
    event type; a dashboard given no --sections serves its API, its pages
    and /metrics from what ingest published, also once ingest has stopped."""
    server, prefix = backend.shared(), unique_name("e2e")
    pageview, order = unique_name("pageview"), unique_name("order")
    store = [*backend.option(server), "--prefix", prefix]
    viewer, url = dashboard(store)
    ingest = python_m("samplez", "ingest", *store, "--flush-interval", "0.2", stdin=subprocess.PIPE)
    assert ingest.stdin is not None
    try:
        assert json.loads(get(url + "?format=json")[1])["sections"] == []
        lines = [
            json.dumps({"type": t, "data": {"account": a}}) for t, a in [(pageview, "acme")] * 3 + [(order, "shop")]
        ]
        ingest.stdin.write("\n".join(lines) + "\n")
        ingest.stdin.flush()

        def shown() -> dict[str, Any]:
            page = json.loads(get(url + "?format=json")[1])
            return {m["name"]: m for s in page["sections"] for m in s["metrics"]}

        wait_for(lambda: {pageview, order} <= shown().keys())
        metrics = shown()
        assert {m["kind"] for m in metrics.values()} == {"calendar"}
        assert {row["key"]: row["value"] for row in metrics[pageview]["rows"]}["acme"] == 3
        _, err = ingest.communicate(timeout=30)  # end of input: ingest stops
        assert ingest.returncode == 0 and "4 events read, 4 applied" in err, err
        now = time.gmtime()
        status, body = get(f"{url}api/stats/track/acme/{pageview}/{now.tm_year}/{now.tm_mon:02d}")
        assert status == 200 and json.loads(body)["data"][str(now.tm_mday)] == 3
        status, body = get(f"{url}api/stats/track/all/{order}/{now.tm_year}")
        assert status == 200 and json.loads(body)["data"][str(now.tm_mon)] == 1
        status, body = get(url + "metrics")
        assert status == 200 and f"samplez_{pageview}".encode() in body and b'key="acme"' in body
        assert pageview in shown()  # the writer stopped; its data, and so its definition, live on
    finally:
        if ingest.poll() is None:
            stop(ingest)
        assert stop(viewer)[0] == 0

"""``/metrics``: every metric in the Prometheus text format or OpenMetrics,
read from the store, reading what ``samplez.get`` reads; parsed back by
prometheus_client's parsers and checked by ``promtool``."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections import Counter
from typing import Any, Sequence

import pytest
import webtest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

import samplez
from samplez.dashboard.exposition import metric_name, scrape, wants_openmetrics
from samplez.requests import every_request_metrics
from samplez.store.base import Op
from tests.conftest import unique_name

LOCAL = {"REMOTE_ADDR": "127.0.0.1"}
REMOTE = {"REMOTE_ADDR": "10.1.2.3"}
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
HOSTILE = ['quote " here', "back\\slash", "new\nline", "lone \udc80 surrogate", 'all } # {"', "ünï 🚀"]


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def fetch(app: Any, accept: str = "", environ: dict[str, str] | None = None, status: int = 200, **headers: str) -> Any:
    if accept:
        headers["Accept"] = accept
    return webtest.TestApp(app).get("/metrics", headers=headers, extra_environ=environ or LOCAL, status=status)


def samples(body: str, openmetrics: bool) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` as prometheus_client parses it."""
    parse = parse_openmetrics if openmetrics else parse_text
    found = {}
    for family in parse(body):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.mark.parametrize(
    "accept, openmetrics",
    [
        pytest.param("", False, id="none"),
        pytest.param("text/plain", False, id="text"),
        pytest.param("*/*", False, id="anything"),
        pytest.param("application/openmetrics-text", True, id="openmetrics"),
        pytest.param("application/openmetrics-text; version=1.0.0", True, id="openmetrics-version"),
        pytest.param("Application/OpenMetrics-Text;q=0.5", True, id="case-and-q"),
        pytest.param("application/openmetrics-text;q=0", False, id="refused"),
        pytest.param("application/openmetrics-text;q=nope", False, id="bad-q"),
        pytest.param(PROMETHEUS_ACCEPT, True, id="prometheus-2"),
        pytest.param(";;,,=", False, id="garbage"),
    ],
)
def test_openmetrics_only_when_asked(accept, openmetrics):
    assert wants_openmetrics(accept) is openmetrics
    response = fetch(samplez.Dashboard(), accept)
    expected = "application/openmetrics-text; version=1.0.0" if openmetrics else "text/plain; version=0.0.4"
    assert response.headers["Content-Type"].startswith(expected)
    assert response.body.endswith(b"# EOF\n") is openmetrics


@pytest.mark.parametrize(
    "name, expected",
    [
        pytest.param("hits", "samplez_hits", id="plain"),
        pytest.param("a.b-c", "samplez_a_b_c", id="dot-and-dash"),
        pytest.param("9lives", "samplez_9lives", id="leading-digit"),
    ],
)
def test_metric_names(name, expected):
    assert metric_name(name) == expected


def _every_kind() -> tuple[samplez.Section, dict[str, Any]]:
    kinds = {
        "latency": samplez.Config(unique_name("lat"), period=3600, samples=100, by_value=True, value_units="ms"),
        "popular": samplez.Config(unique_name("pop"), period=3600, samples=100, by_value=True, title="Popular"),
        "hits": samplez.RollingCounter(unique_name("hits"), window=60, buckets=6, title="Hits"),
        "peak": samplez.RollingMax(unique_name("peak"), window=60, buckets=6),
        "orders": samplez.SteppedCounter(unique_name("orders"), step=3600),
        "visitors": samplez.UniqueCounter(unique_name("visitors"), step=3600),
        "hll": samplez.HyperLogLogCounter(unique_name("hll"), step=3600),
        "actives": samplez.BitmapCounter(unique_name("actives"), step=3600),
        "views": samplez.CalendarCounter(unique_name("views")),
    }
    return samplez.Section("Every kind", *kinds.values()), kinds


def _fill(kinds: dict[str, Any], keys: list[str]) -> None:
    for n, key in enumerate(keys):
        for i in range(n + 1):
            samplez.set(kinds["latency"], key, 10.0 * (i + 1))
            samplez.set(kinds["popular"], key)
            samplez.set(kinds["hits"], key)
            samplez.set(kinds["peak"], key, i + 0.5)
            samplez.set(kinds["orders"], key, 2)
            samplez.set([kinds["visitors"], kinds["hll"], kinds["actives"]], key, i)
            samplez.set(kinds["views"], key)
    samplez.flush()


def _expected(kinds: dict[str, Any], keys: list[str]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What ``samplez.get`` reads, named and labelled as /metrics shows it."""
    expected = {}
    for key in keys:
        label = key.encode("utf-8", "replace").decode()  # a lone surrogate is stored as "?"
        by_key = (("key", label),)
        latency, popular = samplez.get(kinds["latency"]), samplez.get(kinds["popular"])
        name = metric_name(kinds["latency"].name) + "_seconds"
        for q in (0.5, 0.95, 0.99):
            expected[(name, (("key", label), ("quantile", str(q))))] = latency.percentile(label, q * 100) / 1000
        expected[(name + "_count", by_key)] = latency.count(label)
        expected[(name + "_sum", by_key)] = latency.average(label) * latency.count(label) / 1000
        expected[(metric_name(kinds["popular"].name) + "_count", by_key)] = popular.count(label)
        hits = samplez.get(kinds["hits"])[label]
        expected[(metric_name(kinds["hits"].name) + "_total", by_key)] = hits.cumulative
        expected[(metric_name(kinds["hits"].name) + "_window", by_key)] = hits.total
        expected[(metric_name(kinds["peak"].name), by_key)] = samplez.get(kinds["peak"])[label].max
        for kind in ("orders", "visitors", "hll", "actives"):
            expected[(metric_name(kinds[kind].name), by_key)] = samplez.get(kinds[kind])[label].value
        views = samplez.get(kinds["views"])[label]
        for period in ("hour", "day", "month", "year"):
            labels = (("key", label), ("period", period))
            expected[(metric_name(kinds["views"].name), labels)] = getattr(views, period)
    return expected


@pytest.mark.parametrize("accept", [pytest.param("", id="text"), pytest.param(PROMETHEUS_ACCEPT, id="openmetrics")])
def test_every_kind_reads_as_samplez_get_reads(samplez_on, accept):
    section, kinds = _every_kind()
    keys = ["/a", "/b", *HOSTILE]
    _fill(kinds, keys)
    body = fetch(samplez.Dashboard(sections=section), accept).text
    found = samples(body, openmetrics=bool(accept))
    expected = _expected(kinds, keys)
    assert {k: found.get(k) for k in expected} == pytest.approx(expected)


def test_types_and_help(samplez_on):
    section, kinds = _every_kind()
    _fill(kinds, ["/a"])
    families = {f.name: f for f in parse_text(fetch(samplez.Dashboard(sections=section)).text)}
    hits = metric_name(kinds["hits"].name)
    assert (families[hits].type, families[hits].documentation) == ("counter", "Hits, since first seen")
    assert families[hits + "_window"].type == "gauge"
    assert families[metric_name(kinds["latency"].name) + "_seconds"].type == "summary"
    assert families[metric_name(kinds["popular"].name)].documentation == "Popular, current 3600 s period"
    for kind in ("peak", "orders", "visitors", "hll", "actives", "views"):
        assert families[metric_name(kinds[kind].name)].type == "gauge", kind
    assert families["samplez_worker_cpu_seconds"].type == "gauge"


def test_request_metrics_carry_method_route_and_status(samplez_on):
    metrics = samplez.RequestMetrics(prefix=unique_name("web"))
    app = samplez.Middleware(lambda environ, start: [start("200 OK", []) and b"ok"], request_metrics=metrics)
    client = webtest.TestApp(app)
    for path in ("/users/1", "/users/2", "/about"):
        client.get(path)
    client.post("/about")
    samplez.flush()
    found = samples(client.get("/_samplez/metrics", extra_environ=LOCAL).text, openmetrics=False)
    prefix = metric_name(metrics.requests.name)[: -len("_requests")]
    route = (("method", "GET"), ("route", "/users/<int>"))
    assert found[(prefix + "_requests_total", route)] == 2
    assert found[(prefix + "_requests_total", (("method", "POST"), ("route", "/about")))] == 1
    assert found[(prefix + "_statuses_total", (("status", "200"),))] == 4
    assert found[(prefix + "_latency_seconds_count", route)] == 2
    assert found[(prefix + "_slowest_seconds", route)] < 1
    # The scrape itself is not a request of the site.
    assert samplez.get(metrics.requests).keys() == ["GET /users/<int>", "GET /about", "POST /about"]


@pytest.mark.parametrize("accept", [pytest.param("", id="text"), pytest.param(PROMETHEUS_ACCEPT, id="openmetrics")])
def test_hostile_keys_come_back_as_label_values(samplez_on, accept):
    counter = samplez.RollingCounter(unique_name("hostile"), window=60)
    for key in HOSTILE:
        samplez.set(counter, key)
    samplez.flush()
    body = fetch(samplez.Dashboard(sections=samplez.Section("H", counter)), accept).text
    found = samples(body, openmetrics=bool(accept))
    labels = {dict(labels)["key"] for name, labels in found if name == metric_name(counter.name) + "_total"}
    assert labels == {key.encode("utf-8", "replace").decode() for key in HOSTILE}


def test_promtool_accepts_the_text_format(samplez_on):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (./dev does)"
    section, kinds = _every_kind()
    _fill(kinds, ["/a", "/b", *HOSTILE])
    metrics = samplez.RequestMetrics(prefix=unique_name("web"))
    samplez.set(metrics.requests, "GET /x")
    samplez.set(metrics.latency, "GET /x", 12)
    samplez.flush()
    body = fetch(samplez.Dashboard(sections=[section, metrics.section])).body
    check = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_two_names_for_one_prometheus_name_keep_the_output_valid(samplez_on, caplog):
    stem = unique_name("same")
    first, second = samplez.RollingMax(f"{stem}.x", window=60), samplez.RollingMax(f"{stem}_x", window=60)
    samplez.set([first, second], "k", 1)
    samplez.flush()
    body = fetch(samplez.Dashboard(sections=samplez.Section("Twins", first, second))).text
    assert [f.name for f in parse_text(body)].count(metric_name(first.name)) == 1
    assert "already taken" in caplog.text


@pytest.mark.parametrize(
    "auth, metrics_auth, environ, headers, status",
    [
        pytest.param(None, None, LOCAL, {}, 200, id="loopback"),
        pytest.param(None, None, REMOTE, {}, 403, id="remote"),
        pytest.param(("ops", "pw"), None, REMOTE, basic("ops", "pw"), 200, id="dashboard-auth"),
        pytest.param(None, ("prom", "pw"), REMOTE, basic("prom", "pw"), 200, id="metrics-auth"),
        pytest.param(None, ("prom", "pw"), REMOTE, basic("prom", "no"), 401, id="metrics-auth-wrong"),
        pytest.param(None, ("prom", "pw"), LOCAL, {}, 401, id="metrics-auth-replaces-loopback"),
        pytest.param(("ops", "pw"), ("prom", "pw"), REMOTE, basic("ops", "pw"), 401, id="dashboard-user-not-metrics"),
        pytest.param(None, lambda environ: True, REMOTE, {}, 200, id="callable-open"),
    ],
)
def test_access(auth, metrics_auth, environ, headers, status):
    fetch(samplez.Dashboard(auth=auth, metrics_auth=metrics_auth), environ=environ, status=status, **headers)


def test_metrics_auth_opens_metrics_only():
    app = webtest.TestApp(samplez.Dashboard(metrics_auth=("prom", "pw")))
    app.get("/metrics", headers=basic("prom", "pw"), extra_environ=REMOTE, status=200)
    app.get("/", headers=basic("prom", "pw"), extra_environ=REMOTE, status=403)
    app.get("/health", extra_environ=LOCAL, status=200)


def test_bad_metrics_auth_is_a_config_error():
    with pytest.raises(samplez.ConfigError, match="auth must be"):
        samplez.Dashboard(metrics_auth=("only-user",))


@pytest.mark.parametrize(
    "method, query, status",
    [
        pytest.param("GET", "format=json&limit=abc&period=nope", 200, id="query-ignored"),
        pytest.param("HEAD", "", 200, id="head"),
        pytest.param("POST", "", 405, id="post"),
    ],
)
def test_requests_of_any_shape(method, query, status):
    app = webtest.TestApp(samplez.Dashboard(), extra_environ=LOCAL)
    response = app.request("/metrics?" + query, method=method, expect_errors=True)
    assert response.status_int == status
    assert "Traceback" not in response.text


def test_an_unreachable_store_fails_the_scrape():
    dead = samplez.MemcacheStore("127.0.0.1:1", timeout=0.2)
    samplez.RollingCounter(unique_name("dead"), window=60)
    response = fetch(samplez.Dashboard(store=dead), status=503)
    assert response.content_type == "text/plain" and "could not be read" in response.text


def test_a_scrape_costs_round_trips_per_metric_never_per_key(memcached):
    samplez.configure(store=samplez.MemcacheStore(memcached.address), flush="request")
    section, kinds = _every_kind()
    _fill(kinds, ["/k0"])
    few = scrape([section], None)
    _fill(kinds, [f"/k{i}" for i in range(40)])
    many = scrape([section], None)
    assert (few.failures, many.failures) == (0, 0)
    assert many.round_trips == few.round_trips
    # Per metric: a reservoir 1, a counter 2 (index, data), a bitmap 3;
    # 2 for the workers; the request metrics of the process, if any.
    request_metrics = sum(len(m.metrics) for m in every_request_metrics())
    assert few.round_trips <= 2 * 1 + 6 * 2 + 3 + 2 + 2 * request_metrics


class CountingGets(samplez.Store):
    """``store``, counting the gets of each metric (by the name in the key)."""

    def __init__(self, store: samplez.Store) -> None:
        self.store = store
        self.gets: Counter[str] = Counter()

    def execute(self, ops: Sequence[Op]) -> tuple[list[Any], int]:
        self.gets.update(op.key.split(":")[1] for op in ops if op.cmd == "get")
        return self.store.execute(ops)


#: Gets per key of each counter in a scrape: its current values only (a
#: window's 6 buckets and the cumulative count; a step; a bitmap's directory
#: and its one chunk; a calendar's hour, day, month and year), no history.
GETS_PER_KEY = {"hits": 7, "peak": 6, "orders": 1, "visitors": 1, "hll": 1, "actives": 2, "views": 4}


def test_a_scrape_reads_only_current_values_of_each_key(samplez_on):
    section, kinds = _every_kind()
    keys = [f"/k{i}" for i in range(40)]
    _fill(kinds, keys)
    counting = CountingGets(samplez_on)
    assert scrape([section], counting).failures == 0
    for kind, per_key in GETS_PER_KEY.items():
        listed = len(keys) + (kind == "views")  # a calendar also lists "all"
        assert counting.gets[kinds[kind].name] == 1 + per_key * listed, kind  # 1: the key index

"""The dashboard's pages on a real WSGI stack (webtest), on both stores:
routes, sorting, top-N, periods, drill-down, JSON twins, escaping, the
security headers and the health panel."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest
import webtest

import samplez
from samplez.dashboard.formatting import duration, num, pct
from samplez.dashboard.views import top_rows
from samplez.metric import Metric
from samplez.registry import unregister
from samplez.reservoir import ROW_FIELDS
from samplez.testing import free_port
from tests.conftest import Clock, unique_name

LOCAL = {"REMOTE_ADDR": "127.0.0.1"}
XSS = "<img src=x onerror=alert(1)>"


def test_only_a_dashboard_made_loads_jinja2_and_werkzeug() -> None:
    # Loaded by the first Dashboard made, not by a module __getattr__ (which
    # would slow every attribute lookup on samplez): import samplez stays light.
    script = (
        "import sys, samplez\n"
        "print(hasattr(samplez, '__getattr__'), 'jinja2' in sys.modules, 'werkzeug' in sys.modules)\n"
        "samplez.Dashboard()\n"
        "print('jinja2' in sys.modules, 'werkzeug' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False", "True", "True"]


def local_app(dashboard: Any) -> webtest.TestApp:
    """A webtest client for ``dashboard`` that looks like a loopback client."""
    return webtest.TestApp(dashboard, extra_environ=LOCAL)


def strict_json(text: str) -> Any:
    """Parse JSON, refusing NaN and Infinity (not JSON, though Python writes them)."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not valid JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def table_keys(html: str) -> list[str]:
    """The keys of the first data table, in page order (as rendered text)."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r'<td class="k"><a [^>]*>([^<]*)</a>', body)


def parsed_tags(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Every start tag of ``html`` with its attributes, as a browser parses them."""
    tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.append((tag, attrs))

    Collector().feed(html)
    return tags


@dataclass
class Reading:
    """A counter reading with the dashboard contract: a value and a series."""

    display_value: float
    series: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"display_value": self.display_value, "series": self.series}


class Gauge(Metric):
    """A tiny metric of an unknown kind, rendered by the generic path."""

    kind = "gauge"

    def __init__(self, name: str, readings: dict[str, Reading], fail: bool = False) -> None:
        super().__init__(name)
        self.readings, self.fail = readings, fail
        self._register()

    def read(self, ctx: Any, **options: Any) -> dict[str, Reading]:
        if self.fail:
            raise RuntimeError("the gauge is broken")
        return self.readings


@pytest.fixture
def latency(samplez_on: samplez.Store, clock: Clock) -> samplez.Config:
    """A config with three keys of known counts and values, plus a hostile key.

    /a: 30 samples 100..129; /b: 20 samples of 500; /c: 10 samples 1..10.
    """
    config = samplez.Config(
        unique_name("lat"), period=300, samples=1000, by_value=True, value_units="ms", key_name="URL"
    )
    for i in range(30):
        samplez.set(config, "/a", 100 + i)
    for _ in range(20):
        samplez.set(config, "/b", 500)
    for i in range(10):
        samplez.set(config, "/c", i + 1)
    samplez.set(config, XSS, 7)
    clock.advance(60)
    samplez.flush()
    yield config
    unregister(config)


@pytest.fixture
def app(latency: samplez.Config) -> webtest.TestApp:
    return local_app(samplez.Dashboard(sections=samplez.Section("Latency", latency)))


def test_index_shows_sections_configs_and_the_summary(app, latency):
    page = app.get("/")
    assert page.status_int == 200 and page.content_type == "text/html"
    assert "<h2>Latency</h2>" in page.text and latency.name in page.text
    assert table_keys(page.text)[:3] == ["/a", "/b", "/c"]  # by frequency
    assert "61</b> events" in page.text and "4</b> unique keys" in page.text
    assert ">URL<" in page.text and "<small> ms</small>" in page.text
    for header in ("Samples", "Frequency", "Average", "Min", "Max", "p50", "p95", "p99", "Share"):
        assert f">{header}<" in page.text


@pytest.mark.parametrize(
    "query, expected",
    [
        pytest.param({}, ["/a", "/b", "/c", XSS], id="default-frequency-desc"),
        pytest.param({"sort": "average"}, ["/b", "/a", XSS, "/c"], id="average-desc"),
        pytest.param({"sort": "min", "order": "asc"}, ["/c", XSS, "/a", "/b"], id="min-asc"),
        pytest.param({"sort": "key"}, ["/a", "/b", "/c", XSS], id="key-asc-by-default"),
        pytest.param({"sort": "key", "order": "desc"}, [XSS, "/c", "/b", "/a"], id="key-desc"),
        pytest.param({"sort": "count", "order": "asc"}, [XSS, "/c", "/b", "/a"], id="count-asc"),
        pytest.param({"sort": "p99"}, ["/b", "/a", "/c", XSS], id="p99-desc"),
    ],
)
def test_sorting_by_any_column(app, latency, query, expected):
    rows = strict_json(app.get(f"/config/{latency.name}", params={**query, "format": "json"}).text)["metric"]["rows"]
    assert [row["key"] for row in rows] == expected
    html_keys = table_keys(app.get(f"/config/{latency.name}", params=query).text)
    assert html_keys == [k.replace("<", "&lt;").replace(">", "&gt;") for k in expected]


def test_header_links_sort_and_flip_the_order(app, latency):
    page = app.get(f"/config/{latency.name}")
    average = page.click(href=r"sort=average")
    assert "sort=average" in average.request.url and "order=desc" in average.request.url
    assert table_keys(average.text)[:2] == ["/b", "/a"]
    flipped = average.click(href=r"sort=average&(amp;)?order=asc")
    assert table_keys(flipped.text)[-1] == "/b"


def test_limit_keeps_the_top_n_and_says_so(app, latency):
    data = strict_json(app.get("/", params={"limit": "2", "format": "json"}).text)
    metric = data["sections"][0]["metrics"][0]
    assert data["limit"] == 2 and len(metric["rows"]) == 2 and metric["unique_keys"] == 4
    assert "top 2 of 4 keys" in app.get("/", params={"limit": "2"}).text


def test_previous_period(app, latency, clock):
    clock.advance(300)
    current = strict_json(app.get("/", params={"format": "json"}).text)["sections"][0]["metrics"][0]
    previous = strict_json(app.get("/", params={"period": "previous", "format": "json"}).text)
    metric = previous["sections"][0]["metrics"][0]
    assert current["rows"] == [] and current["total_events"] == 0
    assert previous["period"] == "previous" and metric["total_events"] == 61 and metric["elapsed"] == 300
    assert "no samples in this period yet" in app.get("/").text


def test_key_drill_down_shows_samples_and_a_histogram(app, latency):
    page = app.get(f"/config/{latency.name}/key", params={"key": "/a"})
    assert '<svg class="histogram"' in page.text and page.text.count('<tr><td class="k">') == 30
    data = strict_json(app.get(f"/config/{latency.name}/key", params={"key": "/a", "format": "json"}).text)["key"]
    assert data["row"]["count"] == 30 and data["row"]["min"] == 100 and data["row"]["max"] == 129
    assert data["samples_total"] == 30 and sum(data["histogram"]["counts"]) == 30
    assert [value for _, value in data["samples"]] == sorted((100.0 + i for i in range(30)), reverse=True)
    assert 0.49 < data["row"]["share"] < 0.5  # 30 of 61 samples: the share is the key's own, not 100 %


def test_key_links_carry_any_text_in_the_query_string(samplez_on, clock):
    config = samplez.Config(unique_name("odd"), period=60, samples=100, by_value=True)
    key = "/search?q=a&b=c#frag/../é %2F"
    samplez.set(config, key, 3)
    samplez.flush()
    app = local_app(samplez.Dashboard(sections=samplez.Section("Odd", config)))
    drill = app.get(f"/config/{config.name}").click(href=r"/key\?")
    assert strict_json(app.get(drill.request.path_qs + "&format=json").text)["key"]["key"] == key
    assert "1 of 1" in drill.text


def test_an_unseen_key_has_an_empty_drill_down(app, latency):
    page = app.get(f"/config/{latency.name}/key", params={"key": "/never"})
    assert "No samples for this key" in page.text


def test_every_page_has_a_valid_json_twin(app, latency):
    for url in ("/", f"/config/{latency.name}", f"/config/{latency.name}/key?key=/b", "/health"):
        response = app.get(url, params={"format": "json"})
        assert response.content_type == "application/json"
        data = strict_json(response.text)
        assert isinstance(data, dict) and data
    index = strict_json(app.get("/?format=json").text)
    metric = index["sections"][0]["metrics"][0]
    assert set(metric["rows"][0]) == set(ROW_FIELDS)
    assert metric["rows"][0]["key"] == "/a" and metric["rows"][0]["count"] == 30
    assert metric["kind"] == "reservoir" and metric["value_units"] == "ms" and metric["reachable"] is True
    assert index["health"]["flusher"]["applied"] >= 61


@pytest.mark.parametrize("url", ["/", "/config/{name}", "/config/{name}/key?key={xss}", "/health", "/nowhere"])
def test_every_page_is_inert_and_carries_the_security_headers(app, latency, url):
    response = app.get(url.format(name=latency.name, xss=XSS), expect_errors=True)
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    tags = parsed_tags(response.text)
    assert tags and not [t for t, _ in tags if t in ("script", "img", "iframe", "object")]
    assert not [(t, a) for t, attrs in tags for a, _ in attrs if a.startswith("on") or a == "style"]
    assert not [v for _, attrs in tags for a, v in attrs if a in ("src", "href") and v and "//" in v]


def test_a_hostile_key_is_escaped_everywhere(app, latency):
    escaped = "&lt;img src=x onerror=alert(1)&gt;"
    for url in ("/", f"/config/{latency.name}", f"/config/{latency.name}/key?key={XSS}"):
        text = app.get(url).text
        assert escaped in text and XSS not in text
    data = strict_json(app.get(f"/config/{latency.name}?format=json").text)
    assert XSS in [row["key"] for row in data["metric"]["rows"]]


def test_values_near_the_float_limit_show_on_every_page(samplez_on, clock):
    huge = sys.float_info.max
    config = samplez.Config(unique_name("huge"), period=300, samples=100, by_value=True)
    slowest = samplez.RollingMax(unique_name("slowest"), window=60, buckets=6)
    for key, values in {"/same": [1e308, 1e308], "/wide": [-1e308, 1e308], "/max": [huge] * 3}.items():
        for value in values:
            samplez.set(config, key, value)
    samplez.set(slowest, "/wide", -huge)
    clock.advance(10)
    samplez.set(slowest, "/wide", huge)
    samplez.flush()
    app = local_app(samplez.Dashboard(sections=samplez.Section("Huge", config, slowest)))
    for metric, key in ((config, "/same"), (config, "/wide"), (config, "/max"), (slowest, "/wide")):
        for url in ("/", f"/config/{metric.name}", f"/config/{metric.name}/key?key={key}"):
            assert app.get(url).status_int == 200
            assert strict_json(app.get(url, params={"format": "json"}).text)
    rows = strict_json(app.get(f"/config/{config.name}?format=json").text)["metric"]["rows"]
    assert {row["key"]: row["average"] for row in rows} == {"/same": 1e308, "/wide": 0.0, "/max": huge}
    wide = strict_json(app.get(f"/config/{config.name}/key?key=/wide&format=json").text)["key"]
    assert wide["histogram"]["edges"][0] == -1e308 and wide["histogram"]["edges"][-1] == 1e308
    assert None not in wide["histogram"]["edges"] and sum(wide["histogram"]["counts"]) == 2
    for points in re.findall(r'points="([^"]*)"', app.get("/").text):
        assert "nan" not in points and "inf" not in points, points
    unregister(config, slowest)


def test_stylesheet_is_served_from_the_package(app):
    css = app.get("/static/samplez.css")
    assert css.content_type == "text/css" and "table.data" in css.text


def test_health_panel(app, samplez_on):
    page = app.get("/health")
    assert "Last flush" in page.text and "Round trips" in page.text
    data = strict_json(app.get("/health?format=json").text)["health"]
    assert data["flusher"]["flushes"] >= 1 and data["flusher"]["pending"] == 0
    assert data["store"]["kind"] == samplez_on.kind and data["store"]["shared"] is samplez_on.shared
    note = "per-process MemoryStore"
    assert (note in page.text) is (not samplez_on.shared)
    if samplez_on.shared:
        assert list(data["store"]["servers"].values()) == ["up"]


def test_an_unreachable_store_is_reported_not_a_500():
    config = samplez.Config(unique_name("dead"), period=60, samples=10, by_value=True)
    dead = samplez.MemcacheStore(f"127.0.0.1:{free_port()}", connect_timeout=0.05, timeout=0.05)
    app = local_app(samplez.Dashboard(sections=samplez.Section("Dead", config), store=dead))
    page = app.get("/")
    assert "The store is unreachable" in page.text
    assert strict_json(app.get("/?format=json").text)["unreachable"] == [config.name]


def test_all_registered_sections_and_others(latency):
    section = samplez.Section("Registered", latency)
    loose = samplez.Config(unique_name("loose"), period=60, samples=10, by_value=True)
    try:
        data = strict_json(local_app(samplez.Dashboard()).get("/?format=json").text)
        titles = {s["title"]: [m["name"] for m in s["metrics"]] for s in data["sections"]}
        assert latency.name in titles["Registered"] and loose.name in titles["Other"]
        assert latency.name not in titles["Other"]
    finally:
        unregister(section, loose)


def test_a_counter_of_any_kind_shows_value_and_sparkline(samplez_on):
    gauge = Gauge(unique_name("gauge"), {"up": Reading(42, [1, 5, 3, 42]), "down": Reading(7, [9, 7])})
    app = local_app(samplez.Dashboard(sections=samplez.Section("Gauges", gauge)))
    page = app.get("/")
    assert table_keys(page.text) == ["up", "down"] and page.text.count('<svg class="spark"') == 2
    metric = strict_json(app.get("/?format=json").text)["sections"][0]["metrics"][0]
    assert metric["rows"][0] == {"key": "up", "value": 42, "series": [1, 5, 3, 42]}
    detail = strict_json(app.get(f"/config/{gauge.name}/key?key=up&format=json").text)["key"]
    assert detail["value"] == 42 and detail["detail"]["series"] == [1, 5, 3, 42]
    unregister(gauge)


def test_a_metric_that_fails_to_read_is_shown_failing(samplez_on, caplog):
    broken = Gauge(unique_name("broken"), {}, fail=True)
    app = local_app(samplez.Dashboard(sections=samplez.Section("Broken", broken)))
    with caplog.at_level(logging.ERROR, logger="samplez"):
        assert "could not read: RuntimeError" in app.get("/").text
        crash = app.get(f"/config/{broken.name}/key?key=x", status=500)
    assert crash.text == "500 Internal Server Error\n" and "Traceback" not in crash.text
    assert any("unexpected error" in r.getMessage() for r in caplog.records)
    unregister(broken)


def test_mounted_by_the_middleware_with_prefixed_links(latency):
    def wrapped(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"app"]

    app = local_app(samplez.Middleware(wrapped, sections=samplez.Section("Mounted", latency)))
    assert app.get("/_samplez").status_int == 308  # to /_samplez/, so relative URLs resolve
    for path in ("/_samplez", "/_samplez/"):
        page = app.get(path).maybe_follow()
        assert f'href="/_samplez/config/{latency.name}"' in page.text
        assert 'href="/_samplez/static/samplez.css"' in page.text
    assert app.get(f"/_samplez/config/{latency.name}").status_int == 200
    assert app.get("/other").text == "app"


@pytest.mark.parametrize(
    "value, expected",
    [
        pytest.param(1234567, "1,234,567", id="int"),
        pytest.param(12.3456, "12.3", id="three-digits"),
        pytest.param(0.045678, "0.0457", id="small"),
        pytest.param(999.7, "1,000", id="rounds-up-past-999"),
        pytest.param(123456.7, "123,457", id="large-float"),
        pytest.param(float("nan"), "–", id="nan"),
        pytest.param(None, "–", id="none"),
    ],
)
def test_numbers_read_at_a_glance(value, expected):
    assert num(value) == expected


def test_shares_and_durations():
    assert pct(0.1234) == "12.3 %" and pct(None) == "–"
    assert [duration(s) for s in (5, 252, 7500, 3 * 86400 + 4 * 3600)] == ["5 s", "4 min 12 s", "2 h 5 min", "3 d 4 h"]


@pytest.mark.parametrize("sort", ROW_FIELDS)
@pytest.mark.parametrize("reverse", [pytest.param(True, id="desc"), pytest.param(False, id="asc")])
def test_top_rows_sorts_like_the_result_does(samplez_on, clock, sort, reverse):
    config = samplez.Config(unique_name("top"), period=60, samples=500, by_value=True)
    for i in range(400):
        samplez.set(config, f"k{(i * 7919) % 37}", (i * 31) % 101)
    samplez.flush()
    result = samplez.get(config)
    for limit in (1, 5, 100):
        assert top_rows(result, sort, limit, reverse) == result.rows(sort=sort, limit=limit, reverse=reverse)
    unregister(config)

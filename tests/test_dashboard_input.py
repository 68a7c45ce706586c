"""The bad-input catalogue of the dashboard: bad paths and query values get
a clean 4xx page (JSON for ``format=json``), never a 500 or a traceback;
and the calendar JSON API with its 404s."""

from __future__ import annotations

from typing import Any

import pytest
import webtest

import samplez
from samplez.metric import Metric
from samplez.registry import unregister
from tests.conftest import unique_name
from tests.test_dashboard import LOCAL, Gauge, Reading, local_app, strict_json


class FakeCalendar(Metric):
    """A calendar-kind metric answering ``read(year=...)`` like the
    calendar counter: every key (and ``all``) to ``{segment: count}``."""

    kind = "calendar"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.asked: list[tuple[Any, ...]] = []
        self._register()

    def read(self, ctx: Any, year: Any = None, month: Any = None, day: Any = None, hour: Any = None) -> Any:
        self.asked.append((year, month, day, hour))
        if month is None:
            segments = {m: m * 10 for m in range(1, 13)}
        elif day is None:
            segments = {d: 1 for d in range(1, 29)}
        elif hour is None:
            segments = {h: h for h in range(24)}
        else:
            segments = {0: 5}
        return {"all": segments, "plan:pro": {s: c // 2 for s, c in segments.items()}}


@pytest.fixture
def metrics(samplez_on):
    config = samplez.Config(unique_name("cfg"), period=60, samples=10, by_value=True)
    calendar = FakeCalendar(unique_name("cal"))
    gauge = Gauge(unique_name("gauge"), {"k": Reading(1, [1])})
    yield config, calendar, gauge
    unregister(config, calendar, gauge)


@pytest.fixture
def app(metrics) -> webtest.TestApp:
    return local_app(samplez.Dashboard(sections=samplez.Section("All", *metrics)))


BAD_REQUESTS = [
    pytest.param("/config/nope", 404, id="unknown-config"),
    pytest.param("/config/nope?format=json", 404, id="unknown-config-json"),
    pytest.param("/config/{cfg}/", 404, id="trailing-slash"),
    pytest.param("/config/{cfg}/key", 400, id="key-missing"),
    pytest.param("/config/{cfg}/key?key=", 400, id="key-empty"),
    pytest.param("/?limit=abc", 400, id="limit-abc"),
    pytest.param("/?limit=-1", 400, id="limit-negative"),
    pytest.param("/?limit=0", 400, id="limit-zero"),
    pytest.param("/?limit=1.5", 400, id="limit-float"),
    pytest.param("/?limit=" + "9" * 31, 400, id="limit-10e30"),
    pytest.param("/?limit=" + "9" * 5000, 400, id="limit-5000-digits"),
    pytest.param("/?limit=%00", 400, id="limit-nul"),
    pytest.param("/?limit=%D9%A1%D9%A2", 400, id="limit-arabic-digits"),
    pytest.param("/?limit=", 400, id="limit-empty"),
    pytest.param("/?limit=%zz&period=%", 400, id="bad-percent-escapes"),
    pytest.param("/?limit=100001", 400, id="limit-too-large"),
    pytest.param("/?period=tomorrow", 400, id="period-unknown"),
    pytest.param("/?period=previous&format=json&limit=x", 400, id="bad-limit-json"),
    pytest.param("/?format=xml", 400, id="format-unknown"),
    pytest.param("/?sort=__class__", 400, id="sort-unknown"),
    pytest.param("/?sort=key&order=sideways", 400, id="order-unknown"),
    pytest.param("/config/{cfg}?format=json&sort=nope", 400, id="sort-unknown-json"),
    pytest.param("/%FF%FE", 404, id="invalid-utf8-path"),
    pytest.param("/config/%C3%28", 404, id="invalid-utf8-name"),
    pytest.param("/config/%00", 404, id="nul-in-name"),
    pytest.param("/" + "a" * 10_000, 404, id="10kb-path"),
    pytest.param("/config/" + "x/" * 5_000, 404, id="10kb-deep-path"),
    pytest.param("/config/<script>alert(1)</script>", 404, id="script-in-path"),
    pytest.param("/static/../setup.cfg", 404, id="path-traversal"),
    pytest.param("/static/base.html", 404, id="template-not-static"),
    pytest.param("/?limit=%2B5", 400, id="limit-plus-sign"),
    pytest.param("/?limit=%205", 400, id="limit-leading-space"),
    pytest.param("/?limit=1e3", 400, id="limit-exponent"),
    pytest.param("/?period=", 400, id="period-empty"),
    pytest.param("/config/{cfg}/key?key=k&format=json&sort=%00", 400, id="sort-nul-json"),
    pytest.param("/config/{cfg}?format=json&limit=0", 400, id="limit-zero-json"),
]

#: Odd but harmless: answered as usual.
ODD_REQUESTS = [
    pytest.param("/?q=%FF%FE", id="unknown-param-invalid-utf8"),
    pytest.param("/?" + "a=b&" * 2500, id="10kb-query-string"),
    pytest.param("/config/{cfg}/key?key=%FF%FE", id="key-invalid-utf8"),
    pytest.param("/api/stats/track/all/{cal}/1970/1/1/0", id="epoch-hour"),
]


@pytest.mark.parametrize("url", ODD_REQUESTS)
def test_odd_but_harmless_requests_are_answered(app, metrics, url):
    config, calendar, _ = metrics
    response = app.get(url.format(cfg=config.name, cal=calendar.name))
    assert response.status_int == 200 and "Traceback" not in response.text


@pytest.mark.parametrize("url, status", BAD_REQUESTS)
def test_bad_paths_and_queries_get_a_clean_4xx(app, metrics, url, status):
    response = app.get(url.format(cfg=metrics[0].name), status="*")
    assert response.status_int == status
    assert "Traceback" not in response.text and "Content-Security-Policy" in response.headers
    if "format=json" in url:
        assert response.content_type == "application/json"
        assert strict_json(response.text)["status"] == status
    else:
        assert response.content_type == "text/html"
        assert f"<h2>{status}</h2>" in response.text and "<script" not in response.text


def test_an_error_page_escapes_what_it_echoes(app):
    response = app.get("/?sort=<b>bold</b>", status=400)
    assert "&lt;b&gt;bold&lt;/b&gt;" in response.text and "<b>bold" not in response.text


@pytest.mark.parametrize(
    "method, status", [pytest.param("post", 405, id="post"), pytest.param("delete", 405, id="delete")]
)
def test_other_methods_are_refused(app, method, status):
    assert getattr(app, method)("/", status="*").status_int == status


def test_a_10kb_key_is_handled(app, metrics):
    response = app.get(f"/config/{metrics[0].name}/key", params={"key": "k" * 10_000})
    assert response.status_int == 200 and "No samples" in response.text


@pytest.mark.parametrize(
    "environ, status",
    [
        # A WSGI server hands raw path bytes over as latin-1 characters.
        pytest.param({"PATH_INFO": "/config/\xff\xfe\xc3("}, 404, id="raw-invalid-utf8-path"),
        pytest.param({"HTTP_HOST": "a" * 5000}, 400, id="host-no-url-can-hold"),
        pytest.param({"HTTP_HOST": "evil\r\nX-Injected: 1"}, 200, id="host-with-crlf"),
        pytest.param({"HTTP_HOST": "evil\r\nX-Injected: 1", "PATH_INFO": ""}, 308, id="redirect-crlf-host"),
        pytest.param({"SCRIPT_NAME": "/\xff<x>"}, 200, id="odd-script-name"),
        pytest.param({"REQUEST_METHOD": "\xff"}, 405, id="odd-method"),
    ],
)
def test_odd_environs_from_the_server(environ, status):
    app = webtest.TestApp(samplez.Dashboard(), extra_environ=LOCAL, lint=False)
    response = app.get("/", extra_environ=environ, status="*")
    assert response.status_int == status and "Traceback" not in response.text
    assert all("\n" not in value and "X-Injected" not in value for _, value in response.headerlist)
    assert "<x>" not in response.text


# -- the calendar API -------------------------------------------------------------


@pytest.mark.parametrize(
    "path, expected",
    [
        pytest.param("all/{cal}/2026", {"year": 2026, "month": None, "day": None, "hour": None}, id="year"),
        pytest.param("all/{cal}/2026/02", {"year": 2026, "month": 2, "day": None, "hour": None}, id="month-02"),
        pytest.param("all/{cal}/2026/2", {"year": 2026, "month": 2, "day": None, "hour": None}, id="month-2"),
        pytest.param("plan:pro/{cal}/2026/2/28", {"year": 2026, "month": 2, "day": 28, "hour": None}, id="day"),
        pytest.param("all/{cal}/2024/02/29/23", {"year": 2024, "month": 2, "day": 29, "hour": 23}, id="leap-hour"),
        pytest.param("all/{cal}/2026/12/31/00", {"year": 2026, "month": 12, "day": 31, "hour": 0}, id="hour-00"),
    ],
)
def test_calendar_api(app, metrics, path, expected):
    calendar = metrics[1]
    response = app.get("/api/stats/track/" + path.format(cal=calendar.name))
    data = strict_json(response.text)
    assert response.content_type == "application/json"
    assert data == {**expected, "event": calendar.name, "key": path.split("/")[0], "data": data["data"]}
    assert calendar.asked[-1] == tuple(expected.values())
    assert all(isinstance(v, int) for v in data["data"].values()) and data["data"]


def test_calendar_api_answers_the_counts(app, metrics):
    data = strict_json(app.get(f"/api/stats/track/plan:pro/{metrics[1].name}/2026").text)["data"]
    assert data == {str(m): m * 5 for m in range(1, 13)}


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("all/{cal}/2026/0", id="month-0"),
        pytest.param("all/{cal}/2026/13", id="month-13"),
        pytest.param("all/{cal}/2026/02/30", id="feb-30"),
        pytest.param("all/{cal}/2025/02/29", id="feb-29-not-leap"),
        pytest.param("all/{cal}/2026/04/31", id="april-31"),
        pytest.param("all/{cal}/2026/01/01/24", id="hour-24"),
        pytest.param("all/{cal}/-1", id="year-minus-1"),
        pytest.param("all/{cal}/0", id="year-0"),
        pytest.param("all/{cal}/10000", id="year-10000"),
        pytest.param("all/{cal}/two", id="year-word"),
        pytest.param("all/{cal}/2026/%D9%A1", id="unicode-digit"),
        pytest.param("all/{cal}/2026.0", id="year-decimal"),
        pytest.param("all/{cal}/2026/%2B2", id="month-plus-sign"),
        pytest.param("all/{cal}/2026/%202", id="month-space"),
        pytest.param("all/{cal}/" + "0" * 1000 + "2026", id="year-1000-zeros"),
        pytest.param("all/{cal}/99999999999999999999999", id="year-huge"),
        pytest.param("all/{cal}/2026/1/1/-0", id="hour-minus-zero"),
        pytest.param("all/{cal}/2026/00", id="month-00"),
        pytest.param("%FF/{cal}/2026", id="key-invalid-utf8"),
        pytest.param("all/{cal}/2026/1/1/1/1", id="too-deep"),
        pytest.param("nobody/{cal}/2026", id="unknown-key"),
        pytest.param("all/nope/2026", id="unknown-counter"),
        pytest.param("all/{cfg}/2026", id="not-a-calendar-reservoir"),
        pytest.param("all/{gauge}/2026", id="not-a-calendar-gauge"),
    ],
)
def test_calendar_api_404s_are_json(app, metrics, path):
    config, calendar, gauge = metrics
    url = "/api/stats/track/" + path.format(cal=calendar.name, cfg=config.name, gauge=gauge.name)
    response = app.get(url, status="*")
    assert response.status_int == 404 and response.content_type == "application/json"
    assert strict_json(response.text)["status"] == 404

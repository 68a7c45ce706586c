"""Request metrics with no code: what the middleware records by itself,
keyed by route, on raw WSGI and Flask apps (Django: tests/test_django.py)."""

from __future__ import annotations

import time

import pytest
import webtest
from flask import Flask, Response, stream_with_context

import samplez
from samplez.requests import default_request_metrics, request_key
from samplez.routes import collapse
from tests.conftest import unique_name

METRICS = default_request_metrics()


def raw_app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/boom"):
        raise RuntimeError("handler failed")
    if path.startswith("/named"):
        samplez.route("checkout")
    status = "404 Not Found" if path.startswith("/missing") else "200 OK"
    start_response(status, [("Content-Type", "text/plain")])
    return [b"ok"]


def totals(metrics=METRICS):
    result = samplez.get(metrics.requests)
    return {key: result[key].total for key in result.keys()}


@pytest.mark.parametrize(
    "path, expected",
    [
        pytest.param("/", "/", id="root"),
        pytest.param("/users/123/orders/9", "/users/<int>/orders/<int>", id="ints"),
        pytest.param("/users/123/orders/9f86d081", "/users/<int>/orders/<hex>", id="hex"),
        pytest.param("/o/123e4567-e89b-12d3-a456-426614174000", "/o/<uuid>", id="uuid"),
        pytest.param("/o/123E4567E89B12D3A456426614174000", "/o/<uuid>", id="uuid-bare"),
        pytest.param("/files/deadbeef", "/files/deadbeef", id="hex-word-without-digits"),
        pytest.param("/t/aGVsbG8gd29ybGQgMTIzNDU2", "/t/<token>", id="token"),
        pytest.param("/about-us/team", "/about-us/team", id="words"),
        pytest.param("/v2/items", "/v2/items", id="short-mixed"),
    ],
)
def test_a_path_collapses_its_variable_segments(path, expected):
    assert collapse(path) == expected


@pytest.mark.parametrize(
    "method, route, path, status, key",
    [
        pytest.param("GET", "/item/<int:item>", "/item/5", "200", "GET /item/<int:item>", id="route"),
        pytest.param("POST", None, "/users/7", "201", "POST /users/<int>", id="collapsed"),
        pytest.param("GET", None, "/wp-admin.php", "404", "GET (unmatched)", id="unmatched"),
        pytest.param("BREW", None, "/pot", "418", "OTHER /pot", id="unknown-method"),
        pytest.param("GET", "checkout", "/cart/9", "200", "GET checkout", id="named"),
    ],
)
def test_request_keys(method, route, path, status, key):
    assert request_key(method, route, path, status) == key


def test_a_wrapped_app_is_seen_with_no_code(samplez_on):
    client = webtest.TestApp(samplez.Middleware(raw_app))
    for path in ("/users/1", "/users/2", "/named/9", "/missing/a", "/missing/b"):
        client.get(path, status="*")
    with pytest.raises(RuntimeError):
        client.get("/boom")
    client.post("/users/3")
    samplez.flush()
    assert totals() == {
        "GET /users/<int>": 2,
        "GET checkout": 1,
        "GET (unmatched)": 2,
        "GET /boom": 1,
        "POST /users/<int>": 1,
    }
    statuses = samplez.get(METRICS.statuses)
    assert {key: statuses[key].total for key in statuses.keys()} == {"200": 4, "404": 2, "500": 1}
    latency = samplez.get(METRICS.latency)
    assert latency.count("GET /users/<int>") == 2 and latency.max("GET /users/<int>") < 1000
    assert samplez.get(METRICS.slowest)["GET /boom"].max > 0
    assert all(metric.name.startswith("http_") for metric in METRICS.metrics)


def test_latency_covers_a_streamed_body_until_its_last_chunk(samplez_on):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            yield b"a"
            time.sleep(0.05)
            yield b"b"

        return body()

    webtest.TestApp(samplez.Middleware(app)).get("/slow")
    samplez.flush()
    assert samplez.get(METRICS.latency).min("GET /slow") >= 50


def test_the_dashboard_and_excluded_paths_are_not_recorded(samplez_on):
    client = webtest.TestApp(samplez.Middleware(raw_app, exclude=["/static"]))
    client.get("/static/app.css")
    client.get("/_samplez/", extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    client.get("/kept")
    samplez.flush()
    assert totals() == {"GET /kept": 1}


def test_request_metrics_can_be_turned_off_or_tuned(samplez_on):
    webtest.TestApp(samplez.Middleware(raw_app, request_metrics=False)).get("/off")
    own = samplez.RequestMetrics(prefix=unique_name("http_api"), window=60, buckets=6, period=60)
    webtest.TestApp(samplez.Middleware(raw_app, request_metrics=own)).get("/tuned")
    samplez.flush()
    assert totals() == {}
    assert totals(own) == {"GET /tuned": 1}
    assert len(samplez.get(own.requests)["GET /tuned"].buckets) == 6
    samplez.unregister(own.section)


@pytest.mark.parametrize("bad", [pytest.param("yes", id="str"), pytest.param(1, id="int")])
def test_a_bad_request_metrics_argument_is_a_config_error(bad):
    with pytest.raises(samplez.ConfigError, match="request_metrics"):
        samplez.Middleware(raw_app, request_metrics=bad)


def test_exclude_must_be_path_prefixes():
    with pytest.raises(samplez.ConfigError, match="exclude"):
        samplez.Middleware(raw_app, exclude="/static")


def test_a_scanner_cannot_fill_the_key_space(samplez_on):
    client = webtest.TestApp(samplez.Middleware(raw_app))
    for i in range(2_000):
        client.get(f"/missing/{i}-probe.php", status=404)
    for i in range(2_000):
        client.get(f"/page-{i}", status=200)  # 2,000 distinct paths that look like routes
    samplez.flush()
    keys = samplez.get(METRICS.requests).keys()
    assert "GET (unmatched)" in keys and len(keys) <= METRICS.requests.max_keys + 1
    assert sum(totals().values()) == 4_000


def flask_app() -> Flask:
    app = Flask(__name__)

    @app.route("/item/<int:item>")
    def item(item):
        return {"item": item}

    @app.route("/shop/<slug>/cart", methods=["GET", "POST"])
    def cart(slug):
        return "cart"

    @app.route("/checkout")
    def checkout():
        samplez.route("checkout")  # the handler's name wins over the rule
        return "paid"

    @app.route("/stream")
    def stream():
        def rows():
            for i in range(3):
                yield f"row {i}\n"

        return Response(stream_with_context(rows()))

    @app.route("/fail")
    def fail():
        raise RuntimeError("handler failed")

    return app


def test_flask_requests_are_keyed_by_their_rule(samplez_on):
    app = flask_app()
    app.wsgi_app = samplez.Middleware(app.wsgi_app)
    client = app.test_client()
    for path in ("/item/1", "/item/2", "/shop/acme/cart", "/checkout", "/stream", "/nope", "/item/x"):
        client.get(path).close()
    client.post("/shop/acme/cart").close()
    client.get("/fail").close()
    samplez.flush()
    assert totals() == {
        "GET /item/<int:item>": 2,
        "GET /shop/<slug>/cart": 1,
        "POST /shop/<slug>/cart": 1,
        "GET checkout": 1,
        "GET /stream": 1,
        "GET (unmatched)": 2,
        "GET /fail": 1,
    }
    statuses = samplez.get(METRICS.statuses)
    assert statuses["500"].total == 1 and statuses["404"].total == 2

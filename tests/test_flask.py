"""Flask: ``app.wsgi_app = samplez.Middleware(app.wsgi_app)`` and the
dashboard mounted under a prefix, through Flask's test client."""

from __future__ import annotations

import base64

import pytest
from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import samplez
from tests.conftest import unique_name


@pytest.fixture
def section():
    section = samplez.Section(
        "Flask",
        samplez.Config(unique_name("flask_latency"), period=300, samples=100, by_value=True, value_units="ms"),
        samplez.RollingCounter(unique_name("flask_hits"), window=60),
    )
    yield section
    samplez.unregister(section)


def flask_app(section) -> Flask:
    app = Flask(__name__)
    latency, hits = section.metrics

    @app.route("/items/<int:item>")
    def item(item):
        samplez.set(latency, f"/items/{item}", 10 + item)
        samplez.set(hits, "items")
        return {"item": item}

    @app.route("/fail")
    def fail():
        samplez.set(hits, "fail")
        raise RuntimeError("handler failed")

    @app.errorhandler(RuntimeError)
    def failed(error):
        return "failed", 500

    return app


def get(client, path):
    """GET and close the response, as a server does: closing it is what
    ends the request's batch (the test client leaves it open otherwise)."""
    return client.get(path, buffered=True)


def test_middleware_wraps_flask_wsgi_app(samplez_on, section):
    app = flask_app(section)
    app.wsgi_app = samplez.Middleware(app.wsgi_app)
    client = app.test_client()
    for item in (1, 2, 2):
        assert get(client, f"/items/{item}").json == {"item": item}
    assert get(client, "/fail").status_code == 500
    latency, hits = section.metrics
    result = samplez.get(latency)
    assert (result.total_events, result.count("/items/2"), result.average("/items/2")) == (3, 2, 12.0)
    counts = samplez.get(hits)
    assert (counts["items"].total, counts["fail"].total) == (3, 1)


def test_middleware_serves_the_dashboard_at_its_path(samplez_on, section):
    app = flask_app(section)
    app.wsgi_app = samplez.Middleware(app.wsgi_app, dashboard_path="/ops/samplez", sections=[section])
    client = app.test_client()
    get(client, "/items/5")
    page = client.get("/ops/samplez/?format=json").json
    # The request metrics come first, then the sections given.
    assert [s["title"] for s in page["sections"]] == ["Requests", "Flask"]
    assert [m["name"] for m in page["sections"][1]["metrics"]] == [m.name for m in section.metrics]
    assert page["overview"]["busiest"] == [{"key": "GET /items/<int:item>", "requests": 1, "rate": 1.0, "share": 1.0}]
    assert client.get("/items/x").status_code == 404  # the app's own routes are untouched


def mounted(section, **dashboard):
    app = flask_app(section)
    app.wsgi_app = DispatcherMiddleware(
        samplez.Middleware(app.wsgi_app, dashboard_path=None),
        {"/admin/stats": samplez.Dashboard(sections=[section], **dashboard)},
    )
    return app.test_client()


def test_dashboard_mounted_under_a_flask_prefix(samplez_on, section):
    client = mounted(section)
    get(client, "/items/3")
    latency = section.metrics[0]
    html = client.get("/admin/stats/").text
    assert f'href="/admin/stats/config/{latency.name}' in html  # links keep the prefix
    detail = client.get(f"/admin/stats/config/{latency.name}?format=json").json
    assert detail["metric"]["total_events"] == 1
    assert client.get("/admin/stats/config/nope").status_code == 404
    assert client.get("/items/3").json == {"item": 3}


@pytest.mark.parametrize(
    "dashboard, environ, status",
    [
        pytest.param({}, {"REMOTE_ADDR": "127.0.0.1"}, 200, id="loopback"),
        pytest.param({}, {"REMOTE_ADDR": "203.0.113.9"}, 403, id="remote-refused"),
        pytest.param({"auth": ("ops", "s3cret")}, {"REMOTE_ADDR": "203.0.113.9"}, 401, id="basic-missing"),
        pytest.param(
            {"auth": ("ops", "s3cret")},
            {"REMOTE_ADDR": "203.0.113.9", "HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"ops:s3cret").decode()},
            200,
            id="basic-given",
        ),
        pytest.param(
            {"auth": lambda environ: environ.get("HTTP_X_STAFF") == "yes"},
            {"REMOTE_ADDR": "203.0.113.9", "HTTP_X_STAFF": "yes"},
            200,
            id="callable",
        ),
    ],
)
def test_mounted_dashboard_access(samplez_on, section, dashboard, environ, status):
    client = mounted(section, **dashboard)
    assert client.get("/admin/stats/", environ_base=environ).status_code == status

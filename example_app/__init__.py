"""The samplez demo: a small Flask site wrapped in the samplez middleware.

``example_app:app`` is the wrapped WSGI app (``gunicorn -w 4 example_app:app``
with ``SAMPLEZ_MEMCACHE`` set); ``python -m example_app`` serves it.
"""

from __future__ import annotations

import os
import random
import time

from flask import Flask, request

import samplez

POPULAR = samplez.Section(
    "Popular content",
    samplez.Config("content_10m", period=600, by_value=True, samples=10000, value_units="qps"),
    samplez.Config("domains_1h", period=3600, by_domain=True, samples=10000, value_units="qps", key_name="Domain"),
)
LATENCY = samplez.Section(
    "Latency",
    samplez.Config("latency_5m", period=300, by_value=True, samples=10000, value_units="ms", key_name="Endpoint"),
)

flask_app = Flask(__name__)


@flask_app.route("/")
def index() -> str:
    return "samplez demo: try /content/<n> and the dashboard at /_samplez/"


@flask_app.route("/content/<int:item>")
def content(item: int) -> str:
    started = time.perf_counter()
    time.sleep(random.expovariate(1 / 0.002))
    samplez.set(POPULAR, request.url)
    endpoint = request.url_rule.rule if request.url_rule else request.path
    samplez.set(LATENCY, endpoint, (time.perf_counter() - started) * 1000)
    return f"item {item}\n"


def _store() -> samplez.Store | None:
    servers = os.environ.get("SAMPLEZ_MEMCACHE")
    return samplez.MemcacheStore(servers) if servers else None


app = samplez.Middleware(flask_app.wsgi_app, store=_store())

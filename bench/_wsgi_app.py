"""The hello-world apps the benchmarks serve, under gunicorn
(``bench_throughput.py``, ``bench_instructions.py --figure worker``,
``soak_faults.py``) or called in-process (``bench_request_path.py``,
``bench_instructions.py``).

``BENCH_MODE`` picks what gunicorn serves:

* ``bare`` — the app alone;
* ``wrapped`` — the same app making 3 ``samplez.set`` calls per request,
  wrapped in the middleware (request metrics on) with the background
  flusher, MemcacheStore on ``SAMPLEZ_MEMCACHE``; ``BENCH_FLUSH_INTERVAL``
  sets the flusher's interval (seconds), and ``BENCH_FILL_RESERVOIRS=1``
  puts the reservoirs in their steady state (:func:`fill_reservoirs`);
* ``peer`` — the bare Flask app instrumented by the peer a user would pick
  instead of samplez: prometheus_flask_exporter's default instrumentation,
  ``PrometheusMetrics(app)``.

``BENCH_APP`` picks the app: ``wsgi`` (the default) a raw WSGI function,
``flask`` the same page from a Flask view (the stack samplez's users run),
``page`` a Flask view rendering a 50-row listing from a Jinja2 template.
"""

from __future__ import annotations

import os
import time
from typing import Any

import samplez

LATENCY = samplez.Config("tp_latency", period=300, samples=10_000, by_value=True, value_units="ms")
POPULAR = samplez.Config("tp_popular", period=600, samples=10_000, by_value=True)
STATUS = samplez.Config("tp_status", period=60, samples=1_000, by_value=True)
BODY = b"hello, world\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def bare(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", HEADERS)
    return [BODY]


def sampling(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    path = environ.get("PATH_INFO", "/")
    samplez.set(LATENCY, path, 1.5)
    samplez.set(POPULAR, path)
    samplez.set(STATUS, "200")
    start_response("200 OK", HEADERS)
    return [BODY]


#: The ``page`` app's view: a listing of 50 rows from a Jinja2 template.
PAGE = """<!doctype html><title>Item {{ item }}</title>
<h1>Item {{ item }}</h1>
<table>{% for row in rows %}
<tr><td>{{ row.name }}</td><td>{{ "%.2f"|format(row.price) }}</td></tr>{% endfor %}
</table>"""
ROWS = [{"name": f"product <{i}>", "price": i * 1.25} for i in range(50)]


def flask_app(sample: bool, page: bool = False, peer: bool = False) -> Any:
    """The Flask app: its view makes the 3 ``set`` calls if ``sample``;
    ``peer`` instruments it with ``PrometheusMetrics(app)``, on a registry
    of its own so that several apps can be built in one process."""
    from flask import Flask, render_template, request
    from jinja2 import DictLoader

    site = Flask("bench")
    site.jinja_loader = DictLoader({"item.html": PAGE})  # type: ignore[assignment]

    @site.route("/item/<int:item>")
    def item(item: int) -> Any:
        # Every mode reads the path, as a view that logs or routes by it
        # does, so the apps differ only by what samplez or the peer adds.
        path = request.path
        if sample:
            samplez.set(LATENCY, path, 1.5)
            samplez.set(POPULAR, path)
            samplez.set(STATUS, "200")
        if page:
            return render_template("item.html", item=item, rows=ROWS)
        return BODY, 200, {"Content-Type": "text/plain"}

    if peer:
        from prometheus_client import CollectorRegistry
        from prometheus_flask_exporter import PrometheusMetrics

        PrometheusMetrics(site, registry=CollectorRegistry())
    return site


def fill_reservoirs(memcache: str, prefix: str = "samplez", now: float | None = None) -> int:
    """Put every reservoir registered in this process in its steady state,
    full, as for most of a busy period: its current period's counter,
    ``<prefix>:<name>:<int(now // period)>:n``, set to 1,000,000 events, so
    the flush replaces a slot with the small chance it has then rather than
    filling an empty reservoir slot by slot. Returns how many were set."""
    import socket

    from samplez.registry import registered_metrics

    now = time.time() if now is None else now
    host, port = memcache.rsplit(":", 1)
    configs = [m for m in registered_metrics() if isinstance(m, samplez.Config)]
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        for config in configs:
            key = f"{prefix}:{config.name}:{int(now // config.period)}:n"
            conn.sendall(f"set {key} 0 {2 * config.period} 7\r\n1000000\r\n".encode())
            reply = b""
            while not reply.endswith(b"\r\n"):
                reply += conn.recv(64)
            if reply != b"STORED\r\n":
                raise RuntimeError(f"memcached answered {reply!r} to setting {key}")
    return len(configs)


MODE = os.environ.get("BENCH_MODE", "bare")
APP = os.environ.get("BENCH_APP", "wsgi")
if MODE not in ("bare", "wrapped", "peer") or APP not in ("wsgi", "flask", "page"):
    raise RuntimeError(f"BENCH_MODE={MODE!r} BENCH_APP={APP!r}: want bare|wrapped|peer and wsgi|flask|page")
if MODE == "peer" and APP == "wsgi":
    raise RuntimeError("BENCH_MODE=peer instruments a Flask app: set BENCH_APP=flask or page")

app: Any = bare
if APP != "wsgi":
    app = flask_app(sample=MODE == "wrapped", page=APP == "page", peer=MODE == "peer")
elif MODE == "wrapped":
    app = sampling
if MODE == "wrapped":
    settings: dict[str, Any] = {"store": samplez.MemcacheStore(os.environ["SAMPLEZ_MEMCACHE"])}
    if "BENCH_FLUSH_INTERVAL" in os.environ:
        settings["flush_interval"] = float(os.environ["BENCH_FLUSH_INTERVAL"])
    if APP == "wsgi":
        app = samplez.Middleware(app, **settings)
    else:
        app.wsgi_app = samplez.Middleware(app.wsgi_app, **settings)
    if os.environ.get("BENCH_FILL_RESERVOIRS"):
        fill_reservoirs(os.environ["SAMPLEZ_MEMCACHE"])

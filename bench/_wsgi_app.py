"""The tiny WSGI app served by gunicorn in ``bench_throughput.py``.

``BENCH_MODE`` picks what is served:

* ``bare`` — the app alone;
* ``wrapped`` — the same app making 3 ``samplez.set`` calls per request,
  wrapped in the middleware with the background flusher (the design);
* ``sync`` — the same as ``wrapped`` but applied to memcache after every
  response (``flush='request'``), emulating the original design's
  synchronous per-request flush.

``burn_call`` and ``burn_close`` (``bench_placement.py``) serve the bare
app with ``BENCH_BURN_US`` µs of CPU spent before the response is returned,
or in the body's ``close()``, after the server has written it.

The ``stage_*`` modes (``bench_stages.py``, raw WSGI or Flask app) serve
``wrapped`` with samplez cut short after a stage, to price each stage
inside a worker: ``stage_middleware`` (the middleware around the bare app,
no ``set``),
``stage_fold`` (the 3 sets, folded into events, which are then thrown
away: the process batch is one of its own kind that keeps nothing) and
``stage_pending`` (kept in the process batch; the flusher throws them away
instead of applying them).

``bare_thread`` (``bench_stages.py``) serves the bare app with an idle
thread started beside it: what the flusher thread costs a sync worker by
existing (in a process with a second thread, glibc and the kernel take
their multi-threaded paths on every syscall and lock).

``BENCH_APP=flask`` serves the same page from a Flask view instead of a
raw WSGI function (the stack samplez's users run); ``BENCH_APP=page``
serves a Flask view that renders a 50-row listing from a Jinja2 template.
With either, ``peer`` serves the bare Flask app instrumented by the peer a
user would pick instead of samplez: prometheus_flask_exporter's default
instrumentation, ``PrometheusMetrics(app)``.
``SAMPLEZ_MEMCACHE`` names the memcached to use.
"""

from __future__ import annotations

import os
import time
from typing import Any

import samplez

MODE = os.environ.get("BENCH_MODE", "bare")
BARE = ("bare", "bare_thread", "peer")

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


class _BurnOnClose:
    """A list body whose ``close()`` burns CPU, as post-response work does."""

    def __init__(self, body: list[bytes]) -> None:
        self.body = body

    def __iter__(self) -> Any:
        return iter(self.body)

    def close(self) -> None:
        burn()


def burn() -> None:
    end = time.perf_counter() + BURN
    while time.perf_counter() < end:
        pass


BURN = float(os.environ.get("BENCH_BURN_US", "5")) * 1e-6


def cut_short(mode: str) -> None:
    """Stop samplez after the stage ``mode`` names (the ``stage_*`` modes)."""
    from samplez.engine import engine

    if mode == "stage_fold":  # a batch of the engine's own kind that keeps nothing
        engine._pending = type(engine._pending)(maxlen=0)  # type: ignore[call-arg]
    elif mode == "stage_pending":
        engine.flush = engine.clear  # type: ignore[assignment, method-assign]


if MODE == "bare_thread":  # an idle thread beside the app, as the flusher is between flushes
    import threading

    threading.Thread(target=threading.Event().wait, name="idle", daemon=True).start()

if os.environ.get("BENCH_APP") in ("flask", "page"):
    site = flask_app(
        sample=MODE not in (*BARE, "stage_middleware"), page=os.environ["BENCH_APP"] == "page", peer=MODE == "peer"
    )
    if MODE not in BARE:
        store = samplez.MemcacheStore(os.environ["SAMPLEZ_MEMCACHE"])
        site.wsgi_app = samplez.Middleware(  # type: ignore[method-assign]
            site.wsgi_app, store=store, flush="request" if MODE == "sync" else "background"
        )
        cut_short(MODE)
    app: Any = site
elif MODE == "burn_call":

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        burn()
        return bare(environ, start_response)

elif MODE == "burn_close":

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        return _BurnOnClose(bare(environ, start_response))

elif MODE == "peer":
    raise RuntimeError("BENCH_MODE=peer instruments a Flask app: set BENCH_APP=flask or page")
elif MODE in BARE:
    app = bare
elif MODE == "stage_middleware":
    app = samplez.Middleware(bare, store=samplez.MemcacheStore(os.environ["SAMPLEZ_MEMCACHE"]))
else:
    store = samplez.MemcacheStore(os.environ["SAMPLEZ_MEMCACHE"])
    app = samplez.Middleware(sampling, store=store, flush="request" if MODE == "sync" else "background")
    cut_short(MODE)

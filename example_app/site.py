"""The demo site: a small shop-and-articles Flask app instrumented with
samplez the way a production site would be.

Per request (``before_request``/``after_request``): latency per endpoint,
request rate, errors by status code, unique and daily active visitors. In
the views: popular pages, outbound links by domain, page views, visitors and
orders per shop account. Every ``samplez.set`` is an
in-memory append; the middleware's flusher thread talks to the store.
"""

from __future__ import annotations

import random
import time
from typing import Any

from flask import Flask, Response, abort, g, jsonify, redirect, request

import samplez

from . import metrics

__all__ = ["create_app"]

# Simulated work per endpoint: the median seconds of a log-normal delay.
_WORK = {"content": 0.002, "product": 0.003, "search": 0.012, "api": 0.0005, "checkout": 0.006}


def _work(kind: str) -> None:
    time.sleep(min(random.lognormvariate(0, 0.6) * _WORK[kind], 0.25))


def _endpoint() -> str:
    rule = request.url_rule
    return f"{request.method} {rule.rule}" if rule is not None else "(no route)"


def _before() -> None:
    g.samplez_started = time.perf_counter()


def _visitor() -> tuple[str, int | None]:
    """The visitor's id: the ``uid`` cookie (a user number) if any, else
    the client address."""
    uid = request.cookies.get("uid", "")
    if uid.isdigit() and len(uid) < 10:
        return f"user:{uid}", int(uid)
    return f"addr:{request.remote_addr}", None


def _after(response: Response) -> Response:
    elapsed_ms = (time.perf_counter() - g.get("samplez_started", time.perf_counter())) * 1000
    endpoint = _endpoint()
    samplez.set(metrics.LATENCY, endpoint, elapsed_ms)  # reservoir + rolling max
    samplez.set(metrics.REQUESTS, endpoint)
    if response.status_code >= 400:
        samplez.set(metrics.ERRORS, str(response.status_code))
    visitor, user_number = _visitor()
    samplez.set(metrics.VISITORS_HLL, "site", visitor)
    if user_number is not None:
        samplez.set(metrics.DAILY_ACTIVES, "site", user_number)
    return response


def index() -> str:
    links = "".join(f'<li><a href="/content/{n}">article {n}</a></li>' for n in range(1, 6))
    return (
        "<!doctype html><title>samplez demo</title><h1>samplez demo</h1>"
        f'<ul>{links}<li><a href="/shop/acme/product/1">a product</a></li>'
        '<li><a href="/search?q=hats">search</a></li></ul>'
        '<p>Dashboard: <a href="/_samplez/">/_samplez/</a></p>'
    )


def content(item: int) -> str:
    _work("content")
    samplez.set(metrics.POPULAR, request.base_url)
    return f"<!doctype html><title>article {item}</title><h1>Article {item}</h1>"


def product(account: str, item: int) -> str:
    _work("product")
    samplez.set(metrics.POPULAR, request.base_url)
    samplez.set(metrics.PAGEVIEWS, account)
    samplez.set(metrics.SHOP_VISITORS, account, _visitor()[0])
    return f"<!doctype html><title>{item}</title><h1>Product {item}</h1>"


def checkout(account: str) -> Any:
    _work("checkout")
    samplez.set(metrics.ORDERS, account)
    return jsonify(account=account, ordered=True)


def search() -> Any:
    _work("search")
    query = request.args.get("q", "")
    return jsonify(query=query, results=random.randint(0, 40))


def items() -> Any:
    _work("api")
    return jsonify(items=list(range(1, 11)))


def outbound() -> Any:
    url = request.args.get("url", "")
    if not url.startswith(("http://", "https://")):
        abort(400)
    samplez.set(metrics.OUTBOUND, url)
    return redirect(url, code=302)


class DemoError(RuntimeError):
    """The demo's deliberate server error."""


def boom() -> str:
    raise DemoError("the demo's deliberate server error")


def _server_error(error: DemoError) -> tuple[str, int]:
    # A real site would log the traceback; the demo keeps its console quiet.
    return "internal server error (on purpose)\n", 500


def create_app(store: samplez.Store | None = None, **options: Any) -> samplez.Middleware:
    """The demo wrapped in :class:`samplez.Middleware`.

    :param store: where samples go (default: as configured, the embedded
        MemoryStore unless ``samplez.configure`` said otherwise).
    :param options: more :class:`samplez.Middleware` keywords.
    """
    app = Flask("example_app")
    app.before_request(_before)
    app.after_request(_after)
    app.add_url_rule("/", view_func=index)
    app.add_url_rule("/content/<int:item>", view_func=content)
    app.add_url_rule("/shop/<account>/product/<int:item>", view_func=product)
    app.add_url_rule("/shop/<account>/checkout", view_func=checkout, methods=["POST"])
    app.add_url_rule("/search", view_func=search)
    app.add_url_rule("/api/items", view_func=items)
    app.add_url_rule("/go", view_func=outbound)
    app.add_url_rule("/boom", view_func=boom)
    app.register_error_handler(DemoError, _server_error)
    if store is not None:
        options["store"] = store
    return samplez.Middleware(app.wsgi_app, sections=metrics.SECTIONS, **options)

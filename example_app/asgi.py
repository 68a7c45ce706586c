"""The demo's ASGI twin: the same shop-and-articles site as
:mod:`example_app.site`, as a Starlette app wrapped in
:class:`samplez.ASGIMiddleware`, feeding the same metrics.

``example_app.asgi:app`` is built on first access from the environment
(``SAMPLEZ_MEMCACHE``, as for ``example_app:app``), so uvicorn serves it::

    SAMPLEZ_MEMCACHE=127.0.0.1:11211 uvicorn --workers 4 example_app.asgi:app

Besides the Flask demo's pages it streams (``/feed``) and echoes over a
websocket (``/ws``), which the middleware passes through untouched.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any, AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

import samplez

from . import metrics
from .site import _WORK, DemoError

__all__ = ["app", "create_app"]


async def _work(kind: str) -> None:
    await asyncio.sleep(min(random.lognormvariate(0, 0.6) * _WORK[kind], 0.25))


def _visitor(request: Request) -> tuple[str, int | None]:
    """The visitor's id: the ``uid`` cookie (a user number) if any, else
    the client address."""
    uid = request.cookies.get("uid", "")
    if uid.isdigit() and len(uid) < 10:
        return f"user:{uid}", int(uid)
    return f"addr:{request.client.host if request.client else '-'}", None


async def _measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """What the Flask demo's before/after_request hooks record."""
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    endpoint = f"{request.method} {route.path}" if route is not None else "(no route)"
    samplez.set(metrics.LATENCY, endpoint, (time.perf_counter() - started) * 1000)
    samplez.set(metrics.REQUESTS, endpoint)
    if response.status_code >= 400:
        samplez.set(metrics.ERRORS, str(response.status_code))
    visitor, user_number = _visitor(request)
    samplez.set(metrics.VISITORS_HLL, "site", visitor)
    if user_number is not None:
        samplez.set(metrics.DAILY_ACTIVES, "site", user_number)
    return response


async def index(request: Request) -> Response:
    links = "".join(f'<li><a href="/content/{n}">article {n}</a></li>' for n in range(1, 6))
    return HTMLResponse(
        "<!doctype html><title>samplez demo</title><h1>samplez demo (ASGI)</h1>"
        f'<ul>{links}<li><a href="/shop/acme/product/1">a product</a></li>'
        '<li><a href="/search?q=hats">search</a></li><li><a href="/feed">a stream</a></li></ul>'
        '<p>Dashboard: <a href="/_samplez/">/_samplez/</a></p>'
    )


async def content(request: Request) -> Response:
    await _work("content")
    samplez.set(metrics.POPULAR, str(request.url.replace(query="")))
    item = request.path_params["item"]
    return HTMLResponse(f"<!doctype html><title>article {item}</title><h1>Article {item}</h1>")


async def product(request: Request) -> Response:
    await _work("product")
    account, item = request.path_params["account"], request.path_params["item"]
    samplez.set(metrics.POPULAR, str(request.url.replace(query="")))
    samplez.set(metrics.PAGEVIEWS, account)
    samplez.set(metrics.SHOP_VISITORS, account, _visitor(request)[0])
    return HTMLResponse(f"<!doctype html><title>{item}</title><h1>Product {item}</h1>")


async def checkout(request: Request) -> Response:
    await _work("checkout")
    account = request.path_params["account"]
    samplez.set(metrics.ORDERS, account)
    return JSONResponse({"account": account, "ordered": True})


async def search(request: Request) -> Response:
    await _work("search")
    return JSONResponse({"query": request.query_params.get("q", ""), "results": random.randint(0, 40)})


async def items(request: Request) -> Response:
    await _work("api")
    return JSONResponse({"items": list(range(1, 11))})


async def outbound(request: Request) -> Response:
    url = request.query_params.get("url", "")
    if not url.startswith(("http://", "https://")):
        return PlainTextResponse("bad url\n", status_code=400)
    samplez.set(metrics.OUTBOUND, url)
    return RedirectResponse(url, status_code=302)


async def boom(request: Request) -> Response:
    raise DemoError("the demo's deliberate server error")


async def _server_error(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("internal server error (on purpose)\n", status_code=500)


async def feed(request: Request) -> Response:
    """Ten article links, one at a time: each counts as a page read while
    the body streams."""

    async def rows() -> AsyncIterator[str]:
        for n in range(1, 11):
            samplez.set(metrics.POPULAR, f"{request.base_url}content/{n}")
            yield f"/content/{n}\n"
            await asyncio.sleep(0.001)

    return StreamingResponse(rows(), media_type="text/plain")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text)


def create_app(store: samplez.Store | None = None, **options: Any) -> samplez.ASGIMiddleware:
    """The demo wrapped in :class:`samplez.ASGIMiddleware`.

    :param store: where samples go (default: as configured).
    :param options: more :class:`samplez.ASGIMiddleware` keywords.
    """
    site = Starlette(
        routes=[
            Route("/", index),
            Route("/content/{item:int}", content),
            Route("/shop/{account}/product/{item:int}", product),
            Route("/shop/{account}/checkout", checkout, methods=["POST"]),
            Route("/search", search),
            Route("/api/items", items),
            Route("/go", outbound),
            Route("/boom", boom),
            Route("/feed", feed),
            WebSocketRoute("/ws", echo),
        ],
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=_measure)],
        exception_handlers={DemoError: _server_error},
    )
    if store is not None:
        options["store"] = store
    return samplez.ASGIMiddleware(site, sections=metrics.SECTIONS, **options)


def __getattr__(name: str) -> Any:
    # Built on first access, as example_app.app is.
    if name == "app":
        global app
        servers = os.environ.get("SAMPLEZ_MEMCACHE", "").strip()
        app = create_app(samplez.MemcacheStore(servers) if servers else None)
        return app
    raise AttributeError(f"module 'example_app.asgi' has no attribute {name!r}")

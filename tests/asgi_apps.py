"""The ASGI apps tests/test_asgi_uvicorn.py serves with uvicorn, each
wrapped in samplez.ASGIMiddleware on the memcached ``SAMPLEZ_MEMCACHE``
names, flushing every ``SAMPLEZ_TEST_FLUSH_INTERVAL`` seconds.

``site`` (Starlette), ``api`` (FastAPI) and ``django`` (the project in
tests/django_project) are built on first access, so the tests import this
module for its metrics alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any, AsyncIterator

import samplez

HITS = samplez.RollingCounter("asgi_served_hits", window=600)
EACH = samplez.Config("asgi_served_each", period=3600, samples=10_000, by_value=True)


def _settings() -> dict[str, Any]:
    return {
        "store": samplez.MemcacheStore(os.environ["SAMPLEZ_MEMCACHE"]),
        "flush_interval": float(os.environ.get("SAMPLEZ_TEST_FLUSH_INTERVAL", "0.5")),
    }


def _site() -> samplez.ASGIMiddleware:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket

    async def one(request: Request) -> Response:
        n = request.path_params["n"]
        samplez.set(EACH, "all", -1)
        await asyncio.sleep(0.001 * (n % 7))  # the requests interleave
        samplez.set(EACH, "all", n)  # overwrites this request's -1, no other's
        samplez.set(EACH, f"r{n}", n)
        return PlainTextResponse(str(n))

    async def hit(request: Request) -> Response:
        samplez.set(HITS, "hit")
        return PlainTextResponse("hit")

    async def stream(request: Request) -> Response:
        async def rows() -> AsyncIterator[bytes]:
            for n in range(3):
                samplez.set(HITS, "streamed")
                yield b"row %d\n" % n

        return StreamingResponse(rows())

    async def endless(request: Request) -> Response:
        async def rows() -> AsyncIterator[bytes]:
            samplez.set(HITS, "endless")
            while True:
                yield b"more\n"
                await asyncio.sleep(0.02)

        return StreamingResponse(rows())

    async def fail(request: Request) -> Response:
        samplez.set(HITS, "fail")
        raise RuntimeError("the handler failed")

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        samplez.set(HITS, "lifespan")  # outside any request: an event of its own
        yield

    routes = [
        Route("/hit", hit),
        Route("/n/{n:int}", one),
        Route("/stream", stream),
        Route("/endless", endless),
        Route("/fail", fail),
        WebSocketRoute("/ws", echo),
    ]
    return samplez.ASGIMiddleware(Starlette(routes=routes, lifespan=lifespan), **_settings())


def _api() -> samplez.ASGIMiddleware:
    from fastapi import FastAPI

    api = FastAPI()

    @api.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, int]:
        samplez.set(HITS, "fastapi")
        return {"item_id": item_id}

    return samplez.ASGIMiddleware(api, **_settings())


def _django() -> samplez.ASGIMiddleware:
    from django.conf import settings

    from tests.django_project.settings import SETTINGS

    settings.configure(**SETTINGS)
    from tests.django_project.asgi import application

    samplez.configure(**_settings())
    return application


_BUILDERS = {"site": _site, "api": _api, "django": _django}


def __getattr__(name: str) -> Any:
    if name in _BUILDERS:
        app = _BUILDERS[name]()
        globals()[name] = app
        return app
    raise AttributeError(f"module 'tests.asgi_apps' has no attribute {name!r}")

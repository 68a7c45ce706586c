"""The Starlette hello-world ``bench_asgi.py`` measures, in three builds:
``bare``; ``samplez`` (3 ``samplez.set`` calls in the handler, the
ASGI middleware with its request metrics, memcached at
``SAMPLEZ_MEMCACHE``); ``peer`` (starlette_exporter's
``PrometheusMiddleware`` with its defaults). uvicorn serves ``app``, built
from ``BENCH_MODE``."""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import samplez

MODES = ("bare", "samplez", "peer")
LATENCY = samplez.Config("bench_latency", period=300, samples=10_000, by_value=True, value_units="ms")
POPULAR = samplez.Config("bench_popular", period=600, samples=10_000, by_value=True)
STATUS = samplez.Config("bench_status", period=60, samples=1_000, by_value=True)


async def hello(request: Request) -> Response:
    return PlainTextResponse("ok")


async def hello_sampled(request: Request) -> Response:
    path = request.scope["path"]
    samplez.set(LATENCY, path, 3.2)
    samplez.set(POPULAR, path)
    samplez.set(STATUS, "200")
    return PlainTextResponse("ok")


def build(mode: str, memcache: str | None = None) -> Any:
    """The app in ``mode``; ``samplez`` stores to ``memcache``."""
    if mode == "bare":
        return Starlette(routes=[Route("/item/{i}", hello)])
    if mode == "peer":
        from starlette_exporter import PrometheusMiddleware

        return Starlette(routes=[Route("/item/{i}", hello)], middleware=[Middleware(PrometheusMiddleware)])
    if mode == "samplez":
        site = Starlette(routes=[Route("/item/{i}", hello_sampled)])
        store = samplez.MemcacheStore(memcache) if memcache else None
        return samplez.ASGIMiddleware(site, store=store, flush="background")
    raise ValueError(f"BENCH_MODE must be one of {MODES}, got {mode!r}")


_app: Any = None


def __getattr__(name: str) -> Any:
    """``app``, built at its first use (in the server's worker, not its parent)."""
    global _app
    if name != "app":
        raise AttributeError(name)
    if _app is None:
        _app = build(os.environ.get("BENCH_MODE", "bare"), os.environ.get("SAMPLEZ_MEMCACHE"))
    return _app

"""samplez: what is hot and what is slow in a live web application, right now.

Handlers call ``samplez.set(config, key, value)``; the middleware batches
the calls per request and a background thread applies them to memcache with
reservoir sampling and counters; ``samplez.get`` and the dashboard read them
back.

>>> LATENCY = samplez.Config('latency_5m', period=300, samples=10000, by_value=True, value_units='ms')
>>> app = samplez.Middleware(app, store=samplez.MemcacheStore('127.0.0.1:11211'))
>>> samplez.set(LATENCY, '/api/items', 124)
"""

from __future__ import annotations

from .api import configure, flush, get, get_section
from .asgi import ASGIMiddleware
from .batch import set
from .constants import *  # noqa: F403
from .constants import __all__ as _constants
from .counters import (
    BitmapCounter,
    CalendarCounter,
    CounterResult,
    HyperLogLogCounter,
    RollingCounter,
    RollingMax,
    SteppedCounter,
    UniqueCounter,
)
from .dashboard import Dashboard
from .engine import FlushSummary
from .errors import ConfigError, SamplezError, StoreError
from .metric import Section
from .middleware import Middleware
from .registry import unregister
from .requests import RequestMetrics
from .reservoir import Config, SampleResult
from .routes import route
from .store import MemcacheStore, MemoryStore, RedisStore, Store

__version__ = "0.1.0"

__all__ = [
    "ASGIMiddleware",
    "BitmapCounter",
    "CalendarCounter",
    "Config",
    "ConfigError",
    "CounterResult",
    "Dashboard",
    "FlushSummary",
    "HyperLogLogCounter",
    "MemcacheStore",
    "MemoryStore",
    "Middleware",
    "RedisStore",
    "RequestMetrics",
    "RollingCounter",
    "RollingMax",
    "SampleResult",
    "SamplezError",
    "Section",
    "SteppedCounter",
    "Store",
    "StoreError",
    "UniqueCounter",
    "configure",
    "flush",
    "get",
    "get_section",
    "route",
    "set",
    "unregister",
    *_constants,
]

"""The samplez demo: a small Flask site wrapped in the samplez middleware.

``example_app:app`` is the wrapped WSGI app, built on first access from
the environment: ``SAMPLEZ_MEMCACHE=HOST:PORT[,HOST:PORT]`` selects real
memcached, ``SAMPLEZ_REDIS=redis://HOST:PORT/DB`` Redis (one of them is
needed with several processes, e.g. ``gunicorn -w 4 example_app:app``),
otherwise the embedded per-process MemoryStore is used.
``python -m example_app`` serves it, optionally with demo traffic.
"""

from __future__ import annotations

import os
from typing import Any

from .site import create_app

__all__ = ["app", "app_from_environment", "create_app"]


def app_from_environment() -> Any:
    """The demo app on the store ``SAMPLEZ_MEMCACHE`` or ``SAMPLEZ_REDIS``
    names, if any."""
    from samplez.cli.common import store_from

    return create_app(store_from(None, None, os.environ))


def __getattr__(name: str) -> Any:
    # Built lazily so that importing example_app.metrics (say, for
    # ``python -m samplez dashboard --sections``) leaves samplez unconfigured.
    if name == "app":
        global app
        app = app_from_environment()
        return app
    raise AttributeError(f"module 'example_app' has no attribute {name!r}")

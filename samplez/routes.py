"""What endpoint a request was: the route its framework matched, a name the
handler gave, or its path with variable-looking segments collapsed.

A key per raw path would let every id, and every scanner, add a key; a key
per route template stands for one endpoint whatever its arguments:

* Flask: the matched rule (``/item/<int:item>``), read as Flask's
  ``request_started`` signal fires (:func:`watch_flask`, which the
  middleware calls when Flask is loaded).
* Django: the resolver's route (``/shop/<slug:account>/``), read by
  :class:`DjangoRouteMiddleware` in the project's ``MIDDLEWARE``.
* Anything else: ``samplez.route('checkout')`` in the handler, or the path
  collapsed by :func:`collapse` (``/users/123`` → ``/users/<int>``).

A request no route matched is :data:`UNMATCHED`, so 404s from scanners add
one key per method, not one per path.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from .batch import current

__all__ = ["UNMATCHED", "DjangoRouteMiddleware", "collapse", "route", "watch_flask"]

UNMATCHED = "(unmatched)"
_SEGMENTS = (
    (re.compile(r"[0-9]+"), "<int>"),
    (re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"), "<uuid>"),
    (re.compile(r"(?=[a-zA-Z]*[0-9])[0-9a-fA-F]{8,}"), "<hex>"),
    # Long tokens mixing letters and digits: slugs with ids, base64 ids.
    (re.compile(r"(?=.*[0-9])(?=.*[a-zA-Z])[A-Za-z0-9_\-=.~]{16,}"), "<token>"),
)
MAX_ROUTE = 200


def route(name: str) -> None:
    """Name the endpoint of the request being handled (its requests,
    statuses and latency are counted under it). Does nothing outside a
    request.

    >>> samplez.route('checkout')
    """
    if not isinstance(name, str):
        raise TypeError(f"samplez.route takes a str, got {type(name).__name__} {name!r:.80}")
    batch = current.get()
    if batch is not None:
        batch.route = name[:MAX_ROUTE]


def collapse(path: str) -> str:
    """``path`` with each variable-looking segment replaced by its kind."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        for pattern, kind in _SEGMENTS:
            if pattern.fullmatch(part):
                parts[i] = kind
                break
    return "/".join(parts)[:MAX_ROUTE]


_flask_watched = False


def watch_flask() -> None:
    """Record each Flask request's matched rule (once per process)."""
    global _flask_watched
    if _flask_watched:
        return
    from flask import request, request_started

    def started(sender: Any, **extra: Any) -> None:
        rule = request.url_rule
        route(rule.rule if rule is not None else UNMATCHED)

    request_started.connect(started, weak=False)
    _flask_watched = True


class DjangoRouteMiddleware:
    """Django middleware that names each request's endpoint after the URL
    pattern Django resolved it to. Add it to ``MIDDLEWARE``::

        MIDDLEWARE = ['samplez.routes.DjangoRouteMiddleware', ...]
    """

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        return self.get_response(request)

    def process_view(self, request: Any, view: Any, args: Any, kwargs: Any) -> None:
        match = getattr(request, "resolver_match", None)
        pattern = getattr(match, "route", None)
        if pattern is not None:
            route("/" + pattern.lstrip("^").rstrip("$") if not pattern.startswith("/") else pattern)

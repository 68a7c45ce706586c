"""What endpoint a request was: the route its framework matched, a name the
handler gave, or its path with variable-looking segments collapsed.

A key per raw path would let every id, and every scanner, add a key; a key
per route template stands for one endpoint whatever its arguments:

* Flask: the matched rule (``/item/<int:item>``), read as the app
  dispatches the request (:func:`watch_flask`, which the middleware calls
  with the app it wraps).
* Django: the resolver's route (``/shop/<slug:account>/``), read by
  :class:`DjangoRouteMiddleware` in the project's ``MIDDLEWARE``.
* Anything else: ``samplez.route('checkout')`` in the handler, or the path
  collapsed by :func:`collapse` (``/users/123`` → ``/users/<int>``).

A request no route matched is :data:`UNMATCHED`, so 404s from scanners add
one key per method, not one per path.
"""

from __future__ import annotations

import functools
import re
import sys
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


@functools.lru_cache(maxsize=4096)
def collapse(path: str) -> str:
    """``path`` with each variable-looking segment replaced by its kind
    (remembered for the paths seen most: most requests repeat one)."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        for pattern, kind in _SEGMENTS:
            if pattern.fullmatch(part):
                parts[i] = kind
                break
    return "/".join(parts)[:MAX_ROUTE]


def watch_flask(app: Any) -> bool:
    """Name each request of ``app`` after its matched rule, if ``app`` is a
    Flask app or its ``wsgi_app``; returns whether it is. The middleware
    calls it with what it wraps. Flask matches the rule as the request's
    context is pushed, then calls the app's ``full_dispatch_request`` for
    every request, matched or not: the app's own method is wrapped there
    (a ``before_request`` function costs twice as much per request, as
    Flask checks each one for a coroutine)."""
    flask = sys.modules.get("flask")
    app = getattr(app, "__self__", app)  # app.wsgi_app is a bound method
    if flask is None or not isinstance(app, flask.Flask):
        return False
    if "samplez" in app.extensions:
        return True
    request = flask.request
    dispatch = app.full_dispatch_request

    def full_dispatch_request() -> Any:
        batch = current.get()
        if batch is not None:
            rule = request._get_current_object().url_rule  # one lookup, not one per attribute
            batch.route = rule.rule if rule is not None else UNMATCHED
        return dispatch()

    app.full_dispatch_request = full_dispatch_request
    app.extensions["samplez"] = full_dispatch_request
    return True


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

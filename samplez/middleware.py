"""``Middleware``: collects ``samplez.set`` calls per request and serves the
dashboard.

Each request gets a fresh :class:`~samplez.batch.RequestBatch`, set in the
request's context as the app is called and reset as the call returns. A body
given as a list or tuple is complete then, so the batch is closed at once;
any other body is wrapped in a :class:`ClosingBody`, which sets the batch
again while each chunk is produced and while the body closes (handler code
may run then), and closes the batch after the body's own ``close()``.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Iterator

from .api import configure
from .batch import RequestBatch, current
from .engine import _UNSET, engine
from .errors import ConfigError

__all__ = ["ClosingBody", "Middleware"]

log = logging.getLogger("samplez")


class ClosingBody:
    """The app's response body, produced in its request's context and
    folding the request's batch when closed (as werkzeug's
    ``ClosingIterator`` calls its callbacks)."""

    __slots__ = ("_body", "_chunks", "_batch")

    def __init__(self, body: Iterable[bytes], batch: RequestBatch) -> None:
        self._body = body
        self._chunks: Iterator[bytes] | None = None
        self._batch = batch

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        token = current.set(self._batch)
        try:
            if self._chunks is None:
                self._chunks = iter(self._body)
            return next(self._chunks)
        finally:
            current.reset(token)

    def close(self) -> None:
        token = current.set(self._batch)
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            current.reset(token)
            self._batch.close()
            if engine.flush_mode == "request":
                _flush_after_response()


def _flush_after_response() -> None:
    try:
        engine.flush()
    except Exception:
        log.exception("samplez: flush after the response failed")


class Middleware:
    """WSGI middleware: each request gets its own batch of ``samplez.set``
    calls, joined to the process batch when the response is closed (at once
    for a list body, or when the app raised) and applied by a background
    flusher thread every ``flush_interval`` seconds, so no memcache round
    trip happens on the request path.

    :param app: the WSGI application to wrap.
    :param store: a :class:`~samplez.MemcacheStore` or
        :class:`~samplez.MemoryStore` (default: leave as configured).
    :param dashboard_path: where the dashboard answers; ``None`` for nowhere.
    :param auth: dashboard access: ``None`` for loopback clients only, a
        callable ``(environ) -> bool``, or ``('user', 'password')``.
    :param sections: what the dashboard shows (default: every section).
    :param settings: ``flush``, ``prefix``, ``flush_interval``,
        ``max_pending``, ``max_pending_bytes``, ``clock``: passed to
        :func:`samplez.configure`, so they apply to the whole process (one
        process batch, one flusher, one store).

    >>> app.wsgi_app = samplez.Middleware(app.wsgi_app, store=samplez.MemcacheStore('127.0.0.1:11211'))
    """

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        store: Any = _UNSET,
        dashboard_path: str | None = "/_samplez",
        auth: Any = None,
        sections: Any = None,
        **settings: Any,
    ) -> None:
        if not callable(app):
            raise ConfigError(f"app must be a WSGI callable, got {app!r}")
        if dashboard_path is not None and (
            not isinstance(dashboard_path, str) or not dashboard_path.startswith("/") or dashboard_path.endswith("/")
        ):
            raise ConfigError(f"dashboard_path must start with '/' and not end with one, got {dashboard_path!r}")
        if store is not _UNSET:
            settings["store"] = store
        configure(**settings)
        self.app = app
        self.dashboard_path = dashboard_path
        self.auth = auth
        self.sections = sections
        self._dashboard: Callable[..., Iterable[bytes]] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        prefix = self.dashboard_path
        if prefix is not None:
            path = environ.get("PATH_INFO", "")
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                return self._serve_dashboard(environ, start_response, path[len(prefix) :])
        batch = RequestBatch()
        token = current.set(batch)
        try:
            body = self.app(environ, start_response)
        except BaseException:
            batch.close()  # a request that raises still contributes its samples
            raise
        finally:
            current.reset(token)
        if engine.flush_mode == "request" or type(body) not in (list, tuple):
            return ClosingBody(body, batch)
        batch.close()
        return body

    def _serve_dashboard(
        self, environ: dict[str, Any], start_response: Callable[..., Any], rest: str
    ) -> Iterable[bytes]:
        if self._dashboard is None:
            from .dashboard import Dashboard

            self._dashboard = Dashboard(sections=self.sections, auth=self.auth)
        inner = dict(environ)
        inner["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + self.dashboard_path
        inner["PATH_INFO"] = rest
        return self._dashboard(inner, start_response)

"""``Middleware``: collects ``samplez.set`` calls per request, records
request metrics, and serves the dashboard.

Each request gets a fresh :class:`~samplez.batch.RequestBatch`, set in the
request's context as the app is called and reset as the call returns. A
response is over when it is closed: a :class:`ClosingBody` sets the batch
again while each chunk of a streamed body is produced and while the body
closes (handler code may run then), and after the body's own ``close()``
records the request's metrics into the batch and closes it. A list body
with nothing to record is over as the call returns.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Callable, Iterable, Iterator

from . import routes
from .api import configure
from .batch import RequestBatch, current
from .engine import _UNSET, engine
from .errors import ConfigError
from .requests import RequestMetrics, default_request_metrics, request_key

__all__ = ["ClosingBody", "Middleware"]

log = logging.getLogger("samplez")


class Response:
    """One request as the middleware serves it: its batch, and what its
    request metrics need (method, path, status, when it started)."""

    __slots__ = ("batch", "metrics", "method", "path", "status", "started", "_start_response")

    def __init__(
        self, environ: dict[str, Any], start_response: Callable[..., Any], metrics: RequestMetrics | None
    ) -> None:
        self.batch = RequestBatch()
        self.metrics = metrics
        self.method = environ.get("REQUEST_METHOD", "GET")
        self.path = environ.get("PATH_INFO", "")
        self.status = "500"  # until the app starts a response
        self.started = time.perf_counter()
        self._start_response = start_response

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.status = status[:3]
        return self._start_response(status, headers, exc_info)

    def finish(self) -> None:
        """The response is over: :meth:`end` it, then apply the batch if
        ``flush='request'``. Runs as a response closes, so it never raises."""
        self.end()
        if engine.flush_mode == "request":
            try:
                engine.flush()
            except Exception:
                log.exception("samplez: flush after the response failed")

    def end(self) -> None:
        """Record the request and fold its batch: in-memory work only, so
        an event loop may call it. Never raises."""
        if self.metrics is not None:
            ms = (time.perf_counter() - self.started) * 1000
            try:
                key = request_key(self.method, self.batch.route, self.path, self.status)
                self.metrics.record(self.batch, key, self.status, ms)
            except Exception:
                log.exception("samplez: recording the request failed")
        self.batch.close()
        engine.request_served()


class ClosingBody:
    """The app's response body, produced in its request's context, that
    ends the request when closed (as werkzeug's ``ClosingIterator`` calls
    its callbacks)."""

    __slots__ = ("_body", "_chunks", "_response")

    def __init__(self, body: Iterable[bytes], response: Response) -> None:
        self._body = body
        self._chunks: Iterator[bytes] | None = None
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        if type(self._body) in (list, tuple):  # produced already: no handler code runs
            return iter(self._body)
        return self

    def __next__(self) -> bytes:
        token = current.set(self._response.batch)
        try:
            if self._chunks is None:
                self._chunks = iter(self._body)
            return next(self._chunks)
        finally:
            current.reset(token)

    def close(self) -> None:
        token = current.set(self._response.batch)
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            current.reset(token)
            self._response.finish()


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
    :param request_metrics: ``True`` (default) records every request's
        endpoint, status and latency in the process's
        :class:`~samplez.RequestMetrics`; pass one of your own to tune it,
        or ``False`` for none.
    :param exclude: path prefixes whose requests are not recorded (the
        dashboard's never are).
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
        request_metrics: bool | RequestMetrics = True,
        exclude: Iterable[str] = (),
        **settings: Any,
    ) -> None:
        if not callable(app):
            raise ConfigError(f"app must be a WSGI callable, got {app!r}")
        if dashboard_path is not None and (
            not isinstance(dashboard_path, str) or not dashboard_path.startswith("/") or dashboard_path.endswith("/")
        ):
            raise ConfigError(f"dashboard_path must start with '/' and not end with one, got {dashboard_path!r}")
        metrics: RequestMetrics | None
        if request_metrics is True:
            metrics = default_request_metrics()
        elif request_metrics is False or request_metrics is None:
            metrics = None
        elif isinstance(request_metrics, RequestMetrics):
            metrics = request_metrics
        else:
            raise ConfigError(f"request_metrics must be True, False or a RequestMetrics, got {request_metrics!r}")
        if isinstance(exclude, str) or not all(isinstance(p, str) and p.startswith("/") for p in exclude):
            raise ConfigError(f"exclude must be path prefixes starting with '/', got {exclude!r}")
        if store is not _UNSET:
            settings["store"] = store
        configure(**settings)
        if metrics is not None and "flask" in sys.modules:
            routes.watch_flask()
        self.request_metrics = metrics
        self.exclude = tuple(exclude)
        self.app = app
        self.dashboard_path = dashboard_path
        self.auth = auth
        self.sections = sections
        self._dashboard: Callable[..., Iterable[bytes]] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        prefix = self.dashboard_path
        path = environ.get("PATH_INFO", "")
        if prefix is not None:
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                return self._serve_dashboard(environ, start_response, path[len(prefix) :])
        metrics = self.request_metrics
        if metrics is not None and self.exclude and path.startswith(self.exclude):
            metrics = None
        response = Response(environ, start_response, metrics)
        token = current.set(response.batch)
        try:
            body = self.app(environ, response.start_response if metrics is not None else start_response)
        except BaseException:
            response.finish()  # a request that raises still contributes its samples
            raise
        finally:
            current.reset(token)
        if metrics is None and engine.flush_mode == "background" and type(body) in (list, tuple):
            response.finish()
            return body
        return ClosingBody(body, response)

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

"""``Middleware``: collects ``samplez.set`` calls per request, records
request metrics, and serves the dashboard.

Each request gets a fresh :class:`~samplez.batch.RequestBatch`, set in the
request's context as the app is called and reset as the call returns. A
response is over when it is closed: the :class:`Response` the middleware
returns sets the batch again while each chunk of a streamed body is
produced and while the body closes (handler code may run then), and after
the body's own ``close()`` records the request's metrics into the batch
and closes it. A list body with nothing to record is over as the call
returns.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Generator, Iterable, Iterator

from . import routes
from .api import configure
from .batch import RequestBatch, current
from .engine import _UNSET, engine
from .errors import ConfigError
from .requests import RequestMetrics, default_request_metrics, leading, request_key

__all__ = ["Middleware", "Response"]

log = logging.getLogger("samplez")
_END: Any = object()  # what a spent body's next() gives instead of raising


class Response:
    """One request as the middleware serves it: its batch, what its request
    metrics need, and, once the app returned one, its body (this object is
    then what the server iterates and closes, as werkzeug's
    ``ClosingIterator`` is)."""

    __slots__ = ("batch", "metrics", "environ", "status", "started", "body", "_start_response")

    def __init__(
        self, environ: dict[str, Any], start_response: Callable[..., Any], metrics: RequestMetrics | None
    ) -> None:
        self.batch = RequestBatch()
        self.metrics = metrics
        self.environ = environ
        self.status = "500"  # until the app starts a response
        self.started = time.perf_counter()
        self.body: Iterable[bytes] = ()
        self._start_response = start_response

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.status = status[:3]
        return self._start_response(status, headers, exc_info)

    def __iter__(self) -> Iterator[bytes]:
        if type(self.body) in (list, tuple):  # produced already: no handler code runs
            return iter(self.body)
        return self._produce()

    def _produce(self) -> Generator[bytes, None, None]:
        # Handler code may run as each chunk is produced: the request's
        # batch is the context's then, and never while the server holds a
        # chunk (a body left half-read or never closed leaves no context
        # behind).
        chunks = iter(self.body)
        while True:
            token = current.set(self.batch)
            try:
                chunk = next(chunks, _END)
            finally:
                current.reset(token)
            if chunk is _END:
                return
            yield chunk

    def close(self) -> None:
        token = current.set(self.batch)
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            current.reset(token)
            self.end()

    def end(self, flush: bool = True) -> None:
        """The response is over: fold the batch with the request's own
        metrics, then with ``flush='request'`` apply it (unless ``flush`` is
        false: an event loop must not wait on the store). Runs as a response
        closes, so it never raises."""
        sets: Iterable[tuple[int, str, Any]] = ()
        if self.metrics is not None:
            ms = (time.perf_counter() - self.started) * 1000
            try:
                method, path = self.environ.get("REQUEST_METHOD", ""), self.environ.get("PATH_INFO", "")
                sets = self.metrics.sets(request_key(method, self.batch.route, path, self.status), self.status, ms)
            except Exception:
                log.exception("samplez: recording the request failed")
        self.batch.close(1, sets)
        if flush and engine.flush_mode == "request":
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
    :param metrics_auth: access to ``<dashboard_path>/metrics`` (the
        Prometheus exposition), in the same forms; ``None`` leaves it to
        ``auth``.
    :param sections: what the dashboard shows (default: every section),
        after the request metrics' section.
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
        metrics_auth: Any = None,
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
        if metrics is not None:
            routes.watch_flask(app)
        self.request_metrics = metrics
        self.exclude = tuple(exclude)
        self.app = app
        self.dashboard_path = dashboard_path
        self.auth = auth
        self.metrics_auth = metrics_auth
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
            response.end()  # a request that raises still contributes its samples
            raise
        finally:
            current.reset(token)
            response.batch.thread = None  # the request's code has returned
        if metrics is None and engine.flush_mode == "background" and type(body) in (list, tuple):
            response.end()
            return body
        response.body = body
        return response

    def _serve_dashboard(
        self, environ: dict[str, Any], start_response: Callable[..., Any], rest: str
    ) -> Iterable[bytes]:
        if self._dashboard is None:
            from .dashboard import Dashboard

            self._dashboard = Dashboard(
                sections=leading(self.sections, self.request_metrics), auth=self.auth, metrics_auth=self.metrics_auth
            )
        inner = dict(environ)
        inner["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + self.dashboard_path
        inner["PATH_INFO"] = rest
        return self._dashboard(inner, start_response)

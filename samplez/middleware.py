"""``Middleware``: collects ``samplez.set`` calls per request and serves the
dashboard."""

from __future__ import annotations

import logging
from contextvars import Token
from typing import Any, Callable, Iterable, Iterator

from . import batch
from .batch import request_var
from .engine import _UNSET, engine
from .errors import ConfigError

__all__ = ["Middleware"]

log = logging.getLogger("samplez")
_END = object()  # what a finished body's next() returns instead of raising


class _PythonClosing:
    """Wraps the app's response, whose body is produced and closed after the
    middleware returned. The request's batch stays the context's until
    ``close()`` (nothing copies or enters a context), but is active, so that
    ``samplez.set`` calls land in it, only while a chunk is produced or the
    body closes. ``close()`` folds the batch into the process batch, where
    it is idle for the context's next request, and gives ``request_var``
    back its value from before the request when the request had to set it
    over another request's body still open (``token``)."""

    __slots__ = ("_app_iter", "_batch", "_token", "_closed")

    def __init__(self, app_iter: Iterable[bytes], request_batch: Any, token: Token[Any] | None) -> None:
        self._app_iter = app_iter
        self._batch = request_batch
        self._token = token
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        request_batch = self._batch
        chunks = None
        chunk: Any
        while True:
            request_batch.active = not self._closed
            try:
                if chunks is None:
                    chunks = iter(self._app_iter)
                chunk = next(chunks, _END)
            finally:
                request_batch.active = False
            if chunk is _END:
                return
            yield chunk

    def close(self) -> None:
        request_batch = self._batch
        try:
            close = getattr(self._app_iter, "close", None)
            if close is not None:
                request_batch.active = not self._closed
                close()
        finally:
            request_batch.active = request_batch.held = False
            self._closed = True
            token, self._token = self._token, None
            if token is not None and request_var.get() is request_batch:
                try:
                    request_var.reset(token)
                except ValueError:  # closed in a copy of the request's context: the batch stays there, inactive
                    pass
            batch.finish(request_batch)


#: ``_speedups.Closing`` when built: the same in C, with no Python frame
#: for the wrapper's creation, its iteration or its close().
_Closing: Any = _PythonClosing if batch.speedups is None else batch.speedups.Closing


class _Flushing(_Closing):
    """``flush='request'``: the batch is applied once the response closes."""

    __slots__ = ()

    def close(self) -> None:
        try:
            super().close()
        finally:
            try:
                engine.flush()
            except Exception:
                log.exception("samplez: flush after the response failed")


class _PythonCall:
    """The middleware's request path in Python: the twin of
    ``_speedups.MiddlewareBase``, which runs instead when it is built."""

    app: Callable[..., Iterable[bytes]]
    dashboard_path: str | None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        prefix = self.dashboard_path
        if prefix is not None:
            path = environ.get("PATH_INFO", "")
            # ``in`` first: str.startswith parses its arguments on every call.
            if prefix in path and path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                return self._serve_dashboard(  # type: ignore[attr-defined]
                    environ, start_response, path[len(prefix) :]
                )
        # The context keeps its batch from one request to the next, and a
        # request reuses the one it finds idle there: no contextvars set or
        # reset per request (see _speedups.c's Base_call).
        before = request_var.get()
        resting = type(before) is batch.new_batch and not before.active  # its request's code is not running
        token: Token[Any] | None = None
        inside = False
        if resting and not before.held and not before:
            request_batch = before
            request_batch.active = True
        else:
            # The first request in this context, or one after a fold that
            # failed and left the batch there full: its batch becomes the
            # context's. Else the variable gets back what it held: inside
            # another request's call (a middleware inside another) as this
            # call returns, else (a body of an earlier request still to be
            # closed) when this request's body closes.
            first = before is None or (resting and not before.held)
            inside = not first and not resting
            request_batch = batch.new_batch()
            token = request_var.set(request_batch)
            if first:
                token = None
        streamed = False
        try:
            app_iter = self.app(environ, start_response)
            # Handler code may still run as the body is produced and closed:
            # the wrapper keeps the batch, and the thread in it, until close().
            streamed = type(app_iter) is not list and type(app_iter) is not tuple or engine.flush_mode == "request"
        finally:
            request_batch.active = False
            if token is not None and (not streamed or inside):
                request_var.reset(token)  # the thread leaves the request here
            if not streamed:
                # Raised, or produced already: nothing of this request runs
                # after this (bench/bench_stages.py).
                batch.finish(request_batch)
        if not streamed:
            return app_iter
        kept = None if inside else token  # the token close() resets
        request_batch.held = True
        if engine.flush_mode == "request":
            return _Flushing(app_iter, request_batch, kept)
        return _Closing(app_iter, request_batch, kept)


if batch.speedups is not None:
    batch.speedups.setup_middleware(_Flushing)
_Call: Any = _PythonCall if batch.speedups is None else batch.speedups.MiddlewareBase


class Middleware(_Call):
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
    :param flush: ``'background'`` (default) or ``'request'`` (apply after
        each response is closed).
    :param sections: what the dashboard shows (default: every section).
    :param options: ``prefix``, ``flush_interval``, ``max_pending``,
        ``clock``, as for :func:`samplez.configure`.

    >>> app.wsgi_app = samplez.Middleware(app.wsgi_app, store=samplez.MemcacheStore('127.0.0.1:11211'))
    """

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        store: Any = _UNSET,
        dashboard_path: str | None = "/_samplez",
        auth: Any = None,
        flush: str = _UNSET,
        sections: Any = None,
        **options: Any,
    ) -> None:
        if not callable(app):
            raise ConfigError(f"app must be a WSGI callable, got {app!r}")
        if dashboard_path is not None and (
            not isinstance(dashboard_path, str) or not dashboard_path.startswith("/") or dashboard_path.endswith("/")
        ):
            raise ConfigError(f"dashboard_path must start with '/' and not end with one, got {dashboard_path!r}")
        unknown = set(options) - {"prefix", "flush_interval", "max_pending", "clock"}
        if unknown:
            raise TypeError(f"Middleware got unexpected keywords: {', '.join(sorted(unknown))}")
        engine.configure(store=store, flush=flush, **options)
        self.app = app
        self.dashboard_path = dashboard_path
        self.auth = auth
        self.sections = sections
        self._dashboard: Callable[..., Iterable[bytes]] | None = None

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

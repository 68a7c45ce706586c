"""``Middleware``: collects ``samplez.set`` calls per request and serves the
dashboard."""

from __future__ import annotations

import logging
from contextvars import Context, copy_context
from functools import partial
from typing import Any, Callable, Iterable, Iterator

from . import batch
from .batch import request_var
from .engine import _UNSET, engine
from .errors import ConfigError

__all__ = ["Middleware"]

log = logging.getLogger("samplez")
_END = object()  # what a finished body's next() returns instead of raising


class _PythonClosing:
    """Wraps the app's response: the body is iterated, and closed, in the
    request's context (so ``samplez.set`` calls made as it streams land in
    the request's batch); on ``close()`` the batch joins the process batch."""

    __slots__ = ("_app_iter", "_batch", "_context")

    def __init__(self, app_iter: Iterable[bytes], request_batch: dict[Any, Any], context: Context) -> None:
        self._app_iter = app_iter
        self._batch = request_batch
        self._context = context

    def __iter__(self) -> Iterator[bytes]:
        # Each chunk is next(chunks) run in the request's context; the
        # two-argument iter() makes that loop in C, with no frame per chunk.
        run = self._context.run
        step: Callable[[], Any] = partial(run, next, run(iter, self._app_iter), _END)
        return iter(step, _END)

    def close(self) -> None:
        try:
            close = getattr(self._app_iter, "close", None)
            if close is not None:
                self._context.run(close)
        finally:
            batch.finish(self._batch)


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
        request_batch: dict[Any, Any] = {}
        context = None
        token = request_var.set(request_batch)
        try:
            app_iter = self.app(environ, start_response)
            if type(app_iter) is not list and type(app_iter) is not tuple or engine.flush_mode == "request":
                # Handler code may still run as the body is produced and
                # closed: that runs in a copy of this context, so its sets
                # join this request's batch, which joins the process batch
                # at close().
                context = copy_context()
        finally:
            request_var.reset(token)  # the thread leaves the request here
            if context is None and request_batch:
                # Raised, or produced already with no close(): nothing of
                # this request runs after this (bench/bench_stages.py).
                batch.finish(request_batch)
        if context is None:
            return app_iter
        if engine.flush_mode == "request":
            return _Flushing(app_iter, request_batch, context)
        return _Closing(app_iter, request_batch, context)


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

"""``ASGIMiddleware``: the WSGI :class:`~samplez.Middleware`'s contract for
ASGI 3 applications (Starlette, FastAPI, Django's ASGI handler).

Each HTTP request gets a fresh :class:`~samplez.batch.RequestBatch`, set in
the request's context as the app is awaited: code of the request's task,
tasks it creates (they copy the context) and threads it starts with the
context (``run_in_threadpool``, ``sync_to_async``) all set into it. The
request is over, and its batch folded, at the first of: the last body
chunk sent (``http.response.body`` without ``more_body``), the app raising,
the client gone (``http.disconnect`` received), or the app returning. Sets
made after that (a background task running after the response) are
events of their own, as outside any request.

Nothing here waits on the store: folding is in-memory work under a lock
held briefly, and the flusher thread applies the process batch. With
``flush='request'`` the flush runs on a thread of its own, not on the
event loop. The dashboard is the WSGI :class:`~samplez.Middleware`'s,
served by a2wsgi, which runs it on a thread pool. Lifespan and websocket
scopes pass through untouched; as the lifespan ends, the middleware
flushes what is pending (see :meth:`ASGIMiddleware._lifespan`).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from typing import Any, Awaitable, Callable, Iterable, MutableMapping

from .batch import current
from .engine import _UNSET, engine
from .errors import ConfigError
from .middleware import Middleware, Response
from .requests import RequestMetrics
from .routes import collapse

__all__ = ["ASGIMiddleware"]

log = logging.getLogger("samplez")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The status counted for a request whose client left before a response
#: started (nginx's "client closed request").
CLIENT_GONE = "499"


class Exchange:
    """One HTTP request as the middleware serves it: the WSGI
    :class:`~samplez.middleware.Response` (its batch and request metrics)
    plus the ASGI ``receive``/``send`` that watch for the request's end."""

    __slots__ = ("response", "scope", "root_path", "started", "trailers", "_receive", "_send")

    def __init__(self, scope: Scope, receive: Receive, send: Send, metrics: RequestMetrics | None) -> None:
        environ = {"REQUEST_METHOD": scope.get("method", "GET"), "PATH_INFO": scope.get("path", "")}
        self.response: Response | None = Response(environ, _no_start_response, metrics)
        self.scope = scope
        self.root_path = scope.get("root_path", "")
        self.started = False
        self.trailers = False  # the response ends with its trailers, not its body
        self._receive = receive
        self._send = send

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.finish(gone=True)
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.started = True
            self.trailers = bool(message.get("trailers"))
            if self.response is not None:
                self.response.status = str(message["status"])
        await self._send(message)
        if kind == "http.response.body":
            if not message.get("more_body") and not self.trailers:
                self.finish()
        elif kind == "http.response.trailers":
            if not message.get("more_trailers"):
                self.finish()
        elif kind == "http.response.pathsend":
            self.finish()

    def finish(self, gone: bool = False) -> None:
        """The request is over: name its route, record it and fold its
        batch, once. Never raises: it runs inside the server's calls."""
        response, self.response = self.response, None
        if response is None:
            return
        if gone and not self.started:
            response.status = CLIENT_GONE
        if response.batch.route is None:
            try:
                response.batch.route = matched_route(self.scope, self.root_path, response.status)
            except Exception:
                log.exception("samplez: reading the matched route failed")
        response.end(flush=False)
        if engine.flush_mode == "request":
            threading.Thread(target=_flush, name="samplez-request-flush", daemon=True).start()


def _no_start_response(*args: Any) -> None:
    """Never called: ASGI responses start with a message, not a call."""


def _flush() -> None:
    try:
        engine.flush()
    except Exception:
        log.exception("samplez: flush after the response failed")


def _flush_at_exit() -> None:
    """The flush the process makes at exit; the server serves nothing by
    now, so the loop may wait for it."""
    engine._at_exit()


def matched_route(scope: Scope, root_path: str, status: str) -> str | None:
    """The template of the Starlette/FastAPI route that matched the request,
    as Starlette's router leaves it in ``scope["route"]``: the path of the
    route (``/items/{item_id}``) after the prefix of any mounts it sits in
    (what they matched, collapsed). A mounted app with routes of its own
    stands under its prefix, or unmatched if it answered 404. None when no
    route matched or the app is not Starlette's."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return None
    mounted = scope.get("root_path", "")[len(root_path) :]
    prefix = collapse(mounted) if mounted else ""
    if hasattr(route, "routes"):  # a Mount: its app answered
        return None if status == "404" else prefix or path
    return prefix + path


class ASGIMiddleware:
    """ASGI 3 middleware: each HTTP request gets its own batch of
    ``samplez.set`` calls, joined to the process batch when its response is
    complete, when the app raises or when the client disconnects, and
    applied by the background flusher thread, so the event loop never waits
    on the store. Takes the keywords of :class:`samplez.Middleware`; its
    request metrics are keyed by the matched Starlette or FastAPI route
    (``GET /items/{item_id}``), else as there.

    The dashboard answers under ``dashboard_path`` through a2wsgi's
    ``WSGIMiddleware`` (``pip install 'samplez[asgi]'``), which runs it on a
    thread pool of its own; pass ``dashboard_path=None`` to do without.

    :param app: the ASGI application to wrap.
    :param store: a :class:`~samplez.MemcacheStore`,
        :class:`~samplez.RedisStore` or :class:`~samplez.MemoryStore`.
    :param dashboard_path: where the dashboard answers; ``None`` for nowhere.
    :param auth: dashboard access, as for :class:`samplez.Middleware`.
    :param request_metrics: ``True``, ``False`` or a
        :class:`~samplez.RequestMetrics`, as for :class:`samplez.Middleware`.
    :param exclude: path prefixes whose requests are not recorded.
    :param settings: the rest of :class:`samplez.Middleware`'s keywords
        (``sections``, ``flush_interval``, ...).

    >>> app = samplez.ASGIMiddleware(starlette_app, store=samplez.MemcacheStore('127.0.0.1:11211'))
    """

    def __init__(
        self,
        app: ASGIApp,
        store: Any = _UNSET,
        dashboard_path: str | None = "/_samplez",
        auth: Any = None,
        request_metrics: bool | RequestMetrics = True,
        exclude: Iterable[str] = (),
        **settings: Any,
    ) -> None:
        if not callable(app):
            raise ConfigError(f"app must be an ASGI application, got {app!r}")
        if dashboard_path is not None and importlib.util.find_spec("a2wsgi") is None:
            raise ConfigError(
                "the dashboard under ASGI needs a2wsgi: pip install 'samplez[asgi]', or pass dashboard_path=None"
            )
        # The WSGI middleware checks and applies the settings, and serves
        # the dashboard with its access rules; it never sees the app.
        self.wsgi = Middleware(
            _not_found,
            store=store,
            dashboard_path=dashboard_path,
            auth=auth,
            request_metrics=request_metrics,
            exclude=exclude,
            **settings,
        )
        self.app = app
        self.request_metrics = self.wsgi.request_metrics
        self.dashboard_path = dashboard_path
        self.exclude = self.wsgi.exclude
        self._dashboard: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await (self._lifespan if scope["type"] == "lifespan" else self.app)(scope, receive, send)
            return
        path = scope.get("path", "")
        root_path = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        prefix = self.dashboard_path
        if prefix is not None and path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
            await self._serve_dashboard(scope, receive, send)
            return
        metrics = self.request_metrics
        if metrics is not None and self.exclude and path.startswith(self.exclude):
            metrics = None
        exchange = Exchange(scope, receive, send, metrics)
        token = current.set(exchange.response.batch)  # type: ignore[union-attr]
        try:
            await self.app(scope, exchange.receive, exchange.send)
        finally:
            current.reset(token)
            exchange.finish()  # a request that raises still contributes its samples

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the lifespan through, and flush what is pending as it ends:
        uvicorn ends a process by re-raising SIGTERM after its shutdown,
        which skips ``atexit``. An app that does not speak lifespan (it
        raised before sending anything: Django) has it spoken for it, so
        that its server still says when it shuts down."""
        heard: list[str] = []
        said: list[str] = []

        async def listen() -> Message:
            message = await receive()
            heard.append(message["type"])
            return message

        async def tell(message: Message) -> None:
            said.append(message["type"])
            if message["type"] == "lifespan.shutdown.complete":
                _flush_at_exit()
            await send(message)

        try:
            await self.app(scope, listen, tell)
        except Exception:
            if said:
                raise
            log.debug("samplez: the app does not speak lifespan; samplez answers for it", exc_info=True)
            if not heard:
                await receive()  # lifespan.startup
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            _flush_at_exit()
            await send({"type": "lifespan.shutdown.complete"})

    async def _serve_dashboard(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._dashboard is None:
            from a2wsgi import WSGIMiddleware

            self._dashboard = WSGIMiddleware(self.wsgi)  # type: ignore[arg-type,assignment]
        await self._dashboard(scope, receive, send)  # type: ignore[misc]


def _not_found(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """What the inner WSGI middleware would serve outside the dashboard:
    nothing reaches it."""
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]

"""``ASGIMiddleware`` in-process, driven by a minimal ASGI server loop:
each request's sets form its batch, closed when the response completes,
fails or the client leaves; request metrics keyed by the matched
Starlette, FastAPI or Django route; lifespan and websockets untouched;
the dashboard reachable. Real servers: tests/test_asgi_uvicorn.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, AsyncIterator

import pytest
from fastapi import BackgroundTasks, FastAPI
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

import samplez
from samplez.requests import default_request_metrics
from tests.conftest import unique_name
from tests.test_django import application as django_settings  # noqa: F401 (a fixture)
from tests.test_roundtrips import silent_memcached  # noqa: F401 (a fixture)

HITS = samplez.RollingCounter(unique_name("asgi_hits"), window=60)
METRICS = default_request_metrics()
LOCAL = ("127.0.0.1", 40000)


@pytest.fixture
def on(store: samplez.Store, clock: Any) -> samplez.Store:
    """samplez on ``store``; the flusher waits, each test flushes."""
    samplez.configure(store=store, clock=clock, flush="background", flush_interval=3600)
    return store


class Exchange:
    """What a server saw of one request: the messages the app sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.leave = asyncio.Event()  # set: the client disconnects

    @property
    def status(self) -> int:
        return self.sent[0]["status"]

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


async def call(app: Any, path: str, method: str = "GET", client: tuple[str, int] = LOCAL, **kw: Any) -> Exchange:
    """One HTTP request to ``app``, as a server makes it; the client leaves
    when ``exchange.leave`` is set (or the app asks again after the body)."""
    exchange = kw.pop("exchange", None) or Exchange()
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"testserver")],
        "client": client,
        "server": ("127.0.0.1", 80),
    }
    asked = 0

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        if asked == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await exchange.leave.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        exchange.sent.append(message)

    await app(scope, receive, send)
    return exchange


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def request_totals() -> dict[str, int]:
    samplez.flush()
    result = samplez.get(METRICS.requests)
    return {key: result[key].total for key in result.keys()}


def hits() -> dict[str, int]:
    samplez.flush()
    result = samplez.get(HITS)
    return {key: result[key].total for key in result.keys()}


# -- a Starlette site -----------------------------------------------------------


async def item(request: Request) -> Response:
    samplez.set(HITS, "item")
    return PlainTextResponse(str(next(iter(request.path_params.values()))))


async def named(request: Request) -> Response:
    samplez.route("checkout")
    return PlainTextResponse("named")


async def failing(request: Request) -> Response:
    samplez.set(HITS, "failing")
    raise RuntimeError("the handler failed")


async def streamed(request: Request) -> Response:
    async def rows() -> AsyncIterator[bytes]:
        for n in range(3):
            samplez.set(HITS, "streamed")  # while the body is sent
            yield b"row %d\n" % n

    return StreamingResponse(rows())


def streamed_sync(request: Request) -> Response:
    def rows() -> Any:
        for n in range(3):
            samplez.set(HITS, "streamed-sync")  # on a thread of the pool, in the request's context
            yield b"row %d\n" % n

    return StreamingResponse(rows())


async def tasked(request: Request) -> Response:
    async def side() -> None:
        samplez.set(HITS, "task")

    await asyncio.create_task(side())  # a task made in the request copies its context
    return PlainTextResponse("ok", background=BackgroundTask(samplez.set, HITS, "after"))


async def endless(request: Request) -> Response:
    async def rows() -> AsyncIterator[bytes]:
        samplez.set(HITS, "endless")
        yield b"first\n"
        await asyncio.Event().wait()  # until the client leaves
        yield b"never\n"

    return StreamingResponse(rows())


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


started: list[str] = []


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    started.append("up")
    yield
    started.append("down")


def starlette_app(**options: Any) -> samplez.ASGIMiddleware:
    users = Starlette(routes=[Route("/users/{uid:int}", item)])
    site = Starlette(
        routes=[
            Route("/items/{item_id}", item),
            Route("/named/{n}", named),
            Route("/fail", failing),
            Route("/stream", streamed),
            Route("/stream-sync", streamed_sync),
            Route("/tasked", tasked),
            Route("/endless", endless),
            WebSocketRoute("/ws", echo),
            Mount("/api", users),
        ],
        lifespan=lifespan,
    )
    return samplez.ASGIMiddleware(site, **options)


async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app with no router."""
    status = 404 if scope["path"].startswith("/missing") else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def raw() -> samplez.ASGIMiddleware:
    return samplez.ASGIMiddleware(raw_app)


@pytest.mark.parametrize(
    "app, method, path, status, key",
    [
        pytest.param(starlette_app, "GET", "/items/5", 200, "GET /items/{item_id}", id="route"),
        pytest.param(starlette_app, "GET", "/api/users/7", 200, "GET /api/users/{uid:int}", id="mounted"),
        pytest.param(starlette_app, "POST", "/items/5", 405, "POST /items/{item_id}", id="method-not-allowed"),
        pytest.param(starlette_app, "GET", "/wp-login.php", 404, "GET (unmatched)", id="unmatched"),
        pytest.param(starlette_app, "GET", "/api/nobody", 404, "GET (unmatched)", id="unmatched-in-a-mount"),
        pytest.param(starlette_app, "GET", "/named/9", 200, "GET checkout", id="named-by-the-handler"),
        pytest.param(raw, "GET", "/users/123", 200, "GET /users/<int>", id="raw"),
        pytest.param(raw, "GET", "/missing/1", 404, "GET (unmatched)", id="raw-404"),
    ],
)  # fmt: skip
def test_requests_are_keyed_by_the_matched_route(on, app, method, path, status, key):
    assert run(call(app(), path, method)).status == status
    assert request_totals() == {key: 1}


@pytest.mark.parametrize(
    "path, body, counted",
    [
        pytest.param("/items/1", b"1", {"item": 1}, id="handler"),
        pytest.param("/stream", b"row 0\nrow 1\nrow 2\n", {"streamed": 3}, id="async-stream"),
        pytest.param("/stream-sync", b"row 0\nrow 1\nrow 2\n", {"streamed-sync": 3}, id="sync-stream"),
        pytest.param("/tasked", b"ok", {"task": 1, "after": 1}, id="task-and-background-task"),
    ],
)
def test_every_set_of_a_request_counts_once(on, path, body, counted):
    assert run(call(starlette_app(), path)).body == body
    assert hits() == counted
    assert samplez.get(METRICS.latency).total_events == 1


def test_a_request_holds_one_value_per_key_and_requests_do_not_mix(on):
    config = samplez.Config(unique_name("asgi_each"), period=60, samples=1000, by_value=True)

    async def handler(request: Request) -> Response:
        n = int(request.path_params["n"])
        samplez.set(config, "all", -1)
        await asyncio.sleep(0.001 * (n % 7))  # the requests interleave
        samplez.set(config, "all", n)  # overwrites this request's -1, no other's
        samplez.set(config, f"r{n}", n)
        return PlainTextResponse("ok")

    app = samplez.ASGIMiddleware(Starlette(routes=[Route("/n/{n}", handler)]))

    async def many() -> None:
        await asyncio.gather(*(call(app, f"/n/{n}") for n in range(200)))

    run(many())
    samplez.flush()
    result = samplez.get(config)
    assert sorted(v for _, v in result.samples("all")) == list(range(200))
    assert all(result.samples(f"r{n}")[0][1] == n for n in range(200))


def test_a_failing_handler_counts_a_500_and_keeps_its_samples(on, caplog):
    with caplog.at_level(logging.CRITICAL), pytest.raises(RuntimeError):
        run(call(starlette_app(), "/fail"))
    assert hits() == {"failing": 1}
    assert request_totals() == {"GET /fail": 1}
    statuses = samplez.get(METRICS.statuses)
    assert {key: statuses[key].total for key in statuses.keys()} == {"500": 1}


@pytest.mark.parametrize(
    "app, status",
    [
        pytest.param(starlette_app, "200", id="mid-stream"),
        pytest.param(lambda: samplez.ASGIMiddleware(waits_for_the_body), "499", id="before-the-response"),
    ],
)
def test_a_client_that_leaves_ends_its_request(on, app, status):
    async def leave() -> Exchange:
        exchange = Exchange()
        request = asyncio.create_task(call(app(), "/endless", exchange=exchange))
        await asyncio.sleep(0.05)
        exchange.leave.set()
        return await asyncio.wait_for(request, 5)

    run(leave())
    assert request_totals() == {"GET /endless": 1}
    statuses = samplez.get(METRICS.statuses)
    assert {key: statuses[key].total for key in statuses.keys()} == {status: 1}
    assert hits() == {"endless": 1}


async def waits_for_the_body(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads until the client leaves, with no response started."""
    samplez.set(HITS, "endless")
    while (await receive())["type"] != "http.disconnect":
        pass


def test_lifespan_and_websockets_pass_through(on):
    app = starlette_app()

    async def lifespan_and_socket() -> tuple[list[str], list[dict[str, Any]]]:
        said: list[str] = []
        inbox = asyncio.Queue[dict[str, Any]]()
        for message in ("lifespan.startup", "lifespan.shutdown"):
            inbox.put_nowait({"type": message})

        async def tell(message: dict[str, Any]) -> None:
            said.append(message["type"])

        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, tell)
        sent: list[dict[str, Any]] = []
        frames = iter([{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hi"}])

        async def receive() -> dict[str, Any]:
            return next(frames, {"type": "websocket.disconnect", "code": 1000})

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b"", "root_path": ""}
        await app(scope, receive, send)
        return said, sent

    said, sent = run(lifespan_and_socket())
    assert said == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert started[-2:] == ["up", "down"]
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == "hi"
    assert request_totals() == {}


async def http_only(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app that does not speak lifespan, as Django's ASGI handler."""
    if scope["type"] != "http":
        raise ValueError(f"only http, not {scope['type']}")
    await raw_app(scope, receive, send)


@pytest.mark.parametrize("app", [pytest.param(starlette_app, id="speaks"), pytest.param(http_only, id="does-not")])
def test_what_is_pending_is_flushed_as_the_lifespan_ends(on, app):
    wrapped = samplez.ASGIMiddleware(app) if app is http_only else app()

    async def lifespan() -> list[str]:
        said: list[str] = []
        inbox = asyncio.Queue[dict[str, Any]]()
        inbox.put_nowait({"type": "lifespan.startup"})

        async def tell(message: dict[str, Any]) -> None:
            said.append(message["type"])
            if message["type"] == "lifespan.startup.complete":
                samplez.set(HITS, "pending")  # not flushed: the flusher waits an hour
                inbox.put_nowait({"type": "lifespan.shutdown"})

        await wrapped({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, tell)
        return said

    assert run(lifespan()) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert samplez.get(HITS)["pending"].total == 1  # no flush here: the lifespan's end made it


@pytest.mark.parametrize(
    "client, path, status",
    [
        pytest.param(LOCAL, "/_samplez/?format=json", 200, id="loopback"),
        pytest.param(("10.0.0.9", 5000), "/_samplez/?format=json", 403, id="remote"),
        pytest.param(LOCAL, "/_samplez/no/such/page", 404, id="unknown-page"),
    ],
)
def test_the_dashboard_answers_under_its_path(on, client, path, status):
    app = starlette_app()
    run(call(app, "/items/3"))
    answer = run(call(app, path, client=client))
    assert answer.status == status
    if status == 200:
        sections = json.loads(answer.body)["sections"]
        assert "Requests" in [s["title"] for s in sections]
    assert request_totals() == {"GET /items/{item_id}": 1}  # the dashboard's own requests are not counted


def test_the_event_loop_never_waits_on_the_store(silent_memcached):  # noqa: F811
    timeout = 3.0
    store = samplez.MemcacheStore(silent_memcached.address, connect_timeout=timeout, timeout=timeout)
    app = starlette_app(store=store, flush="request")

    async def requests() -> float:
        await call(app, "/items/0")
        deadline = time.monotonic() + 5  # a flush thread reaches the silent server and hangs on it
        while not silent_memcached.received and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        start = time.monotonic()
        await asyncio.gather(*(call(app, f"/items/{i}") for i in range(200)))
        return time.monotonic() - start

    elapsed = run(requests())
    assert silent_memcached.received > 0, "no flush reached the server"
    assert elapsed < timeout / 3


def test_a_flush_per_request_applies_off_the_loop(store, clock):
    app = starlette_app(store=store, clock=clock, flush="request")
    run(call(app, "/items/1"))
    deadline = time.monotonic() + 5
    while samplez.get(HITS)["item"].total != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert samplez.get(HITS)["item"].total == 1


@pytest.mark.parametrize(
    "options, error",
    [
        pytest.param({"app": None}, "app must be an ASGI application", id="app"),
        pytest.param({"dashboard_path": "_samplez"}, "dashboard_path must start with '/'", id="dashboard-path"),
        pytest.param({"exclude": "/health"}, "exclude must be path prefixes", id="exclude"),
        pytest.param({"request_metrics": "yes"}, "request_metrics must be", id="request-metrics"),
    ],
)
def test_bad_settings_are_refused(options, error):
    with pytest.raises(samplez.ConfigError, match=error):
        samplez.ASGIMiddleware(**{"app": raw_app, **options})


def test_excluded_paths_are_not_recorded(on):
    app = samplez.ASGIMiddleware(raw_app, exclude=("/health",))
    run(call(app, "/health/live"))
    run(call(app, "/users/1"))
    assert request_totals() == {"GET /users/<int>": 1}


# -- FastAPI and Django ---------------------------------------------------------------


def fastapi_app() -> samplez.ASGIMiddleware:
    api = FastAPI()

    @api.get("/items/{item_id}")
    async def read_item(item_id: int, background: BackgroundTasks) -> dict[str, int]:
        samplez.set(HITS, "fastapi")
        background.add_task(samplez.set, HITS, "fastapi-after")
        return {"item_id": item_id}

    @api.get("/sync/{n}")
    def read_sync(n: int) -> dict[str, int]:
        samplez.set(HITS, "fastapi-sync")  # on a thread of the pool, in the request's context
        return {"n": n}

    return samplez.ASGIMiddleware(api)


@pytest.mark.parametrize(
    "path, body, key, counted",
    [
        pytest.param(
            "/items/4", {"item_id": 4}, "GET /items/{item_id}", {"fastapi": 1, "fastapi-after": 1}, id="async"
        ),
        pytest.param("/sync/2", {"n": 2}, "GET /sync/{n}", {"fastapi-sync": 1}, id="sync"),
        pytest.param("/nothing", {"detail": "Not Found"}, "GET (unmatched)", {}, id="unmatched"),
    ],
)  # fmt: skip
def test_fastapi(on, path, body, key, counted):
    assert json.loads(run(call(fastapi_app(), path)).body) == body
    assert hits() == counted
    assert request_totals() == {key: 1}


@pytest.fixture
def django_asgi(django_settings):  # noqa: F811
    from django.core.asgi import get_asgi_application

    return samplez.ASGIMiddleware(get_asgi_application())


@pytest.mark.parametrize(
    "path, status, key, counted",
    [
        pytest.param("/shop/acme/item/2", 200, "GET /shop/<str:account>/item/<int:item>", {"item": 1}, id="view"),
        pytest.param("/astream", 200, "GET /astream", {"streamed": 3}, id="stream"),
        pytest.param("/fail", 500, "GET /fail", {"fail": 1}, id="failing-view"),
        pytest.param("/no/such/page", 404, "GET (unmatched)", {}, id="unmatched"),
    ],
)
def test_django_under_asgi(on, django_asgi, path, status, key, counted, caplog):
    from tests.django_project import metrics

    with caplog.at_level(logging.CRITICAL, logger="django.request"):
        assert run(call(django_asgi, path)).status == status
    samplez.flush()
    result = samplez.get(metrics.HITS)
    assert {k: result[k].total for k in result.keys()} == counted
    assert request_totals() == {key: 1}

"""The middleware on a real WSGI stack (webtest)."""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
import time

import pytest
import webtest

import samplez
from samplez import batch
from samplez.engine import engine
from tests.conftest import unique_name, wsgi_call


def middleware(app, **kwargs):
    """The middleware without request metrics: these tests count the
    events of the request batch alone (tests/test_requests.py counts the
    rest)."""
    return samplez.Middleware(app, request_metrics=False, **kwargs)


def make_app(config, fail=False):
    def app(environ, start_response):
        samplez.set(config, environ["PATH_INFO"], 10)
        samplez.set(config, environ["PATH_INFO"], 20)  # same key, same request: one event
        if fail:
            raise RuntimeError("handler failed")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


@pytest.fixture
def config():
    return samplez.Config(unique_name("mw"), period=60, samples=100, by_value=True)


def test_each_request_contributes_its_samples(samplez_on, config):
    app = webtest.TestApp(middleware(make_app(config)))
    for _ in range(3):
        assert app.get("/a").text == "ok"
    result = samplez.get(config)
    assert result.total_events == 3 and [v for _, v in result.samples("/a")] == [20.0] * 3


def test_a_request_that_raises_still_contributes(samplez_on, config):
    app = webtest.TestApp(middleware(make_app(config, fail=True)))
    with pytest.raises(RuntimeError):
        app.get("/boom")
    samplez.flush()
    assert samplez.get(config).count("/boom") == 1


def test_a_middleware_inside_another_gives_the_thread_back_to_the_outer_request(samplez_on, config):
    inner = middleware(make_app(config), dashboard_path=None)

    def outer_app(environ, start_response):
        samplez.set(config, "outer", 1)
        body = inner(environ, start_response)  # its own request batch, folded as it returns
        samplez.set(config, "outer", 2)  # back in the outer request: replaces 1
        return body

    before = batch.current.get()
    webtest.TestApp(middleware(outer_app)).get("/inner")
    assert batch.current.get() is before
    result = samplez.get(config)
    assert [v for _, v in result.samples("outer")] == [2.0]
    assert [v for _, v in result.samples("/inner")] == [20.0]


def test_background_mode_does_no_store_work_on_the_request_path(memcached, config):
    # A flush interval far in the future: nothing may reach memcached
    # until the test flushes.
    store = samplez.MemcacheStore(memcached.address)
    app = webtest.TestApp(middleware(make_app(config), store=store, flush_interval=3600))
    app.get("/x")
    assert engine.pending == 1
    assert samplez.get(config).total_events == 0
    samplez.flush()
    assert samplez.get(config).total_events == 1


def test_a_streamed_body_runs_in_its_request_until_closed(samplez_on, config):
    # A generator app runs all its code as the server iterates the body:
    # it is still the request, so one key keeps one value and its route.
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        samplez.route("generated")
        samplez.set(config, "streamed", 1)
        yield b"x"
        samplez.set(config, "streamed", 2)  # the same request: replaces 1

    metrics = samplez.RequestMetrics(prefix=unique_name("gen"))
    assert webtest.TestApp(samplez.Middleware(app, request_metrics=metrics)).get("/users/1").text == "x"
    assert batch.current.get() is None
    result = samplez.get(config)
    assert [v for _, v in result.samples("streamed")] == [2.0]
    assert {key: reading.total for key, reading in samplez.get(metrics.requests).items()} == {"GET generated": 1}


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"dashboard_path": "no-slash"}, id="relative-path"),
        pytest.param({"dashboard_path": "/trailing/"}, id="trailing-slash"),
        pytest.param({"flush": "never"}, id="bad-flush"),
        pytest.param({"flush_interval": -1}, id="bad-interval"),
    ],
)
def test_bad_middleware_arguments(kwargs, config):
    with pytest.raises(samplez.ConfigError):
        middleware(make_app(config), **kwargs)


def test_a_streamed_response_is_its_request_only_while_a_chunk_is_made_or_it_closes(samplez_on, config):
    class Body:
        def __iter__(self):
            samplez.set(config, "/a", 3)  # sent: still /a, replaces 2
            yield b"a"

        def close(self):
            samplez.set(config, "closed", 1)  # closing: still /a

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        samplez.set(config, environ["PATH_INFO"], 1)
        samplez.set(config, environ["PATH_INFO"], 2)
        return Body() if environ["PATH_INFO"] == "/a" else [b"b"]

    wrapped = middleware(app, flush="background", flush_interval=3600)  # flushed below
    before = batch.current.get()
    first = wsgi_call(wrapped, "/a")
    assert batch.current.get() is before
    samplez.set(config, "between", 1)  # the call has returned: an event of its own
    assert engine.pending == 1
    wsgi_call(wrapped, "/b")  # a request of its own while /a is open
    assert engine.pending == 2
    assert list(first) == [b"a"]
    first.close()  # /a's batch is folded: /a and closed
    assert engine.pending == 4 and batch.current.get() is before
    samplez.set(config, "after", 1)
    assert engine.pending == 5
    samplez.flush()
    result = samplez.get(config)
    assert [v for _, v in result.samples("/a")] == [3.0]
    assert [v for _, v in result.samples("/b")] == [2.0]
    assert result.count("closed") == result.count("between") == result.count("after") == 1


def test_a_set_from_a_copy_of_the_request_context_after_the_response_is_an_event(samplez_on, config):
    # A thread started with a copy of the request's context may outlive the
    # response: what it sets then is an event of its own, not a value in a
    # request batch that was folded already.
    copies = []

    def app(environ, start_response):
        samplez.set(config, "in", 1)
        copies.append(contextvars.copy_context())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"list"] if environ["PATH_INFO"] == "/list" else iter([b"streamed"])

    client = webtest.TestApp(middleware(app, flush_interval=3600))
    assert client.get("/list").text == "list" and client.get("/streamed").text == "streamed"
    for copy in copies:
        late = threading.Thread(target=copy.run, args=(samplez.set, config, "late", 1))
        late.start()
        late.join()
    samplez.flush()
    result = samplez.get(config)
    assert result.count("in") == 2 and result.count("late") == 2


def test_a_body_closed_on_another_thread_still_folds_its_batch(samplez_on, config):
    def app(environ, start_response):
        samplez.set(config, "called", 1)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"x"])

    def request_then_more():
        wrapped = middleware(app, flush="background", flush_interval=3600)
        body = wsgi_call(wrapped, "/")
        assert list(body) == [b"x"] and engine.pending == 0
        closer = threading.Thread(target=contextvars.Context().run, args=(body.close,))
        closer.start()
        closer.join()
        assert engine.pending == 1
        samplez.set(config, "after", 1)  # the request's batch is closed: an event of its own
        assert engine.pending == 2

    contextvars.Context().run(request_then_more)
    samplez.flush()
    result = samplez.get(config)
    assert result.count("called") == result.count("after") == 1


def test_a_middleware_inside_another_with_a_streamed_body_gives_the_thread_back(samplez_on, config):
    def inner_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            samplez.set(config, "inner", 1)
            samplez.set(config, "inner", 2)  # produced in the inner request: replaces 1
            yield b"inner"

        return body()

    inner = middleware(inner_app, dashboard_path=None)

    def outer_app(environ, start_response):
        samplez.set(config, "outer", 1)
        body = inner(environ, start_response)
        samplez.set(config, "outer", 2)  # back in the outer request: replaces 1
        return body

    before = batch.current.get()
    assert webtest.TestApp(middleware(outer_app)).get("/").text == "inner"
    assert batch.current.get() is before
    result = samplez.get(config)
    assert [v for _, v in result.samples("outer")] == [2.0]
    assert [v for _, v in result.samples("inner")] == [2.0]


def list_or_streamed_app(config):
    def app(environ, start_response):
        samplez.set(config, environ["PATH_INFO"], 1)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"list"] if environ["PATH_INFO"] == "/list" else iter([b"streamed"])

    return app


def test_a_body_never_closed_leaves_later_requests_their_own_batches(samplez_on, config):
    wrapped = middleware(list_or_streamed_app(config), flush="background", flush_interval=3600)

    def requests():
        leaked = wsgi_call(wrapped, "/streamed")
        assert list(leaked) == [b"streamed"]  # never closed: its samples are never folded
        for _ in range(2):
            wsgi_call(wrapped, "/list")
            assert batch.current.get() is None
        samplez.set(config, "outside", 1)
        assert engine.pending == 3

    contextvars.Context().run(requests)
    samplez.flush()
    result = samplez.get(config)
    assert result.count("/list") == 2 and result.count("outside") == 1


def test_a_copy_of_an_earlier_request_context_never_writes_into_a_later_request(samplez_on, config):
    # The copy holds the first request's batch, closed by then: its value is
    # an event of its own and cannot replace the second request's value.
    copies = []

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/first":
            copies.append(contextvars.copy_context())
        else:
            samplez.set(config, "k", 2)
            late = threading.Thread(target=copies[0].run, args=(samplez.set, config, "k", 1))
            late.start()
            late.join()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    wrapped = middleware(app, flush="background", flush_interval=3600)
    contextvars.Context().run(lambda: (wsgi_call(wrapped, "/first"), wsgi_call(wrapped, "/second")))
    samplez.flush()
    assert sorted(v for _, v in samplez.get(config).samples("k")) == [1.0, 2.0]


def test_sets_from_a_copied_context_racing_the_fold_count_once_and_raise_nothing(samplez_on):
    # A thread with a copy of the request's context keeps setting while the
    # response closes: each set joins the batch before the fold or is an
    # event of its own after it; none is lost or counted twice.
    hits = samplez.RollingCounter(unique_name("race"), window=60)
    keys = samplez.Config(unique_name("race"), period=60, samples=100_000, by_value=True)
    requests = 30
    done = threading.Event()
    sets = []

    class Body:
        def __iter__(self):
            yield b"ok"

        def close(self):  # handler code still running as the response closes
            deadline = time.perf_counter() + 0.002
            while time.perf_counter() < deadline:
                pass

    def hammer():
        count = 0
        while not done.is_set() and count < 2000:
            samplez.set(hits, "k")
            samplez.set(keys, str(count))  # a new key each time: the batch grows as it is folded
            count += 1
        sets.append(count)

    def app(environ, start_response):
        context = contextvars.copy_context()
        environ["test.thread"] = threading.Thread(target=context.run, args=(hammer,))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    wrapped = middleware(app, flush="background", flush_interval=3600, max_pending=1_000_000, max_pending_bytes=2**30)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(requests):
            environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.errors": sys.stderr}
            body = wrapped(environ, lambda status, headers, exc_info=None: None)
            done.clear()
            environ["test.thread"].start()
            assert list(body) == [b"ok"]
            body.close()
            time.sleep(0.001)
            done.set()
            environ["test.thread"].join()
    finally:
        sys.setswitchinterval(switch)
    summary = samplez.flush()
    assert (summary.applied, summary.dropped) == (2 * sum(sets), 0)
    assert samplez.get(hits)["k"].total == sum(sets)


def test_only_the_request_code_as_it_runs_sets_without_the_lock(samplez_on, config):
    # While the call runs, its sets need no lock: nothing folds the batch
    # meanwhile. Once it has returned, the server may close the body on
    # any thread, so a copy of the request's context run on its own thread
    # waits for the lock as any other thread does.
    copies = []
    order = []

    def app(environ, start_response):
        with held_lock(order, seconds=10) as done:  # held until this set returns
            samplez.set(config, "in the call", 1)  # would wait 10 s for the lock
            order.append("set in the call")
            done.set()
        copies.append(contextvars.copy_context())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"ok"])

    body = wsgi_call(middleware(app, flush="background", flush_interval=3600), "/")
    with held_lock(order, seconds=0.2):
        copies[0].run(samplez.set, config, "after the call", 1)  # waits for the release
        order.append("set after the call")
    body.close()
    assert order == ["set in the call", "released", "released", "set after the call"]
    samplez.flush()
    result = samplez.get(config)
    assert result.count("in the call") == result.count("after the call") == 1


@contextlib.contextmanager
def held_lock(order, seconds):
    """Hold the request batches' lock on another thread until the event
    yielded is set or ``seconds`` pass, then note its release in ``order``."""
    held, done = threading.Event(), threading.Event()

    def hold():
        with batch._lock:
            held.set()
            done.wait(seconds)
            order.append("released")

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        yield done
    finally:
        holder.join()


def test_a_copy_run_on_the_request_thread_after_the_call_races_a_close_elsewhere(samplez_on):
    # Once the call has returned, the request's code no longer runs on its
    # thread: a copy of its context run there takes the lock as any other
    # thread does, so a server closing the body on another thread loses
    # nothing and raises nothing.
    hits = samplez.RollingCounter(unique_name("race"), window=60)
    keys = samplez.Config(unique_name("race"), period=60, samples=100_000, by_value=True)
    done = threading.Event()
    sets = []
    copies = []

    def hammer():
        count = 0
        while not done.is_set():  # until the body is closed, and a little after
            samplez.set(hits, "k")
            samplez.set(keys, str(count))
            count += 1
        sets.append(count)

    def app(environ, start_response):
        copies.append(contextvars.copy_context())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"ok"])

    def close_soon(body):
        time.sleep(0.0005)
        body.close()
        done.set()

    wrapped = middleware(app, flush="background", flush_interval=3600, max_pending=1_000_000, max_pending_bytes=2**30)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(30):
            environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.errors": sys.stderr}
            body = wrapped(environ, lambda status, headers, exc_info=None: None)
            assert list(body) == [b"ok"]
            done.clear()
            closer = threading.Thread(target=close_soon, args=(body,))
            closer.start()
            copies.pop().run(hammer)
            closer.join()
    finally:
        sys.setswitchinterval(switch)
    summary = samplez.flush()
    assert (summary.applied, summary.dropped) == (2 * sum(sets), 0)
    assert samplez.get(hits)["k"].total == sum(sets)

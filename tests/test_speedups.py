"""The request path has two twins: ``samplez/_speedups.c`` and the Python
in batch.py and middleware.py (``SAMPLEZ_PURE=1``, or no compiler). The
suite runs on the C one; this file checks that it is the one running, runs
the request-path tests again on the Python one, and covers what only the C
one does."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections import deque
from decimal import Decimal
from pathlib import Path

import pytest
import webtest

import samplez
from samplez import batch
from samplez.engine import engine
from samplez.flush import group
from samplez.middleware import Middleware
from tests.conftest import unique_name

ROOT = Path(__file__).resolve().parent.parent
PURE = os.environ.get("SAMPLEZ_PURE", "") not in ("", "0")
needs_c = pytest.mark.skipif(PURE, reason="SAMPLEZ_PURE=1: the Python twin runs")
#: The tests of what the twins both do: sets, request batches, the
#: middleware on WSGI, Flask and Django, faults, forks.
REQUEST_PATH_TESTS = [
    "tests/test_batch.py",
    "tests/test_middleware.py",
    "tests/test_flask.py",
    "tests/test_django.py",
    "tests/test_bad_input.py",
    "tests/test_engine.py",
    "tests/test_faults.py",
    "tests/test_fork.py",
    "tests/test_speedups.py",  # its tests not marked needs_c hold for both twins
]


@pytest.fixture
def config():
    return samplez.Config(unique_name("twin"), period=60, samples=100, by_value=True)


@needs_c
def test_the_c_request_path_is_built_and_runs():
    # ./dev installs with a compiler on the machine: a build that failed
    # silently would leave every user on the slower twin.
    assert batch.speedups is not None
    assert samplez.set is batch.speedups.set
    assert issubclass(Middleware, batch.speedups.MiddlewareBase)


@needs_c
@pytest.mark.slow
def test_the_python_twin_passes_the_request_path_tests():
    env = dict(os.environ, SAMPLEZ_PURE="1")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow and not browser"]
    result = subprocess.run(
        [*command, *REQUEST_PATH_TESTS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and " failed" not in result.stdout


def test_set_takes_its_arguments_by_keyword_too(samplez_on, config):
    token = batch.begin()
    samplez.set(config, key="k", value=2.5)
    samplez.set(target=config, key="k", value=3)  # the same request: replaces 2.5
    batch.end(token)
    samplez.flush()
    assert [v for _, v in samplez.get(config).samples("k")] == [3.0]
    with pytest.raises(TypeError):
        samplez.set(config)


def test_a_body_whose_close_raises_still_folds_its_batch(samplez_on, config):
    class Body:
        def __iter__(self):
            samplez.set(config, "streamed", 1)
            yield b"x"

        def close(self):
            raise OSError("close failed")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    wrapped = Middleware(app, flush="background", flush_interval=3600)  # flushed by hand
    body = wrapped({"PATH_INFO": "/", "REQUEST_METHOD": "GET"}, lambda *args: None)
    assert list(body) == [b"x"]
    with pytest.raises(OSError, match="close failed"):
        body.close()
    assert engine.pending == 1


def test_the_wrapped_app_can_be_replaced(samplez_on, config):
    def other(environ, start_response):
        samplez.set(config, "other", 1)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"other"]

    wrapped = Middleware(lambda environ, start_response: [b"first"])
    wrapped.app = other
    assert webtest.TestApp(wrapped).get("/").text == "other"
    assert samplez.get(config).count("other") == 1
    wrapped.dashboard_path = None  # no dashboard: its path reaches the app
    assert webtest.TestApp(wrapped).get("/_samplez").text == "other"


@needs_c
def test_c_events_are_untracked_as_they_are_made(samplez_on, config):
    # The Python twin's events are untracked at their first collection; the
    # C twin keeps none as objects, and makes them untracked when read out.
    gc.disable()
    try:

        def app(environ, start_response):
            samplez.set(config, "k", 1)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]

        webtest.TestApp(Middleware(app, flush="background", flush_interval=3600)).get("/")
        assert len(engine._pending) == 1
        assert not gc.is_tracked(engine._pending[0])
    finally:
        gc.enable()


@needs_c
def test_the_c_body_wrapper_checks_what_it_is_given():
    with pytest.raises(TypeError):
        batch.speedups.Closing([b""], "not a dict", None)
    with pytest.raises(TypeError):
        batch.speedups.Closing([b""], {}, None, extra=1)


def test_outside_a_request_a_set_is_one_event_stamped_now(samplez_on, config, clock):
    samplez.set(config, "k", 1.5)
    samplez.set(config, "k", 2)
    assert list(engine._pending) == [(config.slot, "k", 1.5, clock.now), (config.slot, "k", 2, clock.now)]

    def broken() -> float:
        raise OSError("clock source gone")

    engine.clock = broken  # outside a request the caller hears of it, as from any call
    try:
        with pytest.raises(OSError, match="clock source gone"):
            samplez.set(config, "k", 3)
    finally:
        engine.clock = clock
    assert len(engine._pending) == 2


def test_a_clock_that_fails_once_drops_that_request_and_is_not_asked_again(samplez_on, config, clock):
    calls = []

    def flaky() -> float:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("clock source gone")
        return clock()

    def app(environ, start_response):
        samplez.set(config, "k", 1)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    dropped = engine.health["dropped"]
    engine.clock = flaky
    try:
        wrapped = Middleware(app, flush="background", flush_interval=3600)  # flushed by hand
        wrapped({"PATH_INFO": "/", "REQUEST_METHOD": "GET"}, lambda *args: None)
    finally:
        engine.clock = clock
    assert len(calls) == 1  # the fold asked once, and dropped what it could not stamp
    assert engine.pending == 0
    samplez.flush()
    assert engine.health["dropped"] == dropped + 1


# -- the process batch: _speedups.Pending, a deque in less memory -------------


def pending_kinds():
    kinds = [pytest.param(deque, id="deque")]
    if batch.speedups is not None:
        kinds.append(pytest.param(batch.speedups.Pending, id="Pending"))
    return kinds


def event(n: int, slot: int = 1) -> tuple[int, str, float, float]:
    return (slot, f"key{n % 7}", float(n), 1000.0 + n)


@needs_c
def test_with_the_c_path_the_process_batch_is_a_pending_also_after_a_fork(samplez_on, config):
    samplez.set(config, "k", 1)
    assert type(engine._pending) is batch.speedups.Pending
    assert list(engine._pending)[0][1:3] == ("k", 1)
    pid = os.fork()
    if pid == 0:  # the child starts with an empty batch of the same kind
        os._exit(0 if type(engine._pending) is batch.speedups.Pending and not engine._pending else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("kind", pending_kinds())
def test_pending_keeps_events_as_a_deque_does(kind):
    # The engine uses append, extend, extendleft, popleft, len, [i] and
    # clear; the same moves on both give the same events, also as the ring
    # wraps around and grows (seeded random walk against a deque).
    import random

    rng = random.Random(7)
    mine, model = kind(), deque()

    def both(method, argument):
        getattr(mine, method)(argument)
        getattr(model, method)(argument)

    for n in range(5000):
        move = rng.random()
        if move < 0.4:
            both("append", event(n))
        elif move < 0.6:
            both("extend", [event(n * 10 + i) for i in range(rng.randrange(0, 90))])
        elif move < 0.7:
            both("extendleft", [event(n * 10 + i) for i in range(rng.randrange(0, 9))])
        elif model:
            for _ in range(rng.randrange(1, 40)):
                if model:
                    assert mine.popleft() == model.popleft()
        assert len(mine) == len(model)
        if model and n % 50 == 0:
            assert mine[0] == model[0] and mine[-1] == model[-1]
    assert list(mine) == list(model)
    mine.clear()
    assert len(mine) == 0 and not mine and list(mine) == []
    with pytest.raises(IndexError):
        mine.popleft()
    with pytest.raises(IndexError):
        mine[0]


@pytest.mark.parametrize("kind", pending_kinds())
def test_a_pending_of_maxlen_0_keeps_nothing_as_a_deque_does(kind):
    # bench/_wsgi_app.py's fold stage throws events away so, on either kind.
    nothing = kind(maxlen=0)
    nothing.extend([event(1), event(2)])
    nothing.append(event(3))
    nothing.extendleft([event(0)])
    assert len(nothing) == 0 and list(nothing) == []


@needs_c
def test_pending_refuses_what_is_not_an_event_and_adds_nothing_then():
    pending = batch.speedups.Pending()
    with pytest.raises(TypeError, match="an event is a"):
        pending.extend([event(1), (1, "k")])
    with pytest.raises(TypeError, match="an event is a"):
        pending.append("not an event")
    with pytest.raises(TypeError):
        pending.extend(5)
    with pytest.raises(TypeError, match="time is a number"):
        pending.append((1, "k", 1, None))
    for maxlen in (-1, 3, "0"):  # no other bound: the engine counts its own drops
        with pytest.raises(ValueError, match="maxlen"):
            batch.speedups.Pending(maxlen=maxlen)
    assert len(pending) == 0


@needs_c
def test_pending_holds_its_references_and_gives_them_back():
    key, value = "".join(["a", "key"]), 1234.5 * 3
    keys, values = sys.getrefcount(key), sys.getrefcount(value)
    pending = batch.speedups.Pending()
    pending.extend([(1, key, value, 1.0)] * 1000)
    assert sys.getrefcount(key) == keys + 1000
    for _ in range(500):
        pending.popleft()
    pending.extendleft([(1, key, value, 1.0)] * 10)
    pending.take_groups()
    pending.extend([(1, key, value, 1.0)] * 10)
    del pending
    assert (sys.getrefcount(key), sys.getrefcount(value)) == (keys, values)


@needs_c
def test_a_cycle_through_a_pending_event_is_collected():
    import weakref

    class Holder:
        pass

    holder = Holder()
    holder.pending = batch.speedups.Pending()
    holder.pending.append((1, "k", holder, 1.0))  # value -> holder -> pending -> value
    alive = weakref.ref(holder)
    del holder
    gc.collect()
    assert alive() is None

    taken = Holder()  # the same through the flusher's Events
    pending = batch.speedups.Pending()
    pending.append((1, "k", taken, 1.0))
    taken.events = pending.take_groups()[1]
    alive = weakref.ref(taken)
    del taken
    gc.collect()
    assert alive() is None


@needs_c
def test_take_groups_is_the_flush_grouping_and_empties_the_batch():
    pending = batch.speedups.Pending()
    events = [event(n, slot=n % 3) for n in range(100)] + [event(100, slot=1001)]
    pending.extend(events)
    pending.append((int("1001"), "same slot, another int object", 1, 2.0))
    expected = group(list(pending))
    taken = pending.take_groups()
    assert type(taken[1001]) is batch.speedups.Events
    assert {slot: list(events) for slot, events in taken.items()} == expected
    assert list(expected[1001])[-1][1] == "same slot, another int object"
    assert len(pending) == 0 and pending.take_groups() == {}
    assert not any(gc.is_tracked(e) for events in taken.values() for e in events)
    # Each group keeps the span of its times; a reservoir reads it, not them.
    assert [taken[slot].span() for slot in (0, 1001)] == [(1000.0, 1099.0), (2.0, 1100.0)]


@needs_c
def test_pending_keeps_an_events_time_as_a_number_of_seconds():
    pending = batch.speedups.Pending()
    pending.extend([(1, "k", 1, 1000), (1, "k", 1, 1000.25), (1, "k", 1, Decimal("1000.5"))])
    assert [e[3] for e in pending] == [1000.0, 1000.25, 1000.5] and type(pending[0][3]) is float
    for refused in ("noon", None, 10**400):
        with pytest.raises(TypeError, match="time is a number"):
            pending.extend([(1, "k", 1, 5.0), (1, "k", 1, refused)])
    assert len(pending) == 3  # nothing of a refused extend was added

    class Shrinking:  # converting it empties the list it came in
        def __float__(self) -> float:
            events.clear()
            return 7.0

    events = [(1, "k", 1, Shrinking()), (1, "k", 1, 8.0)]
    pending.extend(events)
    assert [e[3] for e in pending][3:] == [7.0, 8.0]


@needs_c
def test_a_fold_keeps_one_copy_of_a_key_that_each_request_makes_anew(samplez_on, config):
    # A view's key is often a str each request builds (a path): the events
    # keep the copy they saw first, and a later request's copy dies with it.
    engine.clear()
    paths = ["/item/1", "/item/1", "/item/2", "/item/1", "/itém/1"]
    made = []
    for path in paths:
        key = "".join(["/", path[1:]])  # a new object each time
        made.append(key)
        token = batch.begin()
        samplez.set(config, key, 1.0)
        batch.end(token)
    keys = [event[1] for event in engine._pending]
    assert keys == paths
    assert keys[0] is keys[1] is made[0]
    refs = sys.getrefcount(made[1])
    assert refs == 2  # the list's and the call's: no event holds it
    # Another key of the same length is another key; after it, the copy
    # kept is the one seen last.
    assert keys[2] is made[2] and keys[3] is made[3] and keys[4] is made[4]
    engine.clear()


@needs_c
def test_with_time_time_as_the_clock_the_c_path_reads_the_time_itself(samplez_on, config, clock):
    import time

    engine.clear()
    engine.clock = time.time
    try:
        before = time.time()
        samplez.set(config, "k", 1)
        token = batch.begin()
        samplez.set(config, "k", 2)
        batch.end(token)
        after = time.time()
    finally:
        engine.clock = clock
    whens = [event[3] for event in engine._pending]
    assert len(whens) == 2 and before <= whens[0] <= whens[1] <= after
    engine.clear()


def test_a_process_batch_of_another_kind_is_filled_by_the_python_twin(samplez_on, config, clock):
    # The C fold writes only into a Pending; given a deque, the engine's
    # Python twin fills it, inside a request and outside one.
    def app(environ, start_response):
        samplez.set(config, "in", 1)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    kind = engine._new_pending
    engine.use_pending(deque)
    try:
        samplez.set(config, "out", 2)
        webtest.TestApp(Middleware(app, flush="background", flush_interval=3600)).get("/")
        assert type(engine._pending) is deque
        assert list(engine._pending) == [(config.slot, "out", 2, clock.now), (config.slot, "in", 1, clock.now)]
    finally:
        engine.use_pending(kind)
    assert type(engine._pending) is kind and len(engine._pending) == 2


def batch_kinds():
    kinds = [pytest.param(dict, id="dict")]
    if batch.speedups is not None:
        kinds.append(pytest.param(batch.speedups.Batch, id="Batch"))
    return kinds


@pytest.mark.parametrize("kind", batch_kinds())
def test_a_request_batch_keeps_one_value_per_slot_and_key_as_a_dict_does(kind):
    # batch.py writes b[slot, key] and reads get, in, [], len and items; a
    # seeded random walk does the same to both. Keys that are equal but
    # not the same object, and hundreds of pairs, take the C batch past
    # its inline entries and its linear scan to its index, which regrows.
    import random

    rng = random.Random(11)
    mine, model = kind(), {}
    for n in range(3000):
        slot = rng.randrange(0, 300 if n > 1500 else 3)
        key = "".join(["path/", str(rng.randrange(0, 60 if n > 1000 else 4))])  # a new str object each time
        value = rng.choice([n, float(n), "item"])
        mine[slot, key] = value
        model[slot, key] = value
        probe = (rng.randrange(0, 300), "".join(["path/", str(rng.randrange(0, 60))]))
        assert mine.get(probe) == model.get(probe) and (probe in mine) == (probe in model)
        assert mine[slot, key] is value and len(mine) == len(model)
        if n % 500 == 0:
            assert list(mine.items()) == list(model.items())
    assert list(mine.items()) == list(model.items()) and len(model) > 1000
    with pytest.raises(KeyError):
        mine[10_000, "absent"]
    mine.clear()
    assert len(mine) == 0 and not mine and mine.get((0, "path/0"), "gone") == "gone"


@pytest.mark.parametrize("kind", batch_kinds())
def test_a_request_batch_keeps_the_side_entry_apart(kind):
    made = kind()
    made[3, "k"] = 1
    side = object.__new__(batch._Side)
    made[batch._SIDE] = side
    assert made.get(batch._SIDE) is side and batch._SIDE in made and len(made) == 2
    assert made.pop(batch._SIDE, None) is side
    assert made.pop(batch._SIDE, None) is None and batch._SIDE not in made
    with pytest.raises(KeyError):
        made.pop(batch._SIDE)
    assert list(made.items()) == [((3, "k"), 1)]


@needs_c
def test_the_c_batch_refuses_what_batch_py_never_writes():
    made = batch.speedups.Batch()
    for bad in ("k", (1,), ("1", "k"), (1, b"k"), (1, "k", 2)):
        with pytest.raises(TypeError, match="keyed by"):
            made[bad] = 1
    made[1, "k"] = 1
    with pytest.raises(TypeError):
        del made[1, "k"]
    with pytest.raises(TypeError):
        made.pop((1, "k"))
    with pytest.raises(TypeError):
        batch.speedups.Batch({})
    assert made.items() == [((1, "k"), 1)] and "1 values" in repr(made)


@needs_c
def test_the_c_batch_gives_its_references_back_when_folded_or_freed(samplez_on, config):
    key, value = "".join(["a", "key"]), 1234.5 * 3
    keys, values = sys.getrefcount(key), sys.getrefcount(value)
    made = batch.speedups.Batch()
    for slot in range(100):  # past the inline entries and the linear scan
        made[slot, key] = value
    assert sys.getrefcount(key) == keys + 100
    made.clear()
    for slot in range(30):
        made[slot, key] = 1.0
        made[slot, key] = value  # replaced: the first value is released
    del made
    assert (sys.getrefcount(key), sys.getrefcount(value)) == (keys, values)

    engine.clear()
    token = batch.begin()
    for n in range(40):
        samplez.set(config, "".join(["k", str(n % 25)]), float(n))
    made = batch.request_var.get()
    assert type(made) is batch.speedups.Batch and len(made) == 25
    batch.end(token)
    assert len(made) == 0  # folded: the events own the references now
    assert [(e[1], e[2]) for e in engine._pending] == [(f"k{n}", float(n + 25 if n < 15 else n)) for n in range(25)]
    engine.clear()


def test_a_request_batch_is_empty_once_folded(samplez_on, config):
    # Both twins: a body closed twice cannot add its request's events twice.
    engine.clear()
    token = batch.begin()
    samplez.set(config, "k", 1)
    made = batch.request_var.get()
    batch.end(token)
    batch.finish(made)
    assert len(made) == 0 and engine.pending == 1
    engine.clear()


def test_a_set_takes_its_own_targets_slot_when_a_dead_one_had_its_address(samplez_on):
    # The C set remembers the slots of targets it saw, by address; configs
    # made and dropped in turn often reuse one, and each must get its own.
    engine.clear()
    token = batch.begin()
    expected, addresses = [], set()
    for n in range(200):
        config = samplez.Config(unique_name("reused"), period=60, samples=10, by_value=True)
        samplez.set(config, "k", float(n))
        expected.append((config.slot, "k", float(n)))
        addresses.add(id(config))
        samplez.unregister(config)
        del config
    batch.end(token)
    assert [event[:3] for event in engine._pending] == expected
    if batch.speedups is not None:  # the C set's memory is by address: it was reused, so the check had teeth
        assert len(addresses) < 200
    engine.clear()


def test_sets_over_more_live_targets_than_the_c_set_remembers_take_their_own_slots(samplez_on):
    # 300 live configs share the C set's 128 places, two to a hash: set in
    # turn, over and over, they evict each other, and each keeps its slot.
    engine.clear()
    configs = [samplez.Config(unique_name("many"), period=60, samples=10, by_value=True) for _ in range(300)]
    expected = []
    for round_number in range(3):
        token = batch.begin()
        for n, config in enumerate(configs[:: 1 if round_number % 2 == 0 else -1]):
            samplez.set(config, "k", float(n))
            expected.append((config.slot, "k", float(n)))
        batch.end(token)
    assert sorted(event[:3] for event in engine._pending) == sorted(expected)
    for config in configs:
        samplez.unregister(config)
    engine.clear()


@needs_c
def test_the_engine_hands_what_the_c_path_reads_to_it(samplez_on, config, clock):
    with pytest.raises(ValueError, match="mirror"):
        batch.speedups.mirror("flush_interval", 1.0)
    engine.clear()
    samplez.configure(max_pending=3)
    try:
        for n in range(5):  # outside a request: trimmed to the new bound at once
            samplez.set(config, "k", n)
        assert [event[2] for event in engine._pending] == [2, 3, 4]
    finally:
        samplez.configure(max_pending=100_000)
        engine.clear()


@needs_c
def test_a_set_made_by_a_finalizer_while_the_flusher_takes_waits_for_the_next_flush(samplez_on, config):
    # take_groups allocates (one Events per metric), which may run a
    # collection and so a finalizer; one that sets must neither reach the
    # records being taken nor be lost.
    class SetsWhenCollected:
        def __del__(self):
            samplez.set(config, "from a finalizer", 7)

    engine.clear()
    for n in range(50):
        samplez.set(config, "k", n)
    garbage = SetsWhenCollected()
    garbage.cycle = garbage
    del garbage
    thresholds = gc.get_threshold()
    gc.set_threshold(1)  # the first allocation of an Events collects
    try:
        groups = engine._pending.take_groups()
    finally:
        gc.set_threshold(*thresholds)
    gc.collect()  # in case the collection came later
    assert [event[2] for event in groups[config.slot]] == list(range(50))
    assert [event[1:3] for event in engine._pending] == [("from a finalizer", 7)]
    engine.clear()

"""``python -m samplez ingest``: events from stdin or a real ZeroMQ PUB
socket applied to counters in a real store; malformed lines counted."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import samplez
from samplez.cli import events as ingest
from tests.conftest import Backend, unique_name
from tests.processes import python_m, stop


def event(kind: str, account: object, **extra: object) -> str:
    return json.dumps({"type": kind, "data": {"account": account, **extra}})


@pytest.fixture
def hits():
    return samplez.RollingCounter(unique_name("hits"), window=3600, buckets=60)


@pytest.mark.parametrize(
    "line, reason",
    [
        pytest.param("not json", "not JSON", id="not-json"),
        pytest.param(b"\xff\xfe{", "not JSON", id="not-utf8"),
        pytest.param("[1, 2]", "not a JSON object", id="array"),
        pytest.param('{"data": {"account": "a"}}', "no type", id="no-type"),
        pytest.param('{"type": 5, "data": {"account": "a"}}', "type is not a name", id="type-not-text"),
        pytest.param('{"type": "hits", "data": {}}', "no data.account", id="no-key"),
        pytest.param('{"type": "hits", "data": "acme"}', "no data.account", id="data-not-object"),
        pytest.param('{"type": "hits", "data": {"account": null}}', "data.account is not text", id="key-null"),
        pytest.param('{"type": "hits", "data": {"account": ""}}', "data.account is not text", id="key-empty"),
        pytest.param('{"type": "nope", "data": {"account": "a"}}', "no counter for this type", id="unknown-type"),
        pytest.param("x" * (ingest.MAX_LINE + 1), f"longer than {ingest.MAX_LINE} bytes", id="too-long"),
    ],
)
def test_a_malformed_line_is_counted_and_skipped(samplez_on, hits, line, reason):
    runner = ingest.Ingest(ingest.EventMapper({"hits": hits}))
    runner.run([line, event("hits", "acme")])
    assert runner.malformed == {reason: 1}
    assert (runner.read, runner.applied) == (2, 1)
    assert samplez.get(hits)["acme"].total == 1
    assert f"1 {reason}, e.g." in runner.report()


def test_events_are_applied_in_batches_and_blank_lines_skipped(samplez_on, hits):
    runner = ingest.Ingest(ingest.EventMapper({"hits": hits}), batch_size=10)
    lines = [event("hits", f"shop{n % 3}") for n in range(25)] + ["", "  \n"]
    flushes = []
    real_flush = runner.flush
    runner.flush = lambda: (flushes.append(runner._unflushed), real_flush())  # type: ignore[method-assign]
    runner.run(lines)
    assert flushes == [10, 10, 5]
    assert runner.read == runner.applied == 25
    result = samplez.get(hits)
    assert [result[f"shop{n}"].total for n in range(3)] == [9, 8, 8]


def test_value_field_and_default_counter(samplez_on, hits):
    mapper = ingest.EventMapper({"hits": hits}, value_field="data.n", default="hits")
    runner = ingest.Ingest(mapper)
    runner.run(
        [
            event("anything", "acme", n=5),
            event("hits", 7, n=2),  # an int key is text too
            event("hits", "acme", n=1.5),  # counters add ints
            event("hits", "acme"),  # no value
        ]
    )
    result = samplez.get(hits)
    assert (result["acme"].total, result["7"].total) == (5, 2)
    assert runner.malformed == {f"bad value for {hits.name}: TypeError": 1, "no data.n": 1}


def test_without_counters_a_counter_is_made_per_type(samplez_on):
    made = []

    def make(name):
        counter = samplez.RollingCounter(name, window=60)
        made.append(counter)
        return counter

    first, second = unique_name("pageview"), unique_name("order")
    mapper = ingest.EventMapper(None, make_counter=make, max_types=2)
    runner = ingest.Ingest(mapper)
    try:
        runner.run(
            [event(first, "a"), event(second, "a"), event(first, "b"), event("third", "a"), event("bad name!", "a")]
        )
        assert [c.name for c in made] == [first, second]
        assert samplez.get(made[0])["a"].total == samplez.get(made[0])["b"].total == 1
        assert runner.malformed == {"more than 2 types": 2}
    finally:
        samplez.unregister(*made)


def test_types_limits_what_is_ingested(samplez_on):
    name = unique_name("pageview")
    mapper = ingest.EventMapper(None, make_counter=lambda n: samplez.RollingCounter(n, window=60), types=[name])
    runner = ingest.Ingest(mapper)
    runner.run([event(name, "a"), event("order", "a")])
    samplez.unregister(mapper.counters[name])
    assert (runner.applied, runner.malformed) == (1, {"type not ingested": 1})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        pytest.param({"counters": {}}, "at least one counter", id="no-counters"),
        pytest.param({"counters": None}, "make_counter", id="no-factory"),
        pytest.param({"counters": {"a": None}, "default": "b"}, "default must name one of the counters", id="default"),
        pytest.param({"counters": {"a": None}, "key_field": "data..x"}, "key_field must be a dotted", id="key-field"),
    ],
)
def test_mapper_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ingest.EventMapper(**kwargs)


def test_stdin_lines_end_at_eof_and_tick_while_idle():
    stop = threading.Event()
    assert list(ingest.stdin_lines(io.BytesIO(b"a\nb\n"), stop)) == [b"a\n", b"b\n"]
    huge = b"x" * (3 * ingest.MAX_LINE) + b"\nafter\n"
    lines = list(ingest.stdin_lines(io.BytesIO(huge), stop))
    assert [len(line) for line in lines] == [ingest.MAX_LINE + 1, 6]  # cut once, the rest skipped
    read_end, write_end = os.pipe()
    with open(read_end, "rb") as reader, open(write_end, "wb") as writer:
        lines = ingest.stdin_lines(reader, stop, idle=0.01, max_events=1)
        assert next(lines) is None  # nothing written yet: an idle tick
        writer.write(b"x\n")
        writer.flush()
        got = [line for _, line in zip(range(1000), lines) if line is not None]
    assert got == [b"x\n"]


def test_zmq_is_optional_with_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "zmq", None)
    with pytest.raises(ImportError, match=r"samplez\[zmq\]"):
        ingest.import_zmq()


# -- the command, in a subprocess, against a real memcached ---------------------


def counters_module(tmp_path: Path, *names: str) -> str:
    """A module the subprocess imports: a Section of the named counters."""
    module = f"ingest_counters_{os.getpid()}_{names[0]}"
    body = ", ".join(f"samplez.RollingCounter({name!r}, window=3600, buckets=60)" for name in names)
    (tmp_path / f"{module}.py").write_text(f"import samplez\nCOUNTERS = samplez.Section('Events', {body})\n")
    return f"{module}:COUNTERS"


def command(tmp_path: Path, memcached, *args: str, **popen) -> subprocess.Popen:
    return python_m(
        "samplez", "ingest", "--memcache", memcached.address, *args, paths=[tmp_path], cwd=tmp_path, **popen
    )


def test_the_command_reads_stdin(tmp_path, memcached):
    pageview, order = unique_name("pageview"), unique_name("order")
    pageviews = samplez.RollingCounter(pageview, window=3600, buckets=60)
    samplez.configure(store=samplez.MemcacheStore(memcached.address))
    lines = [event(pageview, f"shop{n % 4}") for n in range(2000)] + [event(order, "shop1")] * 3
    lines[100:100] = ["garbage", '{"type": "login", "data": {"account": "x"}}', "[]"]
    spec = counters_module(tmp_path, pageview, order)
    proc = command(tmp_path, memcached, "--counters", spec, "--batch-size", "500", stdin=subprocess.PIPE)
    _, stderr = proc.communicate("\n".join(lines) + "\n", timeout=60)
    assert proc.returncode == 0, stderr
    assert "2006 events read, 2003 applied, 3 malformed, 0 dropped, 0 store errors" in stderr
    assert "1 not JSON, e.g. 'garbage'" in stderr
    assert [samplez.get(pageviews)[f"shop{n}"].total for n in range(4)] == [500] * 4


def test_the_command_makes_a_calendar_counter_per_event_type(tmp_path, backend: Backend):
    pageview, order = unique_name("pageview"), unique_name("order")
    server = backend.shared()
    samplez.configure(store=backend.store(server))
    lines = [event(pageview, "acme")] * 30 + [event(pageview, "bootic")] * 12 + [event(order, "acme")] * 2
    proc = python_m(
        "samplez",
        "ingest",
        *backend.option(server),
        "--types",
        f"{pageview},{order}",
        paths=[tmp_path],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
    )
    _, stderr = proc.communicate("\n".join(lines) + "\n", timeout=60)
    assert proc.returncode == 0 and "44 events read, 44 applied, 0 malformed" in stderr, stderr
    pageviews, orders = samplez.CalendarCounter(pageview), samplez.CalendarCounter(order)
    now = samplez.get(pageviews)
    assert (now["acme"].year, now["bootic"].day, now["all"].hour) == (30, 12, 42)
    assert samplez.get(orders)["acme"].month == 2


def test_the_command_explains_a_bad_counters_argument(tmp_path, memcached):
    proc = command(tmp_path, memcached, "--counters", "nowhere:X", stdin=subprocess.DEVNULL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "cannot import 'nowhere'" in stderr


def test_the_command_subscribes_to_a_zeromq_bus(tmp_path, memcached):
    zmq = pytest.importorskip("zmq")
    pageview = unique_name("pageview")
    pageviews = samplez.RollingCounter(pageview, window=3600, buckets=60)
    samplez.configure(store=samplez.MemcacheStore(memcached.address))
    context = zmq.Context()
    bus = context.socket(zmq.PUB)
    bus.setsockopt(zmq.LINGER, 0)
    bus.setsockopt(zmq.SNDHWM, 100_000)  # PUB drops past its high-water mark
    port = bus.bind_to_random_port("tcp://127.0.0.1")
    spec = counters_module(tmp_path, pageview)
    proc = command(
        tmp_path, memcached, "--zmq", f"tcp://127.0.0.1:{port}", "--counters", spec, "--flush-interval", "0.05"
    )
    try:
        # A SUB socket misses what is published before its subscription
        # arrives: publish a probe until one is counted.
        deadline = time.monotonic() + 20
        while samplez.get(pageviews)["probe"].total == 0:
            assert time.monotonic() < deadline and proc.poll() is None, "ingest never saw the bus"
            bus.send_multipart([b"events", event(pageview, "probe").encode()])
            time.sleep(0.05)
        # The bus keeps order: once the last event is counted, the broken
        # one before them was read too.
        bus.send_multipart([b"events", b"{broken"])
        for n in range(1000):
            bus.send_multipart([b"events", event(pageview, f"shop{n % 5}").encode()])
        deadline = time.monotonic() + 20
        while sum(samplez.get(pageviews)[f"shop{n}"].total for n in range(5)) < 1000:
            assert time.monotonic() < deadline, "events lost on the bus"
            time.sleep(0.05)
    finally:
        status, _, stderr = stop(proc)
        bus.close()
        context.term()
    assert status == 0, stderr
    assert "1 malformed" in stderr and "1 not JSON, e.g. '{broken'" in stderr
    assert [samplez.get(pageviews)[f"shop{n}"].total for n in range(5)] == [200] * 5

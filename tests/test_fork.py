"""fork() with samples pending: the parent keeps and flushes its own, the
child starts with an empty batch, a fresh flusher and its own sockets, so
nothing is lost or applied twice (gunicorn forks workers; so does
multiprocessing)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

import samplez
from samplez.engine import engine
from tests.conftest import unique_name

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def run_child(body) -> int:
    """Fork; run ``body()`` in the child (truthy = success); return its exit status."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            code = 0 if body() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.fixture
def config() -> samplez.Config:
    return samplez.Config(unique_name("fork"), period=3600, samples=5000, by_value=True)


@pytest.mark.parametrize("mode", [pytest.param("background", id="flusher-running"), pytest.param("request", id="idle")])
def test_fork_with_pending_samples_neither_loses_nor_duplicates(memcached, clock, config, mode):
    samplez.configure(store=samplez.MemcacheStore(memcached.address), clock=clock, flush=mode, flush_interval=3600)
    samplez.set(config, "warm", 1)
    samplez.flush()  # the parent now holds a pooled connection to memcached
    for i in range(100):
        samplez.set(config, "parent", i)
    parent_thread = engine._thread
    assert engine.pending == 100

    def child() -> bool:
        fresh = engine.pending == 0 and engine._thread is None
        for i in range(40):
            samplez.set(config, "child", i)
        started = mode == "request" or (engine._thread is not None and engine._thread is not parent_thread)
        summary = samplez.flush()
        return fresh and started and summary.applied == 40 and summary.errors == 0

    assert run_child(child) == 0
    assert engine.pending == 100 and engine._thread is parent_thread
    summary = samplez.flush()
    assert summary.applied == 100 and summary.errors == 0

    result = samplez.get(config)
    assert result.total_events == 141
    assert (result.count("warm"), result.count("parent"), result.count("child")) == (1, 100, 40)


def test_fork_while_another_thread_holds_the_batch_lock(memcached, clock, config):
    # A fork taken while a request thread is inside engine.add() must not
    # leave the child's batch lock held forever.
    samplez.configure(store=samplez.MemcacheStore(memcached.address), clock=clock, flush="request")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with engine._lock:
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(10)
    try:

        def child() -> bool:
            samplez.set(config, "child", 1)
            return samplez.flush().applied == 1

        status = run_child(child)
    finally:
        release.set()
        thread.join()
    assert status == 0
    assert samplez.get(config).count("child") == 1


# -- fork() while the flusher's first flush imports or connects --------------------

FIRST_FLUSH_FORKS_SCRIPT = """
import json, os, signal, sys, time
import samplez
from samplez.engine import engine

address, name, forks = sys.argv[1], sys.argv[2], int(sys.argv[3])
USERS = samplez.HyperLogLogCounter(name, step=3600)
samplez.configure(store=samplez.MemcacheStore(address), flush_interval=0.01, clock=lambda: 1_800_000_000.0)


def flush_all():
    for _ in range(50):  # a compare-and-swap lost to another process hands events back
        samplez.flush()
        if not engine.pending:
            return True
    return False


# The first set starts the flusher: its first flush connects and merges
# the first sketch while this thread forks, every few milliseconds.
samplez.set(USERS, "site", "parent")
children = []
for _ in range(forks):
    pid = os.fork()
    if pid == 0:
        samplez.set(USERS, "site", f"child{os.getpid()}")
        sys.exit(0 if flush_all() else 3)  # a normal exit: atexit runs too
    children.append(pid)
    time.sleep(0.003)

codes = {}
deadline = time.monotonic() + 30
while len(codes) < forks and time.monotonic() < deadline:
    for pid in set(children) - set(codes):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            codes[pid] = os.waitstatus_to_exitcode(status)
    time.sleep(0.01)
for pid in set(children) - set(codes):
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    codes[pid] = "hung"
flush_all()
print(json.dumps({"codes": sorted(map(str, codes.values())), "distinct": samplez.get(USERS)["site"].value}))
"""


def run_in_new_interpreter(script: str, *args: str) -> str:
    """Run ``script`` in a fresh interpreter (nothing imported yet) and
    return its output; it and whatever it forked are killed afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its hung children, if any
        except ProcessLookupError:
            pass
        proc.wait()
    assert proc.returncode == 0, out
    return out


def test_fork_during_the_first_flush_leaves_children_that_flush_and_exit(memcached):
    forks = 20
    out = run_in_new_interpreter(FIRST_FLUSH_FORKS_SCRIPT, memcached.address, unique_name("hll"), str(forks))
    report = json.loads(out)
    assert report["codes"] == ["0"] * forks
    assert report["distinct"] == forks + 1  # the parent's item and each child's


FIRST_FLUSH_IMPORTS_SCRIPT = """
import sys
import samplez

address, name = sys.argv[1], sys.argv[2]
metrics = [
    samplez.Config(name + "_r", period=3600, samples=50, by_value=True),
    samplez.RollingCounter(name + "_c", window=60),
    samplez.RollingMax(name + "_m", window=60),
    samplez.SteppedCounter(name + "_s", step=60),
    samplez.UniqueCounter(name + "_u", step=60),
    samplez.HyperLogLogCounter(name + "_h", step=60),
    samplez.BitmapCounter(name + "_b", step=60),
    samplez.CalendarCounter(name + "_y"),
]
samplez.configure(store=samplez.MemcacheStore(address), flush_interval=3600)
for metric in metrics:
    samplez.set(metric, "k", 1)
before = set(sys.modules)
samplez.flush()  # the first: it connects, then writes every kind
print(" ".join(sorted(set(sys.modules) - before)))
"""


def test_the_first_flush_imports_no_module(memcached):
    # An import on the flusher thread holds that module's import lock: a
    # fork() then leaves a child whose own import of it waits for ever.
    out = run_in_new_interpreter(FIRST_FLUSH_IMPORTS_SCRIPT, memcached.address, unique_name("imports"))
    assert out.split() == []

"""Worker heartbeats: every process that writes says, at its flushes, that
it is alive and how it is doing, so the dashboard can list the site's live
workers and show the one that is stuck.

A heartbeat is ``<prefix>:_workers:<id>``, a JSON object (pid, host, start
time, RSS, CPU seconds, requests served, pending, dropped, last flush,
store errors) written with a TTL of :data:`TTL` seconds; the flusher sends
one at most every :data:`EVERY` seconds, also when it has nothing else to
flush. ``<prefix>:_workers`` lists the workers' ids with the time each
heartbeat expires; every heartbeat merges itself into it with
``gets``/``cas`` and drops the expired ones, so a stopped worker is gone
from the list within two TTLs and the list never outgrows the live
workers. A lost ``cas`` only delays the listing to the next heartbeat.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from .flush import Context, Outcome, Plan
from .store.base import add, cas, get, gets, set_
from .store.keys import FORMAT_VERSION, digest

__all__ = ["EVERY", "TTL", "Heartbeat", "read_workers"]

#: Seconds between heartbeats, and how long one lives: longer than the
#: dashboard's "no flush for 3 heartbeats" flag, so that a worker whose
#: flusher stopped is shown stuck for most of a minute before it is gone.
EVERY = 5.0
TTL = 60
#: A listing never names more workers than this (a runaway spawner).
MAX_WORKERS = 1000
_VERSION = bytes([FORMAT_VERSION])


def _encode(data: Any) -> bytes:
    return _VERSION + json.dumps(data, separators=(",", ":")).encode()


def _decode(raw: object) -> Any:
    if not isinstance(raw, bytes) or raw[:1] != _VERSION:
        return None
    try:
        return json.loads(raw[1:])
    except ValueError:
        return None


def _rss() -> int | None:
    """Resident memory in bytes, where the system tells."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class Heartbeat:
    """This process's heartbeat: made anew in a fork's child (a new pid, a
    new worker)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.started = time.time()
        self.id = digest(f"{self.host}/{self.pid}/{self.started}")
        self.last = -float("inf")

    def due(self, now: float) -> bool:
        return now - self.last >= EVERY

    def plan(self, ctx: Context, stats: dict[str, Any]) -> Plan:
        """Write the heartbeat and list it (two rounds)."""
        self.last = time.monotonic()
        status = {
            "id": self.id,
            "pid": self.pid,
            "host": self.host,
            "started": self.started,
            "rss": _rss(),
            "cpu": time.process_time(),
            "seen": ctx.now,
            **stats,
        }
        index_key = ctx.space.key("_workers")
        results = yield [gets(index_key), set_(ctx.space.key("_workers", self.id), _encode(status), TTL)]
        listed = results[0]
        workers = _decode(listed[0]) if isinstance(listed, tuple) else None
        live = {
            worker: until
            for worker, until in (workers.items() if isinstance(workers, dict) else ())
            if isinstance(until, (int, float)) and until > ctx.now
        }
        live[self.id] = ctx.now + TTL
        if len(live) > MAX_WORKERS:
            live = dict(sorted(live.items(), key=lambda item: -item[1])[:MAX_WORKERS])
        value = _encode(live)
        if isinstance(listed, tuple):
            yield [cas(index_key, value, listed[1], TTL)]
        elif listed is None:
            yield [add(index_key, value, TTL)]
        return Outcome()


def read_workers(ctx: Context) -> list[dict[str, Any]]:
    """The live workers' last heartbeats, oldest start first."""
    index_key = ctx.space.key("_workers")
    (listed,), _ = ctx.store.execute([get(index_key)])
    workers = _decode(listed)
    if not isinstance(workers, dict):
        return []
    ids = [worker for worker, until in workers.items() if isinstance(until, (int, float)) and until > ctx.now]
    results, _ = ctx.store.execute([get(ctx.space.key("_workers", worker)) for worker in ids if worker.isalnum()])
    beats = [beat for beat in map(_decode, results) if isinstance(beat, dict)]
    return sorted(beats, key=lambda beat: (beat.get("host", ""), beat.get("started") or 0))

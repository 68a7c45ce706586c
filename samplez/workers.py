"""Worker heartbeats: every process that writes says, at its flushes, that
it is alive and how it is doing, so the dashboard can list the site's live
workers and show the one that is stuck.

A heartbeat is ``<prefix>:_workers:<id>``, a JSON object (pid, host, start
time, RSS, CPU seconds, requests served, pending, dropped, last flush,
store errors) written with a TTL of :data:`TTL` seconds; the flusher sends
one at most every :data:`EVERY` seconds, also when it has nothing else to
flush. ``<prefix>:_workers`` lists the workers (see :mod:`samplez.listings`):
a stopped worker is gone from it within two TTLs, and a heartbeat that
could not list itself beats again at the next flush.
"""

from __future__ import annotations

import math
import os
import socket
import time
from typing import Any

from . import listings
from .flush import Context, Outcome, Plan
from .store.keys import digest

__all__ = ["EVERY", "TTL", "Heartbeat", "read_workers"]

#: Seconds between heartbeats, and how long one lives: longer than the
#: dashboard's "no flush for 3 heartbeats" flag, so that a worker whose
#: flusher stopped is shown stuck for most of a minute before it is gone.
EVERY = 5.0
TTL = 60
#: A listing never names more workers than this (a runaway spawner).
MAX_WORKERS = 1000


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
        merged = yield from listings.publish(ctx, "_workers", {self.id: (listings.encode(status), TTL)}, MAX_WORKERS)
        if not merged:
            self.last = -math.inf  # beat again at the next flush
        return Outcome()


def read_workers(ctx: Context) -> list[dict[str, Any]]:
    """The live workers' last heartbeats, oldest start first."""
    beats = [beat for _, beat in listings.read(ctx, "_workers") if isinstance(beat, dict)]
    return sorted(beats, key=lambda beat: (str(beat.get("host", "")), _number(beat.get("started"))))


def _number(value: object) -> float:
    return value if isinstance(value, (int, float)) else 0.0

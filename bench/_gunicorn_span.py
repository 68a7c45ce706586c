"""A gunicorn config (``-c``) that times each request's span inside a
worker: from ``pre_request`` (the request parsed) to ``post_request`` (its
body written and closed), in CPU time of the request thread. Every 100
requests a worker writes its running totals, ``<ns> <requests>``, to
``$BENCH_SPAN_DIR/<pid>``, which ``bench_stages.py`` reads between rounds.
The span leaves out the accept, the parse and the socket's close, where
the per-request work does not differ between modes, so a stage's price
stands out of less noise."""

from __future__ import annotations

import os
import time
from typing import Any

_totals = {"ns": 0, "requests": 0, "started": 0}
_fd: list[int] = []


def pre_request(worker: Any, req: Any) -> None:
    _totals["started"] = time.thread_time_ns()


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    _totals["ns"] += time.thread_time_ns() - _totals["started"]
    _totals["requests"] += 1
    if _totals["requests"] % 100 == 0:
        if not _fd:
            path = os.path.join(os.environ["BENCH_SPAN_DIR"], str(os.getpid()))
            _fd.append(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
        os.pwrite(_fd[0], f"{_totals['ns']} {_totals['requests']}".ljust(40).encode(), 0)

"""What samplez adds to a request inside a gunicorn worker, beside what
prometheus_flask_exporter adds, counted rather than timed: instructions,
L1 instruction-cache misses and L1 data-cache misses per request, under
valgrind's cachegrind.

    .venv/bin/python bench/bench_instructions.py [--app flask|raw|both] [--requests 200 600]

Timing a worker (``bench_stages.py``, ``bench_throughput.py``) cannot
resolve a change of 1 µs on a shared machine; these counts repeat from run
to run, so a change to the request path shows in them at once. A sync
worker (``--max-requests``) serves the app under cachegrind, once for each
of two numbers of requests, sent one after the other; the difference
between the two runs, divided by the difference in requests, is the cost
of one request with start-up and exit left out. The cache model is one
core of the machine these figures come from: 32 KB L1i, 48 KB L1d, 1 MB L2.

Modes (``_wsgi_app``), for the Flask hello-world (``--app flask``, the
default): the bare app; samplez's whole request path, the middleware and a
view making 3 ``set`` calls, whose events the flusher discards
(``stage_pending``: what a request costs its own thread, without a flush
whose timing under valgrind would not be the worker's;
``bench_request_path.py`` times the flush's share); and ``peer``, the bare
app with prometheus_flask_exporter's ``PrometheusMetrics(app)``. The ratio
of the instructions the two add is printed. ``--app raw`` counts the raw
WSGI hello-world bare, with the middleware alone (``stage_middleware``)
and with the request path (``stage_pending``). Writes
``bench/results/instructions.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, Memcached, write_results
from bench_throughput import GUNICORN, family

from samplez.testing import free_port

APPS = {
    "flask": {
        "bare": "Flask, bare",
        "stage_pending": "+ samplez, 3 sets (no flush)",
        "peer": "+ PrometheusMetrics(app)",
    },
    "raw": {
        "bare": "raw WSGI, bare",
        "stage_middleware": "+ the middleware alone (no set)",
        "stage_pending": "+ samplez, 3 sets (no flush)",
    },
}
EVENTS = ("Ir", "I1mr", "D1mr", "D1mw")
CACHES = ["--I1=32768,8,64", "--D1=49152,12,64", "--LL=1048576,16,64"]
REQUEST = b"GET /item/1 HTTP/1.1\r\nHost: bench\r\n\r\n"


def worker_totals(app: str, mode: str, requests: int, memcache: str, out: Path) -> dict[str, int]:
    """Cachegrind's totals for a worker that served ``requests`` requests."""
    port = free_port()
    env = dict(os.environ, BENCH_MODE=mode, BENCH_APP=app, PYTHONPATH=str(ROOT), PYTHONHASHSEED="0")
    env["SAMPLEZ_MEMCACHE"] = memcache
    name = f"{app}-{mode}-{requests}"
    args = ["valgrind", "--tool=cachegrind", "--trace-children=yes", "--cache-sim=yes", *CACHES]
    args += [f"--cachegrind-out-file={out}/{name}.%p", sys.executable, GUNICORN, "-w", "1"]
    args += ["-b", f"127.0.0.1:{port}", "--max-requests", str(requests), "--timeout", "600"]
    args += ["--chdir", str(ROOT / "bench"), "--log-level", "warning", "_wsgi_app:app"]
    server = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while True:  # the worker is up once it answers
            try:
                ask(port)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"gunicorn under valgrind ({mode}) did not start") from None
                time.sleep(0.5)
        worker = family(server.pid)[1]
        for _ in range(requests):  # the worker exits after its last one
            ask(port)
            if not Path(f"/proc/{worker}").exists():
                break
        while Path(f"/proc/{worker}/stat").exists() and Path(f"/proc/{worker}/stat").read_text().split()[2] != "Z":
            time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=120)
    path = out / f"{name}.{worker}"
    for line in path.read_text().splitlines():
        if line.startswith("events:"):
            names = line.split()[1:]
        elif line.startswith("summary:"):
            return dict(zip(names, map(int, line.split()[1:])))
    raise RuntimeError(f"no summary in {path}")


def ask(port: int) -> None:
    """One request on a new connection, read to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(REQUEST)
        while conn.recv(65536):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", choices=("flask", "raw", "both"), default="flask")
    parser.add_argument("--requests", type=int, nargs=2, default=(200, 600), metavar=("FEW", "MANY"))
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("bench_instructions.py needs valgrind (apt-get install -y valgrind)")
    few, many = args.requests
    apps = list(APPS) if args.app == "both" else [args.app]
    figures: dict[str, dict[str, Any]] = {}
    with Memcached() as server, tempfile.TemporaryDirectory() as tmp:
        for app in apps:
            figures[app] = {}
            for mode in APPS[app]:
                low = worker_totals(app, mode, few, server.address, Path(tmp))
                high = worker_totals(app, mode, many, server.address, Path(tmp))
                per = {event: (high[event] - low[event]) / (many - few) for event in EVENTS}
                figures[app][mode] = {
                    "instructions": per["Ir"],
                    "l1i_misses": per["I1mr"],
                    "l1d_misses": per["D1mr"] + per["D1mw"],
                }
    print(f"{'per request':40s} {'instructions':>12s} {'L1i misses':>11s} {'L1d misses':>11s}")
    for app in apps:
        rows = figures[app]
        bare = rows["bare"]
        for mode, label in APPS[app].items():
            row = rows[mode]
            print(f"{label:40s} {row['instructions']:12,.0f} {row['l1i_misses']:11,.0f} {row['l1d_misses']:11,.0f}")
            if mode != "bare":
                row.update({f"{name}_added": row[name] - bare[name] for name in list(row)})
                print(
                    f"{'  added to the bare app':40s} {row['instructions_added']:+12,.0f}"
                    f" {row['l1i_misses_added']:+11,.0f} {row['l1d_misses_added']:+11,.0f}"
                )
        if "peer" in rows:
            ratio = rows["stage_pending"]["instructions_added"] / rows["peer"]["instructions_added"]
            rows["samplez_x_peer_instructions_added"] = ratio
            print(f"{'samplez added / peer added':40s} {ratio:12.3f}x instructions")
    command = f"python bench/bench_instructions.py --app {args.app} --requests {few} {many}"
    write_results("instructions", figures, command)


if __name__ == "__main__":
    main()

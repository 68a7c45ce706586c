"""What samplez adds to a request, all of it, beside what
prometheus_flask_exporter adds to the same app in the same run, counted
in instructions under valgrind rather than timed.

    .venv/bin/python bench/bench_instructions.py [--figure inprocess|worker|both] [--requests 200 1200]

Instruction counts repeat from run to run where timings on a shared
machine do not, so a change of a few hundred instructions shows at once.
Each count is taken twice, for a few and for many requests in a fresh
process; the difference divided by the difference in requests is the cost
of one request with start-up and exit left out.

``inprocess`` (the default, SPEC §4's figure): a process under callgrind
calls the Flask hello-world of ``_wsgi_app`` N times as a server does
(iterating and closing each body), in one of three modes: ``bare``;
``samplez``, ``app.wsgi_app = samplez.Middleware(app.wsgi_app)`` with
request metrics on, MemcacheStore on a memcached started here, and a view
making 3 ``samplez.set`` calls to three Configs; ``peer``,
``PrometheusMetrics(app, registry=CollectorRegistry())``. The samplez
process then calls ``samplez.flush()`` once, so the flush's cost per event
is counted (the flusher thread does not flush during the run:
``flush_interval=3600``, ``max_pending=10**6``). samplez's clock stands
still for the run and the coins are seeded, so that the counts repeat: no
period boundary falls inside a run. Before the run every
reservoir's current-period counter is set to 1,000,000 events
(``_wsgi_app.fill_reservoirs``): the reservoirs are in their steady
state, full, as for most of a busy period, so a flush replaces few slots.
A flush every 0.5 s in a busy worker spreads its fixed cost (one round
trip per store operation kind, the counters' keys) over thousands of
events; counted here per event, that fixed cost is left out.

``worker`` (secondary): a gunicorn sync worker under cachegrind serving
the same three apps over loopback (``--max-requests``), with instructions,
L1i and L1d misses per request; the flusher does not flush during the run
(``BENCH_FLUSH_INTERVAL=3600``), so this counts the request path inside a
real server, not the flush. The cache model is one core of the machine
these figures come from: 32 KB L1i, 48 KB L1d, 1 MB L2.

``--breakdown`` also counts samplez built up stage by stage: the
middleware alone (``request_metrics=False``, no ``set``), with request
metrics, with the 3 sets but no flush (the events kept, then thrown
away), and
whole: where its instructions go.

Target (SPEC §4): samplez added <= 0.5x the peer added (aim: 0.33x).
Writes ``bench/results/instructions.json``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, Memcached, call_wsgi, verdict, write_results

MODES = {"bare": "Flask hello-world, bare", "samplez": "+ samplez, 3 sets, flush", "peer": "+ PrometheusMetrics(app)"}
#: ``--breakdown``: samplez built up stage by stage, each with its flush.
STAGES = {
    "middleware": "+ the middleware alone",
    "metrics": "+ request metrics",
    "unflushed": "+ 3 sets, not flushed",
}
WORKER_MODES = {"bare": "bare", "samplez": "wrapped", "peer": "peer"}
EVENTS = ("Ir", "I1mr", "D1mr", "D1mw")
CACHES = ["--I1=32768,8,64", "--D1=49152,12,64", "--LL=1048576,16,64"]
REQUEST = b"GET /item/1 HTTP/1.1\r\nHost: bench\r\n\r\n"
PATHS = 64


def serve_in_process(mode: str, requests: int, memcache: str) -> None:
    """The process callgrind counts: ``requests`` requests to the Flask app
    in ``mode``, then, for samplez, one flush."""
    from _wsgi_app import fill_reservoirs, flask_app

    import samplez

    # One instant for the whole run, and seeded coins: every event falls in
    # the period whose counter was set, with no boundary crossed mid-run
    # (the 60 s periods would be, at random, under valgrind), and the slots
    # a flush replaces are the same from run to run.
    now = time.time()
    random.seed(0)
    app = flask_app(sample=mode in ("samplez", "unflushed"), peer=mode == "peer")
    if mode not in ("bare", "peer"):
        app.wsgi_app = samplez.Middleware(  # type: ignore[method-assign]
            app.wsgi_app,
            store=samplez.MemcacheStore(memcache),
            request_metrics=mode != "middleware",
            clock=itertools.repeat(now).__next__,  # a C call, as time.time is
            flush_interval=3600,
            max_pending=10**6,
            max_pending_bytes=2**30,
        )
        fill_reservoirs(memcache, now=now)
    call_wsgi(app, requests, PATHS)
    if mode in ("samplez", "metrics", "middleware"):
        summary = samplez.flush()
        if summary.errors or (mode != "middleware" and not summary.applied):
            raise RuntimeError(f"the flush failed: {summary}")
    elif mode == "unflushed":  # thrown away, or the flush at exit would apply them
        from samplez.engine import engine

        engine.clear()


def summary_of(path: Path) -> dict[str, int]:
    """The totals of a callgrind or cachegrind output file."""
    names: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("events:"):
            names = line.split()[1:]
        elif line.startswith(("summary:", "totals:")):
            return dict(zip(names, map(int, line.split()[1:])))
    raise RuntimeError(f"no summary in {path}")


def in_process_totals(mode: str, requests: int, memcache: str, out: Path) -> dict[str, int]:
    path = out / f"callgrind-{mode}-{requests}"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'bench'}:{ROOT}", PYTHONHASHSEED="0")
    args = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={path}", sys.executable, __file__]
    args += ["--child", mode, str(requests), memcache]
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return summary_of(path)


def worker_totals(mode: str, requests: int, memcache: str, out: Path) -> dict[str, int]:
    """Cachegrind's totals for a gunicorn worker that served ``requests``."""
    from bench_throughput import GUNICORN, family

    from samplez.testing import free_port

    port = free_port()
    env = dict(os.environ, BENCH_MODE=WORKER_MODES[mode], BENCH_APP="flask", PYTHONPATH=str(ROOT))
    env.update(PYTHONHASHSEED="0", SAMPLEZ_MEMCACHE=memcache, BENCH_FLUSH_INTERVAL="3600", BENCH_FILL_RESERVOIRS="1")
    name = f"worker-{mode}-{requests}"
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
    return summary_of(out / f"{name}.{worker}")


def ask(port: int) -> None:
    """One request on a new connection, read to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(REQUEST)
        while conn.recv(65536):
            pass


def count(figure: str, few: int, many: int, memcache: str, out: Path, breakdown: bool) -> dict[str, Any]:
    """Per request: each mode's counts, what samplez and the peer add, and
    the ratio of the instructions the two add."""
    totals = in_process_totals if figure == "inprocess" else worker_totals
    events = ("Ir",) if figure == "inprocess" else EVENTS
    rows: dict[str, Any] = {}
    for mode in [*MODES, *(STAGES if breakdown and figure == "inprocess" else ())]:
        low, high = totals(mode, few, memcache, out), totals(mode, many, memcache, out)
        per = {event: (high[event] - low[event]) / (many - few) for event in events}
        rows[mode] = {"instructions": per["Ir"]}
        if figure == "worker":
            rows[mode].update(l1i_misses=per["I1mr"], l1d_misses=per["D1mr"] + per["D1mw"])
    for mode in [m for m in rows if m != "bare"]:
        rows[mode].update({f"{name}_added": rows[mode][name] - rows["bare"][name] for name in list(rows[mode])})
    rows["samplez_x_peer_instructions_added"] = (
        rows["samplez"]["instructions_added"] / rows["peer"]["instructions_added"]
    )
    return rows


def show(figure: str, rows: dict[str, Any]) -> None:
    title = "in-process, callgrind" if figure == "inprocess" else "gunicorn sync worker, cachegrind (no flush)"
    cache = figure == "worker"
    print(f"-- {title}, per request")
    print(f"{'':34s} {'instructions':>12s}" + (f" {'L1i misses':>11s} {'L1d misses':>11s}" if cache else ""))
    for mode, label in MODES.items():
        row = rows[mode]
        extra = f" {row['l1i_misses']:11,.0f} {row['l1d_misses']:11,.0f}" if cache else ""
        print(f"{label:34s} {row['instructions']:12,.0f}{extra}")
        if mode != "bare":
            extra = f" {row['l1i_misses_added']:+11,.0f} {row['l1d_misses_added']:+11,.0f}" if cache else ""
            print(f"{'  added to the bare app':34s} {row['instructions_added']:+12,.0f}{extra}")
    ratio = rows["samplez_x_peer_instructions_added"]
    target = f"  [{verdict(ratio, 0.5)} <= 0.5x; aim 0.33x: {verdict(ratio, 0.33)}]" if figure == "inprocess" else ""
    print(f"{'samplez added / peer added':34s} {ratio:12.3f}x{target}")
    if "unflushed" in rows:
        print("-- where samplez's instructions go, per request")
        before = rows["bare"]["instructions"]
        for mode, label in (*STAGES.items(), ("samplez", "+ the flush, per request")):
            print(f"{label:34s} {rows[mode]['instructions'] - before:+12,.0f}")
            before = rows[mode]["instructions"]


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        mode, requests, memcache = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        serve_in_process(mode, requests, memcache)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figure", choices=("inprocess", "worker", "both"), default="inprocess")
    parser.add_argument("--requests", type=int, nargs=2, default=(200, 1200), metavar=("FEW", "MANY"))
    parser.add_argument("--breakdown", action="store_true", help="also count samplez stage by stage (in-process)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("bench_instructions.py needs valgrind (apt-get install -y valgrind)")
    few, many = args.requests
    figures: dict[str, Any] = {}
    with Memcached() as server, tempfile.TemporaryDirectory() as tmp:
        for figure in ("inprocess", "worker") if args.figure == "both" else (args.figure,):
            figures[figure] = count(figure, few, many, server.address, Path(tmp), args.breakdown)
            show(figure, figures[figure])
    figures["requests"] = [few, many]
    command = f"python bench/bench_instructions.py --figure {args.figure} --requests {few} {many}"
    command += " --breakdown" if args.breakdown else ""
    write_results("instructions", figures, command)


if __name__ == "__main__":
    main()

"""What samplez adds to a Starlette hello-world request, beside what
starlette_exporter adds to the same app, in the same run (SPEC §4).

    .venv/bin/python bench/bench_asgi.py [--rounds 15] [--requests 5000]
        [--wrk-rounds 5] [--seconds 4]

In-process: each round calls the bare app, samplez's build (the ASGI
middleware with its request metrics and a memcached store, 3 ``set``
calls in the handler) and the peer's build (starlette_exporter's
``PrometheusMiddleware``, its defaults), ``--requests`` times each, in one
event loop through a minimal driver, in rotating order. Each build's cost
is ``time.process_time`` over the whole run, every thread counted (the
flusher's share included, the run ends with a flush); what a middleware
adds is its build's cost less the bare app's, and the figure is the median
of the rounds' ratios samplez-added / peer-added, with a 95 % bootstrap
interval. Target: <= 0.5.

Under uvicorn (one worker, memcached on loopback, wrk with 32
connections): each round starts the three builds anew, in rotating
order, and the figures are the medians of the rounds' requests/s ratios to
the bare app, with their intervals.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from typing import Any

from _asgi_app import MODES, build
from _common import ROOT, Memcached, median, median_interval, verdict, write_results
from bench_throughput import run_wrk

import samplez
from samplez.engine import engine
from samplez.testing import free_port


async def drive(app: Any, requests: int) -> None:
    """Call ``app`` for ``requests`` GETs, as a server would, one at a time."""
    request = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: dict[str, Any]) -> None:
        return None

    for i in range(requests):
        path = f"/item/{i & 63}"
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"bench")],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 80),
        }
        await app(scope, receive, send)


def cpu_of(app: Any, requests: int) -> float:
    """CPU seconds, all threads, to serve ``requests`` and flush them."""
    samplez.flush()
    start = time.process_time()
    asyncio.run(drive(app, requests))
    samplez.flush()
    return time.process_time() - start


def in_process(memcache: str, rounds: int, requests: int) -> dict[str, Any]:
    apps = {mode: build(mode, memcache) for mode in MODES}
    for app in apps.values():
        cpu_of(app, 1000)  # warm up: imports, connections, the flusher thread
    us: dict[str, list[float]] = {mode: [] for mode in MODES}
    ratios = []
    for r in range(rounds):
        order = MODES[r % 3 :] + MODES[: r % 3]
        cost = {mode: cpu_of(apps[mode], requests) / requests * 1e6 for mode in order}
        for mode in MODES:
            us[mode].append(cost[mode])
        ratios.append((cost["samplez"] - cost["bare"]) / (cost["peer"] - cost["bare"]))
    low, high = median_interval(ratios)
    return {
        "requests_per_round": requests,
        "rounds": rounds,
        "cpu_us_per_request": {mode: median(values) for mode, values in us.items()},
        "samplez_added_us": median([s - b for s, b in zip(us["samplez"], us["bare"])]),
        "peer_added_us": median([p - b for p, b in zip(us["peer"], us["bare"])]),
        "ratio_samplez_to_peer": median(ratios),
        "ratio_interval_95": [low, high],
        "round_ratios": ratios,
        "flusher": {k: engine.health[k] for k in ("flushes", "applied", "dropped", "errors")},
    }


def serve(mode: str, memcache: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(os.environ, BENCH_MODE=mode, SAMPLEZ_MEMCACHE=memcache, PYTHONPATH=f"{ROOT / 'bench'}:{ROOT}")
    argv = [sys.executable, "-m", "uvicorn", "_asgi_app:app", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen([*argv, "--no-access-log"], env=env, cwd=ROOT / "bench")
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"uvicorn ({mode}) did not start") from None
            time.sleep(0.05)


def throughput(memcache: str, rounds: int, seconds: int) -> dict[str, Any]:
    rps: dict[str, list[float]] = {mode: [] for mode in MODES}
    for r in range(rounds):
        for mode in MODES[r % 3 :] + MODES[: r % 3]:
            proc, port = serve(mode, memcache)
            try:
                run_wrk(port, 1, 32)  # warm up
                rps[mode].append(run_wrk(port, seconds, 32)["rps"])
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    figures: dict[str, Any] = {"rounds": rounds, "seconds": seconds, "connections": 32, "workers": 1}
    figures["rps"] = {mode: median(values) for mode, values in rps.items()}
    for mode in ("samplez", "peer"):
        ratios = [m / b for m, b in zip(rps[mode], rps["bare"])]
        figures[f"{mode}_x_bare"] = {"median": median(ratios), "interval_95": list(median_interval(ratios))}
    ahead = [s / p for s, p in zip(rps["samplez"], rps["peer"])]
    figures["samplez_x_peer"] = {"median": median(ahead), "interval_95": list(median_interval(ahead))}
    figures["round_rps"] = rps
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--wrk-rounds", type=int, default=5, help="0 to skip the uvicorn figures")
    parser.add_argument("--seconds", type=int, default=4)
    args = parser.parse_args()
    with Memcached() as server:
        figures: dict[str, Any] = {"in_process": in_process(server.address, args.rounds, args.requests)}
        engine.stop()
        if args.wrk_rounds:
            figures["uvicorn_wrk"] = throughput(server.address, args.wrk_rounds, args.seconds)
    p = figures["in_process"]
    cpu = p["cpu_us_per_request"]
    print(f"CPU per request: bare {cpu['bare']:.1f} µs, samplez {cpu['samplez']:.1f} µs, peer {cpu['peer']:.1f} µs")
    print(f"added: samplez {p['samplez_added_us']:.1f} µs, starlette_exporter {p['peer_added_us']:.1f} µs")
    ratio, (low, high) = p["ratio_samplez_to_peer"], p["ratio_interval_95"]
    print(f"samplez / starlette_exporter  {ratio:.3f}  [95 % {low:.3f}-{high:.3f}]  [{verdict(ratio, 0.5)} <= 0.5]")
    if "uvicorn_wrk" in figures:
        w = figures["uvicorn_wrk"]
        print(f"uvicorn + wrk, {w['rounds']} rounds of {w['seconds']} s: req/s {w['rps']}")
        for name in ("samplez_x_bare", "peer_x_bare", "samplez_x_peer"):
            lo, hi = w[name]["interval_95"]
            print(f"  {name:15} {w[name]['median']:.3f}  [95 % {lo:.3f}-{hi:.3f}]")
    write_results("asgi", figures, "python bench/bench_asgi.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()

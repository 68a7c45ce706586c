"""Memory: process RSS over a sustained load through the middleware, and
the pending batch bounded by ``max_pending`` when the store hangs.

    .venv/bin/python bench/bench_memory.py [--minutes 2] [--rps 20000]
    .venv/bin/python bench/bench_memory.py --minutes 10      # the full soak

Soak: the in-process WSGI app with 3 ``set`` calls per request over 50,000
distinct keys, wrapped in the middleware, background flusher on a real
memcached, at ``--rps`` requests per second (several times a real web
worker's rate). RSS is sampled every few seconds; "flat" means the last
quarter's median RSS is within a few MB of the second quarter's (the
first quarter is warm-up: reservoirs fill, connections open).

Dead store: the store is a server that accepts connections and never
answers; requests keep coming; the pending batch must stay at or below
``max_pending`` (the oldest events dropped and counted), and requests must
not get slower once the batch is full.
Writes ``bench/results/memory.json`` and ``memory.png``.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time
from typing import Any

from _common import RESULTS, Memcached, save_chart, write_results

import samplez
from samplez.engine import engine

KEYS = 50_000
SAMPLE_EVERY = 2.0


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def many_keys_app(configs: tuple[samplez.Config, ...]) -> Any:
    latency, popular, status = configs

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        samplez.set(latency, environ["PATH_INFO"], 2.5)
        samplez.set(popular, environ["PATH_INFO"])
        samplez.set(status, "200")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


def environs(count: int) -> list[dict[str, Any]]:
    return [{"REQUEST_METHOD": "GET", "PATH_INFO": f"/content/{i}"} for i in range(count)]


def drive(app: Any, requests: list[dict[str, Any]]) -> None:
    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        return None

    for environ in requests:
        body = app(environ, start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()


def soak(minutes: float, rps: int, address: str, configs: tuple[samplez.Config, ...]) -> dict[str, Any]:
    app = samplez.Middleware(
        many_keys_app(configs), store=samplez.MemcacheStore(address), flush="background", flush_interval=0.5
    )
    pool = environs(KEYS)
    step = 1_000
    curve: list[dict[str, float]] = []
    start = time.monotonic()
    deadline = start + minutes * 60
    sent = 0
    next_sample = start
    while time.monotonic() < deadline:
        chunk = [pool[(sent + i) * 7919 % KEYS] for i in range(step)]
        drive(app, chunk)
        sent += step
        ahead = start + sent / rps - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        now = time.monotonic()
        if now >= next_sample:
            health = engine.health
            curve.append(
                {
                    "t": round(now - start, 2),
                    "rss_mb": round(rss_mb(), 2),
                    "pending": engine.pending,
                    "requests": sent,
                    "applied": health["applied"],
                    "dropped": health["dropped"],
                }
            )
            next_sample = now + SAMPLE_EVERY
    samplez.flush()
    quarter = max(1, len(curve) // 4)
    warm = statistics.median(p["rss_mb"] for p in curve[quarter : 2 * quarter])
    last = statistics.median(p["rss_mb"] for p in curve[-quarter:])
    health = dict(engine.health)
    engine.stop()
    return {
        "minutes": minutes,
        "target_rps": rps,
        "achieved_rps": sent / (time.monotonic() - start),
        "requests": sent,
        "events_applied": health["applied"],
        "events_dropped": health["dropped"],
        "store_errors": health["errors"],
        "rss_second_quarter_mb": warm,
        "rss_last_quarter_mb": last,
        "rss_growth_mb": last - warm,
        "rss_max_mb": max(p["rss_mb"] for p in curve),
        "curve": curve,
    }


def dead_store(configs: tuple[samplez.Config, ...], max_pending: int) -> dict[str, Any]:
    # A listening socket that is never accepted: connections succeed (the
    # kernel's backlog) and no answer ever comes.
    silent = socket.create_server(("127.0.0.1", 0), backlog=64)
    port = silent.getsockname()[1]
    try:
        store = samplez.MemcacheStore(f"127.0.0.1:{port}", connect_timeout=5, timeout=5)
        app = samplez.Middleware(
            many_keys_app(configs), store=store, flush="background", flush_interval=0.1, max_pending=max_pending
        )
        pool = environs(KEYS)
        requests_before_full = max_pending // 3 // 2
        rss_before = rss_mb()
        empty_us = serve_timed(app, pool[:requests_before_full])
        peak = engine.pending
        curve = []
        for round_number in range(10):
            drive(app, pool[: max_pending // 3])
            peak = max(peak, engine.pending)
            curve.append({"round": round_number, "pending": engine.pending, "rss_mb": round(rss_mb(), 2)})
        full_us = serve_timed(app, pool[:requests_before_full])
        peak = max(peak, engine.pending)
        dropped_so_far = engine._dropped + engine.health["dropped"]
        rss_after = rss_mb()
    finally:
        engine.stop()
        engine.clear()
        silent.close()
    return {
        "max_pending": max_pending,
        "peak_pending": peak,
        "events_set": 3 * (2 * requests_before_full + 10 * (max_pending // 3)),
        "events_dropped": dropped_so_far,
        "request_us_batch_not_full": empty_us,
        "request_us_batch_full": full_us,
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_after,
        "curve": curve,
    }


def serve_timed(app: Any, requests: list[dict[str, Any]]) -> float:
    start = time.perf_counter()
    drive(app, requests)
    return (time.perf_counter() - start) / len(requests) * 1e6


def chart(soaked: dict[str, Any], path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = soaked["curve"]
    minutes = [p["t"] / 60 for p in curve]
    fig, left = plt.subplots(figsize=(9, 4))
    left.plot(minutes, [p["rss_mb"] for p in curve], color="#2b7bba", label="process RSS (MB)")
    left.set_ylim(0, max(p["rss_mb"] for p in curve) * 1.3)
    left.set_xlabel("minutes of load")
    left.set_ylabel("RSS, MB")
    right = left.twinx()
    right.plot(minutes, [p["pending"] for p in curve], color="#d95f02", alpha=0.6, label="pending events")
    right.set_ylabel("pending events")
    right.set_ylim(0, max(1, max(p["pending"] for p in curve)) * 3)
    rate = soaked["achieved_rps"]
    left.set_title(f"RSS under load: {rate:,.0f} requests/s x 3 set calls, {KEYS:,} keys, memcached", fontsize=9)
    lines = left.get_lines() + right.get_lines()
    left.legend(lines, [str(line.get_label()) for line in lines], fontsize=8, loc="lower right")
    save_chart(fig, path)


def thinned(points: list[Any], most: int = 50) -> list[Any]:
    """Every k-th of ``points`` (and the last), at most about ``most``."""
    step = -(-len(points) // most)
    return points[::step] if points[-1:] == points[::step][-1:] else [*points[::step], points[-1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--rps", type=int, default=20_000)
    parser.add_argument("--max-pending", type=int, default=30_000)
    args = parser.parse_args()
    configs = (
        samplez.Config("mem_latency", period=300, samples=10_000, by_value=True),
        samplez.Config("mem_popular", period=600, samples=10_000, by_value=True),
        samplez.Config("mem_status", period=60, samples=1_000, by_value=True),
    )
    with Memcached() as server:
        soaked = soak(args.minutes, args.rps, server.address, configs)
    dead = dead_store(configs, args.max_pending)

    growth = soaked["rss_growth_mb"]
    print(
        f"soak {args.minutes:g} min at {soaked['achieved_rps']:,.0f} req/s: RSS {soaked['rss_second_quarter_mb']:.1f}"
        f" -> {soaked['rss_last_quarter_mb']:.1f} MB (growth {growth:+.1f} MB, max {soaked['rss_max_mb']:.1f} MB),"
        f" {soaked['events_applied']:,} events applied, {soaked['events_dropped']:,} dropped"
    )
    print(
        f"dead store: max_pending {dead['max_pending']:,}, peak pending {dead['peak_pending']:,}"
        f" [{'OK' if dead['peak_pending'] <= dead['max_pending'] else 'MISSED'}],"
        f" {dead['events_dropped']:,} of {dead['events_set']:,} events dropped;"
        f" request {dead['request_us_batch_not_full']:.2f} µs before the batch filled,"
        f" {dead['request_us_batch_full']:.2f} µs when full"
    )
    chart(soaked, RESULTS / "memory.png")
    soaked["curve"] = thinned(soaked["curve"])  # the chart has every point; the JSON at most 50
    command = f"python bench/bench_memory.py --minutes {args.minutes:g}"
    write_results("memory", {"soak": soaked, "dead_store": dead}, command)


if __name__ == "__main__":
    main()

"""Dashboard server time for a 10,000-sample config, the reservoir read
under it (``samplez.get`` of 10,000 slots from memcached), and the
overview (``/``) over request metrics holding 10,000 latency samples in
each of two periods.

    .venv/bin/python bench/bench_dashboard.py [--repeats 15] [--profile]

The config is filled through the real path (50,000 events over 2,000 keys,
flushed to a memcached started here) so every slot holds a sample. Pages
are served in-process by ``samplez.Dashboard`` (the WSGI call plus reading
the body: what the server spends, without the network). Target (SPEC §4):
<= 150 ms for the config page and for the overview. The request metrics
are filled as the middleware fills them (requests, statuses, latency,
slowest) with 50,000 requests over 50 endpoints across the last two hours
of an injected clock, so both latency periods are full and every minute
of the hour has counts. ``--profile`` prints where the config page and
the overview spend their time (pyinstrument).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from _common import Memcached, spread, verdict, write_results

import samplez
from samplez.engine import engine
from samplez.requests import RequestMetrics

SAMPLES = 10_000
EVENTS = 50_000
KEYS = 2_000
ENDPOINTS = 50
#: The injected clock: an hour and a half into an hour, so the latency
#: reservoir's previous period is full and its current one half full.
NOW = 1_800_001_800.0


def environ(path: str, query: str = "", accept: str = "") -> dict[str, Any]:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": None,
    }
    if accept:
        environ["HTTP_ACCEPT"] = accept
    return environ


def call(app: Any, path: str, query: str = "", accept: str = "") -> tuple[float, int, str]:
    """Serve one page in-process; seconds, body bytes and status."""
    status: list[str] = []

    def start_response(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        status.append(code)

    start = time.perf_counter()
    body = app(environ(path, query, accept), start_response)
    size = sum(len(chunk) for chunk in body)
    close = getattr(body, "close", None)
    if close is not None:
        close()
    return time.perf_counter() - start, size, status[0]


def fill(config: samplez.Config) -> None:
    for i in range(EVENTS):
        samplez.set(config, f"/content/{(i * 7919) % KEYS}", float(i % 500))
        if i % 10_000 == 9_999:
            samplez.flush()
    samplez.flush()


class Clock:
    """The injected clock the request metrics are filled and read at."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fill_requests(metrics: RequestMetrics, clock: Clock) -> None:
    """50,000 requests, evenly over the two hours before ``NOW``, as the
    middleware records them (about 1 % are 500s)."""
    start = NOW - 7200
    for i in range(EVENTS):
        clock.now = start + i * 7200 / EVENTS
        key = f"GET /endpoint/{(i * 7919) % ENDPOINTS}/<int:id>"
        ms = float(1 + (i * 31) % 400)
        samplez.set(metrics.requests, key)
        samplez.set(metrics.statuses, "500" if i % 97 == 0 else "200")
        samplez.set(metrics.latency, key, ms)
        samplez.set(metrics.slowest, key, ms)
        if i % 10_000 == 9_999:
            samplez.flush()
    clock.now = NOW
    samplez.flush()


def bench_overview(server: Memcached, repeats: int, profile: bool) -> dict[str, Any]:
    """Server time of ``/`` (the overview and the request metrics' cards)."""
    clock = Clock(NOW)
    samplez.configure(store=samplez.MemcacheStore(server.address), clock=clock)
    metrics = RequestMetrics(prefix="bench_http")
    fill_requests(metrics, clock)
    periods = [samplez.get(metrics.latency, period=p).unique_samples for p in ("previous", "current")]
    print(f"request metrics: latency samples {periods[0]:,} (previous) + {periods[1]:,} (current)")
    dashboard = samplez.Dashboard(sections=[metrics.section])
    data = json.loads(b"".join(dashboard(environ("/", "format=json"), lambda *a: None)))
    assert data["overview"]["enabled"] and len(data["overview"]["slowest"]) == 10, data["overview"]
    call(dashboard, "/")
    timings, cpu = [], []
    for _ in range(repeats):
        start = time.process_time()
        timings.append(call(dashboard, "/")[0] * 1e3)
        cpu.append((time.process_time() - start) * 1e3)
    if profile:
        from pyinstrument import Profiler

        with Profiler(interval=0.0005) as profiler:
            call(dashboard, "/")
        print(profiler.output_text(unicode=True, color=False))
    return {
        "overview_latency_samples": sum(periods),
        "overview_html_ms": spread(timings),
        # This process's CPU time for the page: what the page costs when
        # other processes share the cores (memcached's own time excluded).
        "overview_html_cpu_ms": spread(cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    config = samplez.Config("dash_10k", period=3600, samples=SAMPLES, by_value=True, value_units="ms")
    section = samplez.Section("Bench", config)
    pages = {
        "config_page_html": (f"/config/{config.name}", ""),
        "config_page_json": (f"/config/{config.name}", "format=json"),
        # Informational: every key's row (~2,000 rows, over 1 MB of HTML).
        "config_page_all_rows_html": (f"/config/{config.name}", f"limit={KEYS}"),
        "key_drilldown_html": (f"/config/{config.name}/key", "key=/content/0"),
        "index_html": ("/", ""),
    }
    with Memcached() as server:
        samplez.configure(
            store=samplez.MemcacheStore(server.address), flush="request", max_pending=EVENTS, max_pending_bytes=2**30
        )
        fill(config)
        result = samplez.get(config)
        samples, keys, events = result.unique_samples, len(result.keys()), result.total_events
        print(f"reservoir: {samples:,} samples, {keys:,} keys, {events:,} events")
        dashboard = samplez.Dashboard(sections=[section])
        for path, query in pages.values():  # warm up templates and connections
            assert call(dashboard, path, query)[2].startswith("200"), path
        reads, sizes = [], {}
        timings: dict[str, list[float]] = {name: [] for name in pages}
        for _ in range(args.repeats):
            start = time.perf_counter()
            samplez.get(config)
            reads.append((time.perf_counter() - start) * 1e3)
            for name, (path, query) in pages.items():
                seconds, size, _ = call(dashboard, path, query)
                timings[name].append(seconds * 1e3)
                sizes[name] = size
        if args.profile:
            from pyinstrument import Profiler

            with Profiler(interval=0.0005) as profiler:
                call(dashboard, *pages["config_page_html"])
            print(profiler.output_text(unicode=True, color=False))
        overview = bench_overview(server, args.repeats, args.profile)
        engine.stop()

    figures: dict[str, Any] = {"samples": result.unique_samples, "keys": len(result.keys())}
    figures["reservoir_read_ms"] = spread(reads)
    print(f"samplez.get (10,000 slots from memcached)  {figures['reservoir_read_ms']['median']:7.1f} ms")
    for name in pages:
        figures[f"{name}_ms"] = spread(timings[name])
        figures[f"{name}_bytes"] = sizes[name]
        ms = figures[f"{name}_ms"]["median"]
        mark = f"  [{verdict(ms, 150)} <= 150 ms]" if name in ("config_page_html", "config_page_json") else ""
        print(f"{name:40s}  {ms:7.1f} ms  ({sizes[name]:,} bytes){mark}")
    figures.update(overview)
    ms = overview["overview_html_ms"]["median"]
    cpu_ms = overview["overview_html_cpu_ms"]["median"]
    print(f"{'overview_html (/ over 2 x 10,000 samples)':40s}  {ms:7.1f} ms  [{verdict(ms, 150)} <= 150 ms]")
    print(f"{'overview_html, CPU time of this process':40s}  {cpu_ms:7.1f} ms")
    write_results("dashboard", figures, "python bench/bench_dashboard.py")


if __name__ == "__main__":
    main()

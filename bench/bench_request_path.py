"""The request path in-process: ``samplez.set`` per call, and the
middleware's overhead per request, each beside prometheus_client's
``Counter.inc`` measured in the same run.

    .venv/bin/python bench/bench_request_path.py [--repeats 15]

Figures (SPEC §4): ``set`` <= 2 µs per call (<= 3x Counter.inc); middleware
overhead with 3 ``set`` calls per request <= 15 µs over the bare app
(<= 25x Counter.inc). The middleware runs against a real memcached with
its background flusher, as in production; every figure is the median of
``--repeats`` runs, bare and wrapped alternated.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _common import Memcached, spread, verdict, write_results
from prometheus_client import CollectorRegistry, Counter

import samplez
from samplez import batch
from samplez.engine import engine

SET_CALLS = 20_000
REQUESTS = 20_000


def bench_counter_inc(calls: int) -> float:
    counter = Counter("bench_total", "bench", registry=CollectorRegistry())
    inc = counter.inc
    start = time.perf_counter()
    for _ in range(calls):
        inc()
    return time.perf_counter() - start


def bench_set_in_request(config: samplez.Config, keys: list[str]) -> Any:
    def run(calls: int) -> float:
        set_ = samplez.set
        token = batch.begin()
        start = time.perf_counter()
        for i in range(calls):
            set_(config, keys[i & 63], 12.5)
        elapsed = time.perf_counter() - start
        batch.current.reset(token)  # drop the batch: only the set calls are timed
        return elapsed

    return run


def bench_set_outside(config: samplez.Config, keys: list[str]) -> Any:
    def run(calls: int) -> float:
        set_ = samplez.set
        start = time.perf_counter()
        for i in range(calls):
            set_(config, keys[i & 63], 12.5)
        elapsed = time.perf_counter() - start
        engine.clear()
        return elapsed

    return run


def bare_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def sampling_app(configs: tuple[samplez.Config, samplez.Config, samplez.Config]) -> Any:
    """The bare app plus 3 ``samplez.set`` calls, as a handler would make."""
    latency, popular, status = configs

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ["PATH_INFO"]
        samplez.set(latency, path, 3.2)
        samplez.set(popular, path)
        samplez.set(status, "200")
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    return app


def serve(app: Any, requests: int) -> float:
    """Call a WSGI app ``requests`` times in-process, iterating and closing
    each response as a server does."""
    environs = [{"REQUEST_METHOD": "GET", "PATH_INFO": f"/item/{i}", "wsgi.url_scheme": "http"} for i in range(64)]

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        return None

    start = time.perf_counter()
    for i in range(requests):
        body = app(environs[i & 63], start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    us = 1e6
    keys = [f"/item/{i}" for i in range(64)]
    config = samplez.Config("bench_set", period=60, samples=10_000, by_value=True)
    configs = (
        samplez.Config("bench_latency", period=300, samples=10_000, by_value=True, value_units="ms"),
        samplez.Config("bench_popular", period=600, samples=10_000, by_value=True),
        samplez.Config("bench_status", period=60, samples=1_000, by_value=True),
    )

    inc, in_request, outside = [], [], []
    samplez.configure(flush="request", max_pending=10 * SET_CALLS)  # no flusher thread for the micro figures
    for _ in range(args.repeats):
        inc.append(bench_counter_inc(SET_CALLS) / SET_CALLS * us)
        in_request.append(bench_set_in_request(config, keys)(SET_CALLS) / SET_CALLS * us)
        outside.append(bench_set_outside(config, keys)(SET_CALLS) / SET_CALLS * us)
    inc_us = spread(inc)["median"]

    with Memcached() as server:
        store = samplez.MemcacheStore(server.address)
        wrapped = samplez.Middleware(sampling_app(configs), store=store, flush="background", max_pending=100_000)
        serve(wrapped, 2_000)  # warm up: connections, the flusher thread
        bare_us, wrapped_us, overhead_us = [], [], []
        for _ in range(args.repeats):
            b = serve(bare_app, REQUESTS) / REQUESTS * us
            w = serve(wrapped, REQUESTS) / REQUESTS * us
            bare_us.append(b)
            wrapped_us.append(w)
            overhead_us.append(w - b)
            # Drain between runs (untimed): 20,000 requests in-process outrun
            # one flush interval, and an overflow would drop events.
            samplez.flush()
        # CPU per request including the flusher's share (process time counts
        # every thread): what the middleware costs a busy worker in total.
        cpu_us = []
        for _ in range(max(3, args.repeats // 3)):
            samplez.flush()
            start = time.process_time()
            serve(wrapped, REQUESTS)
            samplez.flush()
            cpu_us.append((time.process_time() - start) / REQUESTS * us)
        summary = samplez.flush()
        health = dict(engine.health)
        engine.stop()

    figures = {
        "counter_inc_us": spread(inc),
        "set_in_request_us": spread(in_request),
        "set_outside_request_us": spread(outside),
        "set_in_request_x_counter_inc": spread(in_request)["median"] / inc_us,
        "set_outside_x_counter_inc": spread(outside)["median"] / inc_us,
        "bare_app_us": spread(bare_us),
        "wrapped_app_us": spread(wrapped_us),
        "middleware_overhead_us": spread(overhead_us),
        "middleware_overhead_x_counter_inc": spread(overhead_us)["median"] / inc_us,
        "wrapped_cpu_us_incl_flush": spread(cpu_us),
        "wrapped_x_bare_app_time": spread(wrapped_us)["median"] / spread(bare_us)["median"],
        "sets_per_request": 3,
        "flusher": {k: health[k] for k in ("flushes", "applied", "dropped", "errors", "round_trips")},
        "last_flush_round_trips": summary.round_trips,
    }
    m: dict[str, Any] = {k: v["median"] if isinstance(v, dict) and "median" in v else v for k, v in figures.items()}
    print(f"prometheus Counter.inc          {m['counter_inc_us']:.3f} µs")
    s_in, s_out = m["set_in_request_us"], m["set_outside_request_us"]
    x_in, x_out = m["set_in_request_x_counter_inc"], m["set_outside_x_counter_inc"]
    print(f"samplez.set in a request        {s_in:.3f} µs  ({x_in:.2f}x inc)  [{verdict(s_in, 2)} <= 2 µs]")
    print(f"samplez.set outside a request   {s_out:.3f} µs  ({x_out:.2f}x inc)  [{verdict(s_out, 2)} <= 2 µs]")
    print(f"bare app per request            {m['bare_app_us']:.2f} µs")
    print(f"wrapped app (3 sets) per request {m['wrapped_app_us']:.2f} µs")
    over, over_x = m["middleware_overhead_us"], m["middleware_overhead_x_counter_inc"]
    print(f"middleware overhead             {over:.2f} µs  ({over_x:.1f}x inc)  [{verdict(over, 15)} <= 15 µs]")
    print(f"CPU per wrapped request, its flush included  {m['wrapped_cpu_us_incl_flush']:.2f} µs")
    print(f"flusher during the run          {figures['flusher']}")
    write_results("request_path", figures, "python bench/bench_request_path.py")


if __name__ == "__main__":
    main()

"""The request path in-process, each figure beside the peer a user would
pick instead, measured in the same run.

    .venv/bin/python bench/bench_request_path.py [--rounds 30] [--requests 3000] [--fresh]

* ``samplez.set`` per call, inside a request (``batch.begin``/``end``) and
  outside one, beside prometheus_client's ``Counter.inc``.
* Everything samplez adds to a Flask hello-world request (the middleware,
  3 ``set`` calls, the fold into the process batch and the request's share
  of the flush to a real memcached), beside what prometheus_flask_exporter's
  default instrumentation, ``PrometheusMetrics(app)``, adds to the same app.

Figures (SPEC §4): ``set`` in a request <= 1x ``Counter.inc``; samplez's
addition <= 0.5x the peer's (aim: 0.33x).

The three Flask apps of ``_wsgi_app.flask_app`` (bare; samplez's
``Middleware`` with a view making 3 ``set`` calls; ``PrometheusMetrics``)
are called as WSGI callables, each response iterated and closed as a server
does, and served in turn in every round, their order rotating. CPU per
request is ``time.process_time()`` over a round of ``--requests``
requests, which counts every thread of the process: samplez's round ends
with a ``samplez.flush()`` inside its timed span, so the flush of the
round's events (and any the background flusher made during it) is charged
to its requests; memcached's own CPU is not. What an app adds is its time
minus the bare app's in the same round; every figure is the median over
rounds with its 95 % bootstrap interval, the ratio's resampling rounds
whole.

Before each round every reservoir is put in its steady state, full, as the
instruction count does (``bench_instructions.py``): a flush then replaces
a slot with the small chance it has late in a busy period. ``--fresh``
leaves them to fill from empty instead, as in the first samples of each
period, when every event takes a slot and a store write.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

from _common import Memcached, call_wsgi, median_interval, ratio_interval, spread, verdict, write_results
from _wsgi_app import fill_reservoirs, flask_app
from prometheus_client import CollectorRegistry, Counter

import samplez
from samplez import batch
from samplez.engine import engine

SET_CALLS = 20_000
PATHS = 64


def bench_counter_inc(calls: int) -> float:
    counter = Counter("bench_total", "bench", registry=CollectorRegistry())
    inc = counter.inc
    start = time.perf_counter()
    for _ in range(calls):
        inc()
    return time.perf_counter() - start


def bench_set_in_request(config: samplez.Config, keys: list[str], calls: int) -> float:
    set_ = samplez.set
    token = batch.begin()
    start = time.perf_counter()
    for i in range(calls):
        set_(config, keys[i & 63], 12.5)
    elapsed = time.perf_counter() - start
    batch.end(token)
    engine.clear()  # only the set calls are timed
    return elapsed


def bench_set_outside(config: samplez.Config, keys: list[str], calls: int) -> float:
    set_ = samplez.set
    start = time.perf_counter()
    for i in range(calls):
        set_(config, keys[i & 63], 12.5)
    elapsed = time.perf_counter() - start
    engine.clear()
    return elapsed


def set_figures(repeats: int) -> dict[str, Any]:
    """``samplez.set`` and ``Counter.inc`` per call (µs), alternated."""
    keys = [f"/item/{i}" for i in range(64)]
    config = samplez.Config("bench_set", period=60, samples=10_000, by_value=True)
    inc, in_request, outside = [], [], []
    samplez.configure(flush="request", max_pending=10 * SET_CALLS)  # no flusher thread here
    for _ in range(repeats):
        inc.append(bench_counter_inc(SET_CALLS) / SET_CALLS * 1e6)
        in_request.append(bench_set_in_request(config, keys, SET_CALLS) / SET_CALLS * 1e6)
        outside.append(bench_set_outside(config, keys, SET_CALLS) / SET_CALLS * 1e6)
    return {
        "counter_inc_us": spread(inc),
        "set_in_request_us": spread(in_request),
        "set_outside_request_us": spread(outside),
        "set_in_request_x_counter_inc": ratio_of_medians(in_request, inc),
        "set_outside_x_counter_inc": ratio_of_medians(outside, inc),
    }


def ratio_of_medians(numerators: list[float], denominators: list[float]) -> dict[str, Any]:
    value = spread(numerators)["median"] / spread(denominators)["median"]
    return {"ratio": value, "interval_95": ratio_interval(numerators, denominators)}


def serve(app: Callable[..., Any], requests: int, after: Callable[[], Any] | None = None) -> float:
    """CPU seconds (every thread of the process) to call the WSGI ``app``
    ``requests`` times, iterating and closing each body, then ``after()``."""
    start = time.process_time()
    call_wsgi(app, requests, PATHS)
    if after is not None:
        after()
    return time.process_time() - start


def flask_figures(rounds: int, requests: int, memcache: str, fresh: bool = False) -> dict[str, Any]:
    """CPU µs per request of the bare, samplez and peer Flask apps, and
    what the two add, one figure of each per round. Unless ``fresh``, every
    reservoir is put in its steady state before each round, as the
    instruction count does (``_wsgi_app.fill_reservoirs``)."""
    wrapped = flask_app(sample=True)
    wrapped.wsgi_app = samplez.Middleware(  # type: ignore[method-assign]
        wrapped.wsgi_app, store=samplez.MemcacheStore(memcache), flush="background", max_pending=100_000
    )
    apps = {"bare": flask_app(sample=False), "samplez": wrapped, "peer": flask_app(sample=False, peer=True)}
    after = {"samplez": samplez.flush}
    for name, app in apps.items():  # warm up: imports, connections, the flusher thread, label children
        serve(app, 2_000, after.get(name))
    us: dict[str, list[float]] = {name: [] for name in apps}
    names = list(apps)
    for r in range(rounds):
        if not fresh:
            fill_reservoirs(memcache)
        for name in names[r % 3 :] + names[: r % 3]:
            us[name].append(serve(apps[name], requests, after.get(name)) / requests * 1e6)
    samplez_added = [s - b for s, b in zip(us["samplez"], us["bare"])]
    peer_added = [p - b for p, b in zip(us["peer"], us["bare"])]
    figures: dict[str, Any] = {f"flask_{name}_us": with_interval(values) for name, values in us.items()}
    figures["samplez_added_us"] = with_interval(samplez_added)
    figures["peer_added_us"] = with_interval(peer_added)
    figures["samplez_x_peer"] = ratio_of_medians(samplez_added, peer_added)
    figures["requests_per_round"] = requests
    figures["sets_per_request"] = 3
    figures["per_round_us"] = us
    health = dict(engine.health)
    figures["flusher"] = {k: health[k] for k in ("flushes", "applied", "dropped", "errors", "round_trips")}
    return figures


def with_interval(values: list[float]) -> dict[str, Any]:
    return {**spread(values), "interval_95": median_interval(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="runs of the set/Counter.inc figures")
    parser.add_argument("--rounds", type=int, default=30, help="rounds of the three Flask apps")
    parser.add_argument("--requests", type=int, default=3_000, help="requests per app per round")
    parser.add_argument(
        "--fresh", action="store_true", help="leave the reservoirs to fill from empty: each new period's first samples"
    )
    args = parser.parse_args()

    figures = set_figures(args.repeats)
    with Memcached() as server:
        figures.update(flask_figures(args.rounds, args.requests, server.address, args.fresh))
        engine.stop()

    inc = figures["counter_inc_us"]["median"]
    print(f"prometheus Counter.inc               {inc:.3f} µs")
    for name, label in (("in_request", "in a request"), ("outside", "outside a request")):
        s = figures[f"set_{name}_us" if name == "in_request" else "set_outside_request_us"]["median"]
        x = figures[f"set_{name}_x_counter_inc"]
        lo, hi = x["interval_95"]
        target = f"[{verdict(x['ratio'], 1)} <= 1x]" if name == "in_request" else ""
        print(f"samplez.set {label:24s} {s:.3f} µs  {x['ratio']:.2f}x inc (95 % {lo:.2f}-{hi:.2f})  {target}")
    state = "reservoirs filling from empty" if args.fresh else "reservoirs full"
    print(f"Flask hello-world, CPU per request ({args.rounds} rounds of {args.requests}, {state}):")
    rows = {
        "flask_bare_us": "bare",
        "flask_samplez_us": "samplez, 3 sets, flush included",
        "flask_peer_us": "PrometheusMetrics",
        "samplez_added_us": "samplez adds",
        "peer_added_us": "prometheus_flask_exporter adds",
    }
    for key, label in rows.items():
        row = figures[key]
        lo, hi = row["interval_95"]
        print(f"  {label:34s} {row['median']:7.2f} µs  (95 % {lo:.2f}-{hi:.2f})")
    x = figures["samplez_x_peer"]
    lo, hi = x["interval_95"]
    print(
        f"  samplez added / peer added         {x['ratio']:7.3f}x    (95 % {lo:.3f}-{hi:.3f})"
        f"  [{verdict(x['ratio'], 0.5)} <= 0.5x; aim 0.33x: {verdict(x['ratio'], 0.33)}]"
    )
    print(f"flusher during the run               {figures['flusher']}")
    command = f"python bench/bench_request_path.py --repeats {args.repeats} --rounds {args.rounds}"
    figures["fresh_reservoirs"] = args.fresh
    command += f" --requests {args.requests}" + (" --fresh" if args.fresh else "")
    write_results("request_path", figures, command)


if __name__ == "__main__":
    main()

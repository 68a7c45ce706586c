"""``/metrics`` server time for 50 metrics x 100 keys, and what one scrape
costs the store (round trips and gets).

    .venv/bin/python bench/bench_metrics.py [--repeats 15] [--profile]

The metrics cycle through every kind (reservoirs of 1,000 samples, rolling
counters and maxima over a minute in 6 buckets, stepped, unique,
HyperLogLog and bitmap counters, calendar counters), each written for 100
keys through the real path into a memcached started here. The scrape is
served in-process by ``samplez.Dashboard`` (the WSGI call plus reading the
body), in the text format and in OpenMetrics. Target (SPEC §4): <= 150 ms.
``--profile`` prints where a scrape spends its time (pyinstrument).
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

from _common import Memcached, spread, verdict, write_results
from bench_dashboard import call

import samplez
from samplez.dashboard.exposition import scrape
from samplez.engine import engine
from samplez.store.base import Op, Store

METRICS = 50
KEYS = 100
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def make(i: int) -> Any:
    """The ``i``-th metric: every kind in turn."""
    name = f"m{i:02d}"
    kinds = [
        lambda: samplez.Config(name, period=3600, samples=1000, by_value=True, value_units="ms"),
        lambda: samplez.RollingCounter(name, window=60, buckets=6),
        lambda: samplez.RollingMax(name, window=60, buckets=6),
        lambda: samplez.SteppedCounter(name, step=3600),
        lambda: samplez.UniqueCounter(name, step=3600),
        lambda: samplez.HyperLogLogCounter(name, step=3600),
        lambda: samplez.BitmapCounter(name, step=3600),
        lambda: samplez.CalendarCounter(name),
    ]
    return kinds[i % len(kinds)]()


class Counting(Store):
    """The store, counting the ops it is asked for."""

    def __init__(self, store: Store) -> None:
        self.store, self.ops = store, 0

    def execute(self, ops: Sequence[Op]) -> tuple[list[Any], int]:
        self.ops += len(ops)
        return self.store.execute(ops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    metrics = [make(i) for i in range(METRICS)]
    section = samplez.Section("Bench", *metrics)
    with Memcached() as server:
        store = samplez.MemcacheStore(server.address)
        samplez.configure(store=store, flush="request", max_pending=10**6, max_pending_bytes=2**30)
        for round_ in range(3):
            for key in range(KEYS):
                for metric in metrics:
                    samplez.set(metric, f"/endpoint/{key}", round_ * KEYS + key)
            samplez.flush()
        counting = Counting(store)
        once = scrape([section], counting)
        series = sum(len(family.samples) for family in once.families)
        dashboard = samplez.Dashboard(sections=[section])
        formats = {"text": "", "openmetrics": OPENMETRICS}
        timings: dict[str, list[float]] = {name: [] for name in formats}
        sizes = {}
        for accept in formats.values():  # warm up connections and imports
            assert call(dashboard, "/metrics", accept=accept)[2].startswith("200")
        for _ in range(args.repeats):
            for name, accept in formats.items():
                seconds, size, _ = call(dashboard, "/metrics", accept=accept)
                timings[name].append(seconds * 1e3)
                sizes[name] = size
        if args.profile:
            from pyinstrument import Profiler

            with Profiler(interval=0.0005) as profiler:
                call(dashboard, "/metrics")
            print(profiler.output_text(unicode=True, color=False))
        engine.stop()

    figures: dict[str, Any] = {"metrics": METRICS, "keys": KEYS, "samples": series}
    figures["round_trips_per_scrape"] = once.round_trips
    figures["gets_per_scrape"] = counting.ops
    print(f"{METRICS} metrics x {KEYS} keys: {series:,} samples exposed")
    print(f"store per scrape: {once.round_trips} round trips, {counting.ops:,} gets")
    for name in formats:
        figures[f"{name}_ms"] = spread(timings[name])
        figures[f"{name}_bytes"] = sizes[name]
        ms = figures[f"{name}_ms"]["median"]
        print(f"/metrics {name:12s} {ms:7.1f} ms  ({sizes[name]:,} bytes)  [{verdict(ms, 150)} <= 150 ms]")
    write_results("metrics", figures, "python bench/bench_metrics.py")


if __name__ == "__main__":
    main()

"""Accuracy through the real samplez path (``samplez.set`` then
``samplez.flush`` then ``samplez.get``): reservoir frequency estimates on a
Zipf stream, and the HyperLogLog unique estimate.

    .venv/bin/python bench/bench_accuracy.py [--runs 10] [--store memcache|memory]

Zipf(1.2) over 20,000 keys, 1,000,000 events, ``samples=10,000`` (SPEC §4):
the top-10 keys' estimated frequency, mean relative error per run, target
<= 8 % in every run. Theory beside it: a key with share ``p`` has about
``Binomial(samples, p)`` samples, so its relative error has standard
deviation ``sqrt((1 - p) / (samples p))`` (times the finite-population
factor) and mean absolute value ``sqrt(2/pi)`` times that; averaged over
the top 10 it is about 4 %. HyperLogLog: 1,000,000 distinct items, target
within 2 %. Writes ``bench/results/accuracy.json`` and ``accuracy.png``.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from typing import Any

from _common import RESULTS, Memcached, save_chart, spread, verdict, write_results

import samplez
from samplez.engine import engine

KEYS = 20_000
EVENTS = 1_000_000
SAMPLES = 10_000
EXPONENT = 1.2
TOP = 10
CHUNK = 100_000
START = 1_800_000_000.0  # a period boundary for period=3600
ELAPSED = 1000.0


class FixedClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def zipf_stream(seed: int) -> list[int]:
    """``EVENTS`` key numbers (0 = most popular) drawn from Zipf(1.2) over
    ``KEYS`` keys; numpy when installed, else ``random.choices``."""
    weights = [1.0 / (rank**EXPONENT) for rank in range(1, KEYS + 1)]
    try:
        import numpy as np
    except ImportError:
        rng = random.Random(seed)
        return rng.choices(range(KEYS), weights=weights, k=EVENTS)
    p = np.asarray(weights) / sum(weights)
    return np.random.default_rng(seed).choice(KEYS, size=EVENTS, p=p).tolist()


def theory() -> float:
    """Expected mean relative error of the top-10 frequency estimates of a
    pure reservoir of ``SAMPLES`` out of ``EVENTS``."""
    total = sum(1.0 / (rank**EXPONENT) for rank in range(1, KEYS + 1))
    fpc = math.sqrt((EVENTS - SAMPLES) / (EVENTS - 1))
    errors = []
    for rank in range(1, TOP + 1):
        p = 1.0 / (rank**EXPONENT) / total
        errors.append(math.sqrt(2 / math.pi) * math.sqrt((1 - p) / (SAMPLES * p)) * fpc)
    return sum(errors) / len(errors)


def reservoir_run(seed: int, clock: FixedClock) -> dict[str, Any]:
    config = samplez.Config(f"acc_zipf_{seed}", period=3600, samples=SAMPLES, by_value=True)
    stream = zipf_stream(seed)
    names = [f"/content/{i}" for i in range(KEYS)]
    exact = [0] * KEYS
    set_ = samplez.set
    applied = 0
    for start in range(0, EVENTS, CHUNK):
        for number in stream[start : start + CHUNK]:
            exact[number] += 1
            set_(config, names[number], 1)
        applied += samplez.flush().applied
    clock.now = START + ELAPSED
    result = samplez.get(config)
    top = sorted(range(KEYS), key=lambda k: -exact[k])[:TOP]
    rows = []
    for number in top:
        estimate = (result.frequency(names[number]) or 0.0) * result.elapsed
        rows.append({"key": names[number], "exact": exact[number], "estimate": estimate})
    errors = [abs(r["estimate"] - r["exact"]) / r["exact"] for r in rows]
    samplez.unregister(config)
    clock.now = START
    return {
        "seed": seed,
        "applied": applied,
        "total_events": result.total_events,
        "unique_samples": result.unique_samples,
        "mean_relative_error": sum(errors) / len(errors),
        "max_relative_error": max(errors),
        "top": rows,
    }


def hll_run(distinct: int) -> dict[str, Any] | None:
    try:
        from samplez import HyperLogLogCounter  # type: ignore[attr-defined]
    except ImportError:
        return None
    counter = HyperLogLogCounter("acc_hll", step=3600)
    set_ = samplez.set
    for start in range(0, distinct, CHUNK):
        for i in range(start, min(start + CHUNK, distinct)):
            set_(counter, "all", f"visitor-{i}")
        samplez.flush()
    estimate = samplez.get(counter)["all"].value
    return {"distinct": distinct, "estimate": estimate, "relative_error": abs(estimate - distinct) / distinct}


def chart(runs: list[dict[str, Any]], expected: float, path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    errors = [100 * r["mean_relative_error"] for r in runs]
    left.bar([f"run {i + 1}" for i in range(len(runs))], errors, color="#2b7bba", label="samplez, measured")
    theory_label = f"pure reservoir, theory ({100 * expected:.1f} %)"
    left.axhline(100 * expected, color="#1b9e77", linestyle="--", label=theory_label)
    left.axhline(8, color="#d95f02", linestyle=":", label="target (8 %)")
    left.set_ylabel("top-10 frequency, mean relative error (%)")
    left.set_title(f"Zipf({EXPONENT}), {EVENTS:,} events, {KEYS:,} keys, samples={SAMPLES:,}", fontsize=9)
    left.legend(fontsize=8)
    first = runs[0]["top"]
    ranks = range(1, len(first) + 1)
    right.plot(ranks, [r["exact"] for r in first], "o-", color="#8c8c8c", label="exact count")
    right.plot(ranks, [r["estimate"] for r in first], "s--", color="#2b7bba", label="samplez estimate")
    right.set_yscale("log")
    right.set_xlabel("key rank")
    right.set_ylabel("events in the period")
    right.set_title("Top-10 keys of run 1: estimate vs exact", fontsize=9)
    right.legend(fontsize=8)
    save_chart(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--store", choices=("memory", "memcache"), default="memcache")
    parser.add_argument("--distinct", type=int, default=1_000_000, help="HyperLogLog distinct items")
    args = parser.parse_args()
    clock = FixedClock(START)
    server = Memcached(memory_mb=512) if args.store == "memcache" else None
    if server is not None:
        server.__enter__()
    try:
        store = samplez.MemcacheStore(server.address) if server else samplez.MemoryStore()
        samplez.configure(store=store, clock=clock, flush="request", max_pending=2 * CHUNK, max_pending_bytes=2**30)
        runs = []
        for seed in range(1, args.runs + 1):
            began = time.perf_counter()
            run = reservoir_run(seed, clock)
            runs.append(run)
            print(
                f"run {seed}: top-10 mean relative error {100 * run['mean_relative_error']:.2f} %"
                f" (max {100 * run['max_relative_error']:.1f} %), {run['total_events']:,} events,"
                f" {time.perf_counter() - began:.1f} s"
            )
        hll = hll_run(args.distinct)
        engine.stop()
    finally:
        if server is not None:
            server.__exit__(None, None, None)

    expected = theory()
    worst = max(r["mean_relative_error"] for r in runs)
    figures: dict[str, Any] = {
        "store": args.store,
        "top10_mean_relative_error": spread([r["mean_relative_error"] for r in runs]),
        "worst_run": worst,
        "theory_pure_reservoir": expected,
        "runs": runs,
        "hyperloglog": hll,
    }
    print(f"theory (pure reservoir)       {100 * expected:.2f} %")
    median_error = 100 * figures["top10_mean_relative_error"]["median"]
    print(f"measured, median of {len(runs)} runs   {median_error:.2f} %")
    print(f"worst run                     {100 * worst:.2f} %  [{verdict(worst, 0.08)} <= 8 %]")
    if hll is not None:
        error = hll["relative_error"]
        print(f"HyperLogLog at {hll['distinct']:,} distinct: {hll['estimate']:,.0f}  error {100 * error:.2f} %")
        print(f"  [{verdict(error, 0.02)} <= 2 %]")
    else:
        print("HyperLogLog: samplez.HyperLogLogCounter not available yet")
    chart(runs, expected, RESULTS / "accuracy.png")
    write_results("accuracy", figures, "python bench/bench_accuracy.py")


if __name__ == "__main__":
    main()

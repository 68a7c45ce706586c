"""What each stage of samplez costs inside a gunicorn worker: one sync
worker saturated by wrk serving the bare app, then the wrapped app cut
short after each stage (``_wsgi_app``'s ``stage_*`` modes), then the whole
of it. CPU per request is read from ``/proc`` for the worker's request
thread and, apart, for its other threads (the flusher).

    .venv/bin/python bench/bench_stages.py [--rounds 16] [--seconds 4] [--app wsgi|flask]

The stages are cumulative: the middleware alone; + 3 ``set`` calls and
their fold into events at the response (the first event starts the flusher
thread, which waits from then on); + keeping them in the process batch;
+ the flush to memcached. Beside them, the bare app with an idle thread
prices that thread's mere existence: in a process with a second thread,
glibc takes its multi-threaded paths (cancellation points around each
syscall, atomic locks) and the kernel counts references to each file a
syscall uses, since the threads share the file table. Each row's delta is that stage's price in the
worker, where samplez's code runs between ~100 µs of gunicorn's and costs
several times what a hot in-process loop (``bench_request_path.py``) shows.
Rounds vary by a few µs on a shared machine: read a delta of 1-2 µs with
the spread printed beside it.
The app is the raw WSGI hello-world of ``bench_throughput.py``
(``bench/results/stages.json``) or, with ``--app flask``, its Flask
hello-world (``stages_flask.json``).
"""

from __future__ import annotations

import argparse
import os
from functools import partial

from _common import Memcached, median, spread, write_results
from bench_throughput import family, run_wrk, serving, start_gunicorn, stat_seconds

from samplez.testing import free_port

STAGES = {
    "bare": "the bare app",
    "bare_thread": "bare app + an idle thread",
    "stage_middleware": "+ the middleware (no set)",
    "stage_fold": "+ 3 set calls, folded into events",
    "stage_pending": "+ the process batch",
    "wrapped": "+ the flush (all of samplez)",
}


def thread_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of the request thread (the worker's main thread) and of
    its other threads."""
    main = others = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        seconds = stat_seconds(f"/proc/{pid}/task/{tid}/stat")
        if int(tid) == pid:
            main += seconds
        else:
            others += seconds
    return main, others


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--app", choices=("wsgi", "flask"), default="wsgi")
    args = parser.parse_args()
    modes = list(STAGES)
    ports = {mode: free_port() for mode in modes}
    samples: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    with Memcached() as memcached:
        start = partial(start_gunicorn, memcache=memcached.address, workers=1, app=args.app)
        starts = {mode: partial(start, mode, ports[mode]) for mode in modes}
        with serving(starts) as procs:
            workers = {mode: family(proc.pid)[1] for mode, proc in procs.items()}
            for mode in modes:  # warm up
                run_wrk(ports[mode], 1, args.connections)
            for round_number in range(args.rounds):
                for mode in modes if round_number % 2 == 0 else modes[::-1]:
                    before = thread_cpu(workers[mode])
                    requests = run_wrk(ports[mode], args.seconds, args.connections)["rps"] * args.seconds
                    after = thread_cpu(workers[mode])
                    samples[mode].append(((after[0] - before[0]) / requests, (after[1] - before[1]) / requests))
                print(f"round {round_number + 1} done")
    figures: dict[str, dict[str, float]] = {}
    previous = None
    for mode in modes:
        request_us = median([s[0] for s in samples[mode]]) * 1e6
        other_us = median([s[1] for s in samples[mode]]) * 1e6
        totals = [(s[0] + s[1]) * 1e6 for s in samples[mode]]
        total = median(totals)
        figures[mode] = {
            "request_thread_us": request_us,
            "other_threads_us": other_us,
            "total_us": total,
            "total_spread_us": spread(totals),
        }
        base = figures["bare"]["total_us"] if mode == "bare_thread" else previous
        delta = "" if base is None else f"  {total - base:+5.1f} µs"
        low, high = sorted(totals)[len(totals) // 4], sorted(totals)[-1 - len(totals) // 4]
        print(
            f"{STAGES[mode]:32s} request thread {request_us:6.1f} µs  flusher {other_us:4.2f} µs"
            f"  (all threads {low:.1f}-{high:.1f}, middle half of rounds){delta}"
        )
        previous = total if mode != "bare_thread" else previous
    print(f"samplez in all: {figures['wrapped']['total_us'] - figures['bare']['total_us']:+.1f} µs of CPU per request")
    name, command = ("stages", "") if args.app == "wsgi" else (f"stages_{args.app}", f" --app {args.app}")
    write_results(name, {"stages": figures, "rounds": args.rounds}, f"python bench/bench_stages.py{command}")


if __name__ == "__main__":
    main()

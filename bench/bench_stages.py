"""What each stage of samplez costs inside a gunicorn worker: one sync
worker saturated by wrk serving the bare app, then the wrapped app cut
short after each stage (``_wsgi_app``'s ``stage_*`` modes), then the whole
of it. Two figures per request: the span from the request parsed to its
body closed, in CPU time of the request thread (``_gunicorn_span.py``,
gunicorn's ``pre_request`` and ``post_request`` hooks), and the CPU of all
the worker's threads, read in ns from ``/proc/<pid>/task/*/schedstat``
(the flusher's apart). Each is compared with the bare app's in the same
round, and the median of those differences is the stage's price.

    .venv/bin/python bench/bench_stages.py [--rounds 16] [--seconds 4] [--app wsgi|flask]

The stages are cumulative: the middleware alone; + 3 ``set`` calls and
their fold into events at the response (the first event starts the flusher
thread, which waits from then on); + keeping them in the process batch;
+ the flush to memcached. Beside them, the bare app with an idle thread
prices that thread's mere existence: in a process with a second thread the
kernel counts a reference to the file of every fd syscall, since the
threads share the file table (docs/PERFORMANCE.md); that cost falls
outside the span. samplez's code runs between ~100 µs of gunicorn's and
costs several times what a hot in-process loop (``bench_request_path.py``)
shows. Rounds vary by a few µs on a shared machine: read a price of 1 µs
with the spread printed beside it.
The app is the raw WSGI hello-world of ``bench_throughput.py``
(``bench/results/stages.json``) or, with ``--app flask``, its Flask
hello-world (``stages_flask.json``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from functools import partial
from pathlib import Path

from _common import ROOT, Memcached, median, spread, write_results
from bench_throughput import add_fresh_option, family, fresh_rounds, run_wrk, start_gunicorn

from samplez.testing import free_port

STAGES = {
    "bare": "the bare app",
    "bare_thread": "bare app + an idle thread",
    "stage_middleware": "+ the middleware (no set)",
    "stage_fold": "+ 3 set calls, folded into events",
    "stage_pending": "+ the process batch",
    "wrapped": "+ the flush (all of samplez)",
}


SPAN_HOOKS = ROOT / "bench" / "_gunicorn_span.py"


def schedstat_seconds(path: str) -> float:
    """CPU seconds a task has run (``schedstat``'s first field, in ns);
    0 once it is gone."""
    try:
        with open(path) as stat:
            return int(stat.read().split()[0]) / 1e9
    except OSError:
        return 0.0


def thread_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of the request thread (the worker's main thread) and of
    its other threads."""
    main = others = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        seconds = schedstat_seconds(f"/proc/{pid}/task/{tid}/schedstat")
        if int(tid) == pid:
            main += seconds
        else:
            others += seconds
    return main, others


def span_totals(directory: Path) -> tuple[int, int]:
    """The span hooks' running totals, (ns, requests), over the workers."""
    ns = requests = 0
    for path in directory.iterdir():
        fields = path.read_text().split()
        if len(fields) == 2:
            ns, requests = ns + int(fields[0]), requests + int(fields[1])
    return ns, requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--app", choices=("wsgi", "flask"), default="wsgi")
    add_fresh_option(parser)
    args = parser.parse_args()
    modes = list(STAGES)
    ports = {mode: free_port() for mode in modes}
    # Per mode and round: (span, request thread, other threads), µs per request.
    samples: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in modes}
    with Memcached() as memcached, tempfile.TemporaryDirectory() as spans:
        span_dirs = {mode: Path(spans, mode) for mode in modes}
        for directory in span_dirs.values():
            directory.mkdir()
        start = partial(start_gunicorn, memcache=memcached.address, workers=1, app=args.app, config=SPAN_HOOKS)
        starts = {
            mode: partial(start, mode, ports[mode], extra_env={"BENCH_SPAN_DIR": str(span_dirs[mode])})
            for mode in modes
        }
        for round_number, procs in fresh_rounds(starts, ports, args):
            workers = {mode: family(proc.pid)[1] for mode, proc in procs.items()}
            for mode in modes if round_number % 2 == 0 else modes[::-1]:
                before, span_before = thread_cpu(workers[mode]), span_totals(span_dirs[mode])
                requests = run_wrk(ports[mode], args.seconds, args.connections)["rps"] * args.seconds
                after, span_after = thread_cpu(workers[mode]), span_totals(span_dirs[mode])
                spanned = max(span_after[1] - span_before[1], 1)
                samples[mode].append(
                    (
                        (span_after[0] - span_before[0]) / spanned / 1e3,
                        (after[0] - before[0]) / requests * 1e6,
                        (after[1] - before[1]) / requests * 1e6,
                    )
                )
            print(f"round {round_number + 1} done")
    figures = {mode: stage_figures(samples[mode], samples["bare"]) for mode in modes}
    print(f"{'':34s} {'span':>8s} {'vs bare':>8s}  {'all threads':>11s} {'vs bare':>8s}  {'flusher':>7s}")
    for mode in modes:
        row = figures[mode]
        low, high = row["vs_bare_spread_us"]["q1"], row["vs_bare_spread_us"]["q3"]
        print(
            f"{STAGES[mode]:34s} {row['span_us']:6.1f}µs {row['span_vs_bare_us']:+6.2f}µs"
            f"  {row['total_us']:9.1f}µs {row['total_vs_bare_us']:+6.2f}µs  {row['other_threads_us']:5.2f}µs"
            f"  (vs bare {low:+.1f}..{high:+.1f}, middle half of rounds)"
        )
    print(f"samplez in all: {figures['wrapped']['total_vs_bare_us']:+.1f} µs of CPU per request")
    name, command = ("stages", "") if args.app == "wsgi" else (f"stages_{args.app}", f" --app {args.app}")
    write_results(name, {"stages": figures, "rounds": args.rounds}, f"python bench/bench_stages.py{command}")


def stage_figures(rounds: list[tuple[float, float, float]], bare: list[tuple[float, float, float]]) -> dict:
    """One stage's medians, and its price: the median over rounds of its
    difference from the bare app's figure in the same round."""
    totals = [s[1] + s[2] for s in rounds]
    vs_bare = [s[1] + s[2] - b[1] - b[2] for s, b in zip(rounds, bare)]
    ordered = sorted(vs_bare)
    return {
        "span_us": median([s[0] for s in rounds]),
        "span_vs_bare_us": median([s[0] - b[0] for s, b in zip(rounds, bare)]),
        "request_thread_us": median([s[1] for s in rounds]),
        "other_threads_us": median([s[2] for s in rounds]),
        "total_us": median(totals),
        "total_spread_us": spread(totals),
        "total_vs_bare_us": median(vs_bare),
        "vs_bare_spread_us": {"q1": ordered[len(ordered) // 4], "q3": ordered[-1 - len(ordered) // 4]},
    }


if __name__ == "__main__":
    main()

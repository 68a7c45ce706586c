"""Where per-request work costs throughput: gunicorn (2 sync workers) + wrk
serving the bare app, the bare app burning ``--burn`` µs of CPU before it
returns the response, and the bare app burning them in the body's
``close()``, after the server has written the response.

    .venv/bin/python bench/bench_placement.py [--rounds 8] [--seconds 3] [--burn 5 20]

It prices a µs of samplez's request path in the throughput of
``bench_throughput.py`` (the same app, server and client), and shows how
much of it work after the response would hide. Writes
``bench/results/placement.json``.
"""

from __future__ import annotations

import argparse
from functools import partial

from _common import median, write_results
from bench_throughput import add_fresh_option, fresh_rounds, run_wrk, start_gunicorn

from samplez.testing import free_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--burn", type=float, nargs="+", default=[5.0, 20.0])
    add_fresh_option(parser)
    args = parser.parse_args()
    # mode -> (the _wsgi_app mode, µs burnt)
    runs = {"bare": ("bare", 0.0)}
    for us in args.burn:
        for where in ("burn_call", "burn_close"):
            runs[f"{where}_{us:g}"] = (where, us)
    modes = list(runs)
    ports = {mode: free_port() for mode in modes}
    starts = {
        mode: partial(start_gunicorn, where, ports[mode], extra_env={"BENCH_BURN_US": str(us)})
        for mode, (where, us) in runs.items()
    }
    rps: dict[str, list[float]] = {mode: [] for mode in modes}
    for round_number, _ in fresh_rounds(starts, ports, args):
        for mode in modes if round_number % 2 == 0 else modes[::-1]:
            rps[mode].append(run_wrk(ports[mode], args.seconds, args.connections)["rps"])
        print(f"round {round_number + 1}: " + "  ".join(f"{m} {rps[m][-1]:.0f}" for m in modes))
    figures: dict[str, dict[str, float]] = {}
    for mode in modes:
        ratios = [x / b for x, b in zip(rps[mode], rps["bare"])]
        figures[mode] = {"rps": median(rps[mode]), "x_bare": median(ratios)}
        print(f"{mode:16s} {figures[mode]['rps']:8.0f} req/s  {figures[mode]['x_bare']:.3f} x bare")
    for us in args.burn:
        call, close = figures[f"burn_call_{us:g}"]["x_bare"], figures[f"burn_close_{us:g}"]["x_bare"]
        print(f"{us:g} µs before the response costs {100 * (1 - call):.1f} %, after it {100 * (1 - close):.1f} %")
    command = f"python bench/bench_placement.py --rounds {args.rounds} --seconds {args.seconds}"
    write_results("placement", {"modes": figures, "rounds": args.rounds}, command)


if __name__ == "__main__":
    main()

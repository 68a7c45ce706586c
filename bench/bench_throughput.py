"""Throughput and latency under wrk: gunicorn (2 sync workers) on loopback
serving a hello-world bare, wrapped by samplez (request metrics on, 3
``set`` calls per request, MemcacheStore on a memcached started here,
background flusher), and instrumented by prometheus_flask_exporter's
``PrometheusMetrics(app)`` instead, the peer a user would pick.

    .venv/bin/python bench/bench_throughput.py [--rounds 9] [--seconds 3] [--app flask|page|wsgi]
        [--fresh-every 1]

The app is the Flask hello-world of ``_wsgi_app`` (default); ``--app page``
is a Flask view rendering a 50-row listing from a Jinja2 template,
``--app wsgi`` a raw WSGI function (no peer: it instruments Flask apps).

The servers run side by side and wrk visits them in turn, round after
round, their order alternating, so drifts of the shared machine hit every
mode alike. Each round starts the servers anew (``--fresh-every`` rounds):
a process's draw of hash seed and address layout moves its throughput by
up to 1 % for as long as it lives. Each ratio (samplez / bare, peer /
bare, samplez / peer) is taken per round, then the median over rounds is
printed with its 95 % bootstrap interval.
Target (SPEC §4): samplez ahead of the peer.
Writes ``bench/results/throughput.json`` (``throughput_<app>.json`` for
another app) and ``throughput.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from _common import RESULTS, ROOT, Memcached, median, median_interval, save_chart, spread, verdict, write_results

from samplez.testing import free_port

MODES = ("bare", "wrapped", "peer")
LABELS = {"bare": "bare app", "wrapped": "samplez", "peer": "prometheus_flask_exporter"}
PERCENTILES = ("50%", "75%", "90%", "99%")
WRK = shutil.which("wrk") or "/usr/bin/wrk"
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def start_gunicorn(
    mode: str,
    port: int,
    memcache: str | None = None,
    workers: int = 2,
    app: str = "wsgi",
    extra_env: dict[str, str] | None = None,
    config: Path | None = None,
) -> subprocess.Popen[bytes]:
    """gunicorn serving ``_wsgi_app`` in ``mode`` (its ``BENCH_*`` settings
    plus ``extra_env``), with the gunicorn ``config`` file if given;
    ``memcache`` is needed by the modes that use samplez."""
    env = {**os.environ, "BENCH_MODE": mode, "BENCH_APP": app, "PYTHONPATH": str(ROOT), **(extra_env or {})}
    if memcache is not None:
        env["SAMPLEZ_MEMCACHE"] = memcache
    args = [GUNICORN, "-w", str(workers), "-k", "sync", "-b", f"127.0.0.1:{port}", "--chdir", str(ROOT / "bench")]
    args += ["--log-level", "warning", *(["-c", str(config)] if config else []), "_wsgi_app:app"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn ({mode}) exited with {proc.returncode}") from None
            time.sleep(0.05)
    raise RuntimeError(f"gunicorn ({mode}) did not start")


@contextmanager
def serving(
    starts: Mapping[str, Callable[[], subprocess.Popen[bytes]]],
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Start one gunicorn per mode; stop every one started, however the
    block ends (also when a later one fails to start)."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for mode, start in starts.items():
            procs[mode] = start()
        yield procs
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=20)


def add_fresh_option(parser: argparse.ArgumentParser) -> None:
    """``--fresh-every N``, for :func:`fresh_rounds`."""

    def positive(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"a whole number of rounds, 1 or more, not {text!r}")
        return int(text)

    parser.add_argument(
        "--fresh-every", type=positive, default=1, metavar="N", help="start every server anew each N rounds (default 1)"
    )


def fresh_rounds(
    starts: Mapping[str, Callable[[], subprocess.Popen[bytes]]],
    ports: Mapping[str, int],
    args: argparse.Namespace,
) -> Iterator[tuple[int, dict[str, subprocess.Popen[bytes]]]]:
    """``(round number, servers)`` for each of ``args.rounds`` rounds, every
    server started anew each ``args.fresh_every`` rounds and warmed by 1 s
    of wrk with ``args.connections``.

    A process's draw of hash seed and address layout moves its throughput
    by up to 1 % (three bare servers in one run spread 1.0 %), and that
    offset stays put for as long as it lives: servers kept for a whole run
    charge it to one mode in every round, fresh ones spread it over all."""
    with ExitStack() as servers:
        for number in range(args.rounds):
            if number % args.fresh_every == 0:
                servers.close()
                procs = servers.enter_context(serving(starts))
                for mode in procs:
                    run_wrk(ports[mode], 1, args.connections)
            yield number, procs


def _duration(text: str) -> float:
    """wrk's '1.23ms' / '850.00us' / '1.02s' as milliseconds."""
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def run_wrk(port: int, seconds: int, connections: int) -> dict[str, float]:
    args = [WRK, "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency", f"http://127.0.0.1:{port}/item/1"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in PERCENTILES:
        found = re.search(rf"^\s+{re.escape(pct)}\s+(\S+)", out, re.M)
        figures[f"p{pct[:-1]}_ms"] = _duration(found.group(1)) if found else float("nan")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    figures["non_2xx"] = float(errors.group(1)) if errors else 0.0
    figures["socket_errors"] = socket_errors.group(1) if socket_errors else ""  # type: ignore[assignment]
    return figures


def stat_seconds(path: str) -> float:
    """User + system CPU seconds in a ``/proc`` ``stat`` file; 0 once the
    process or thread is gone."""
    try:
        with open(path) as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (all threads)."""
    return sum(stat_seconds(f"/proc/{pid}/stat") for pid in pids)


def family(pid: int) -> list[int]:
    """A gunicorn master and its workers."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [pid, *map(int, children.read().split())]
    except OSError:
        return [pid]


def chart(figures: dict[str, dict[str, dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"bare": "#8c8c8c", "wrapped": "#2b7bba", "peer": "#d95f02"}
    modes = [m for m in MODES if m in figures]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    rps = [figures[m]["rps"]["median"] for m in modes]
    short = {"bare": "bare app", "wrapped": "samplez", "peer": "prometheus_flask\n_exporter"}
    bars = left.bar([short[m] for m in modes], rps, color=[colors[m] for m in modes])
    left.bar_label(bars, labels=[f"{v:,.0f}" for v in rps])
    left.set_ylabel("requests / s (median of rounds)")
    left.set_title("Throughput: gunicorn -w 2 + wrk, loopback")
    left.tick_params(axis="x", labelsize=8)
    xs = range(len(PERCENTILES))
    width = 0.27
    for i, mode in enumerate(modes):
        values = [figures[mode][f"p{p[:-1]}_ms"]["median"] for p in PERCENTILES]
        right.bar([x + (i - 1) * width for x in xs], values, width, label=LABELS[mode], color=colors[mode])
    right.set_xticks(list(xs), [f"p{p[:-1]}" for p in PERCENTILES])
    right.set_ylabel("request latency, ms (median of rounds)")
    right.set_title("Latency percentiles under wrk")
    right.legend(fontsize=8)
    save_chart(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    add_fresh_option(parser)
    parser.add_argument("--app", choices=("flask", "page", "wsgi"), default="flask")
    parser.add_argument("--chart-only", action="store_true", help="redraw throughput.png from throughput.json")
    args = parser.parse_args()
    if args.chart_only:
        figures = json.loads((RESULTS / "throughput.json").read_text())["figures"]
        chart(figures, RESULTS / "throughput.png")
        return
    measure(args.app, args)


def ratio_figure(numerators: list[dict[str, float]], denominators: list[dict[str, float]]) -> dict[str, Any]:
    """The median over rounds of one round's requests/s ratio, with its 95 %
    bootstrap interval and every round's ratio."""
    ratios = [n["rps"] / d["rps"] for n, d in zip(numerators, denominators)]
    return {"median": median(ratios), "interval_95": median_interval(ratios), "per_round": ratios[:50]}


def measure(app: str, args: argparse.Namespace) -> None:
    """Alternated rounds of every mode for one kind of app; print and write."""
    name = "throughput" if app == "flask" else f"throughput_{app}"
    modes = ("bare", "wrapped") if app == "wsgi" else MODES
    print(f"-- {app} app")
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    with Memcached() as server:
        ports = {mode: free_port() for mode in modes}
        starts = {mode: partial(start_gunicorn, mode, ports[mode], server.address, app=app) for mode in modes}
        for round_number, procs in fresh_rounds(starts, ports, args):
            order = modes if round_number % 2 == 0 else modes[::-1]
            for mode in order:
                # Server CPU per request (gunicorn and memcached): unlike
                # requests/s it barely moves with the machine's other load.
                pids = family(procs[mode].pid) + [server.proc.pid]  # type: ignore[union-attr]
                cpu_before = cpu_seconds(pids)
                result = run_wrk(ports[mode], args.seconds, args.connections)
                served = result["rps"] * args.seconds
                result["server_cpu_us"] = (cpu_seconds(pids) - cpu_before) / served * 1e6
                runs[mode].append(result)
                rps, p99 = result["rps"], result["p99_ms"]
                print(f"round {round_number + 1} {mode:8s} {rps:9.0f} req/s  p99 {p99:.2f} ms")

    figures: dict[str, Any] = {}
    for mode in modes:
        figures[mode] = {
            field: spread([r[field] for r in runs[mode]])
            for field in ("rps", "server_cpu_us", *(f"p{p[:-1]}_ms" for p in PERCENTILES))
        }
        figures[mode]["non_2xx"] = spread([r["non_2xx"] for r in runs[mode]])
    # Ratios per round (same round = same machine weather), then the median.
    ratios = {"wrapped_x_bare_rps": ratio_figure(runs["wrapped"], runs["bare"])}
    if "peer" in runs:
        ratios["peer_x_bare_rps"] = ratio_figure(runs["peer"], runs["bare"])
        ratios["wrapped_x_peer_rps"] = ratio_figure(runs["wrapped"], runs["peer"])
    summary: dict[str, Any] = {
        **ratios,
        "rounds": args.rounds,
        "seconds_per_run": args.seconds,
        "connections": args.connections,
        "workers": 2,
        "app": app,
    }
    for mode in modes:
        f = figures[mode]
        print(
            f"{LABELS[mode]:26s} {f['rps']['median']:9.0f} req/s  p50 {f['p50_ms']['median']:.2f} ms"
            f"  p99 {f['p99_ms']['median']:.2f} ms  server CPU {f['server_cpu_us']['median']:.0f} µs/request"
        )
    for key, label in (
        ("wrapped_x_bare_rps", "samplez / bare"),
        ("peer_x_bare_rps", "peer / bare"),
        ("wrapped_x_peer_rps", "samplez / peer"),
    ):
        if key in ratios:
            r = ratios[key]
            lo, hi = r["interval_95"]
            target = (
                f"  [{verdict(lo, 1.0, lower_is_better=False)}: samplez ahead]" if key == "wrapped_x_peer_rps" else ""
            )
            print(
                f"{label:26s} {r['median']:.3f}  (95 % interval of the median {lo:.3f}..{hi:.3f},"
                f" {len(r['per_round'])} rounds){target}"
            )
    if app == "flask":
        RESULTS.mkdir(parents=True, exist_ok=True)
        chart(figures, RESULTS / "throughput.png")
    command = f"python bench/bench_throughput.py --app {app} --rounds {args.rounds} --seconds {args.seconds}"
    write_results(name, {"summary": summary, **figures}, command)


if __name__ == "__main__":
    main()

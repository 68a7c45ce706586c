"""Fault soak: gunicorn (2 sync workers) serving the samplez-wrapped app of
``_wsgi_app.py`` under wrk while memcached is killed and restarted, frozen
(SIGSTOP: it accepts connections and never answers) and thawed, and one node
of a three-node cluster is killed and restarted; then 4 workers serve
40,000 requests and are stopped with SIGTERM, and every request must be
counted exactly once.

    .venv/bin/python bench/soak_faults.py [--seconds 15]

Per phase it prints the requests wrk completed, the failed ones (non-2xx
and socket errors; SPEC §5 target: 0) and how long counting took to resume
after the store came back (target: within 2 flush intervals, 1.0 s with the
default 0.5 s interval), and writes ``bench/results/soak_faults.json``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable

from _common import verdict, write_results
from bench_throughput import run_wrk, start_gunicorn

import samplez
from samplez.testing import MemcachedServer, free_port

FLUSH_INTERVAL = 0.5  # the default the gunicorn app runs with
CONNECTIONS = 16
# The configs of _wsgi_app.py, read back here (same names, same store).
POPULAR = samplez.Config("tp_popular", period=600, samples=10_000, by_value=True)


class Node(MemcachedServer):
    """A memcached on a fixed port, so it can come back where it was."""

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port=port, memory_mb=64, threads=1)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def wait_for(check: Callable[[], bool], timeout: float, message: str) -> float:
    """Poll ``check`` every 10 ms; return the seconds it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise RuntimeError(message)
        time.sleep(0.01)
    return time.monotonic() - start


def counted(store: samplez.Store) -> int:
    """Events of ``tp_popular`` in the current and previous period."""
    samplez.configure(store=store)
    return sum(samplez.get(POPULAR, period=p).total_events for p in ("current", "previous"))


def failures(wrk: dict[str, Any]) -> int:
    socket_errors = sum(int(n) for n in re.findall(r"\d+", str(wrk.get("socket_errors", ""))))
    return int(wrk["non_2xx"]) + socket_errors


def under_load(servers: str, seconds: int, fault: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Serve the wrapped app on ``servers``, run wrk for ``seconds`` and
    ``fault()`` meanwhile; return wrk's figures and the fault's."""
    port = free_port()
    gunicorn = start_gunicorn("wrapped", port, servers)
    box: dict[str, Any] = {}
    load = threading.Thread(target=lambda: box.update(run_wrk(port, seconds, CONNECTIONS)))
    try:
        load.start()
        figures = fault()
        load.join()
    finally:
        gunicorn.send_signal(signal.SIGTERM)
        gunicorn.wait(timeout=30)
    rps = box["rps"]
    figures.update(
        {"requests": round(rps * seconds), "rps": rps, "p99_ms": box["p99_ms"], "failed_requests": failures(box)}
    )
    return figures


def no_fault(seconds: int) -> dict[str, Any]:
    """The same load with nothing failing: the baseline for rps and p99."""
    node = Node().start()
    try:
        return under_load(node.address, seconds, lambda: {})
    finally:
        node.kill()


def kill_and_restart(seconds: int) -> dict[str, Any]:
    node = Node().start()
    store = samplez.MemcacheStore(node.address)

    def fault() -> dict[str, Any]:
        time.sleep(seconds / 3)
        node.kill()
        time.sleep(seconds / 3)
        node.start()  # empty: anything counted from now on is new
        resumed = wait_for(lambda: counted(store) > 0, seconds, "counting never resumed")
        return {"down_s": round(seconds / 3, 1), "time_to_resume_s": round(resumed, 3)}

    try:
        return under_load(node.address, seconds, fault)
    finally:
        node.kill()


def freeze_and_thaw(seconds: int) -> dict[str, Any]:
    node = Node().start()
    store = samplez.MemcacheStore(node.address)

    def fault() -> dict[str, Any]:
        time.sleep(seconds / 3)
        node.signal(signal.SIGSTOP)  # connections still accepted by the kernel, never answered
        time.sleep(seconds / 3)
        node.signal(signal.SIGCONT)
        thawed = counted(store)
        resumed = wait_for(lambda: counted(store) > thawed, seconds, "counting never resumed")
        return {"frozen_s": round(seconds / 3, 1), "time_to_resume_s": round(resumed, 3)}

    try:
        return under_load(node.address, seconds, fault)
    finally:
        node.kill()


def cluster_node_lost(seconds: int) -> dict[str, Any]:
    nodes = [Node().start() for _ in range(3)]
    servers = ",".join(n.address for n in nodes)
    victim, live = nodes[1], [nodes[0], nodes[2]]
    keys = [f"samplez:{POPULAR.name}:{int(time.time() // POPULAR.period) + d}:{s}" for d in (0, 1) for s in range(2000)]

    def on(node: Node) -> dict[str, bytes]:
        return samplez.MemcacheStore(node.address).get_many(keys)

    def fault() -> dict[str, Any]:
        time.sleep(seconds / 3)
        before = [on(n) for n in live]
        victim.kill()
        time.sleep(seconds / 3)
        kept = [set(on(n)) >= set(b) for n, b in zip(live, before)]
        victim.start()
        back = wait_for(lambda: bool(on(victim)), seconds, "the restarted node never served again")
        return {
            "live_nodes_keys_intact": all(kept),
            "live_node_keys_checked": sum(len(b) for b in before),
            "time_to_serve_again_s": round(back, 3),
        }

    try:
        return under_load(servers, seconds, fault)
    finally:
        for node in nodes:
            node.kill()


def exact_counts(requests: int, workers: int = 4, clients: int = 8) -> dict[str, Any]:
    """``requests`` through ``workers`` gunicorn workers on one memcached,
    then SIGTERM: every request must be counted once (SPEC §5)."""
    node = Node().start()
    port = free_port()
    gunicorn = start_gunicorn("wrapped", port, node.address, workers=workers)
    failed: list[str] = []

    def client(count: int) -> None:
        for _ in range(count):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/item/1")
                response = conn.getresponse()
                response.read()
                conn.close()
                if response.status != 200:
                    failed.append(str(response.status))
            except OSError as exc:
                failed.append(repr(exc))

    try:
        started = time.monotonic()
        threads = [threading.Thread(target=client, args=(requests // clients,)) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    finally:
        gunicorn.send_signal(signal.SIGTERM)  # what a worker still holds is flushed as it exits
        gunicorn.wait(timeout=60)
    try:
        total = counted(samplez.MemcacheStore(node.address))
    finally:
        node.kill()
    sent = requests // clients * clients
    return {
        "workers": workers,
        "requests": sent,
        "failed_requests": len(failed),
        "events_counted": total,
        "events_lost": sent - total,
        "seconds": round(elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=15, help="wrk duration per phase")
    parser.add_argument("--requests", type=int, default=40_000, help="requests of the exact-count phase")
    args = parser.parse_args()
    phases = {
        "baseline_no_fault": no_fault,
        "memcached_killed_and_restarted": kill_and_restart,
        "memcached_frozen_and_thawed": freeze_and_thaw,
        "cluster_node_killed_and_restarted": cluster_node_lost,
    }
    figures: dict[str, Any] = {"flush_interval_s": FLUSH_INTERVAL, "wrk_connections": CONNECTIONS}
    for name, phase in phases.items():
        result = phase(args.seconds)
        figures[name] = result
        line = (
            f"{name:36s} requests {result['requests']:>7,}  p99 {result['p99_ms']:7.1f} ms  "
            f"failed {result['failed_requests']} [{verdict(result['failed_requests'], 0)}]"
        )
        if "time_to_resume_s" in result:
            resume = result["time_to_resume_s"]
            line += f"  counting again after {resume:.3f}s [{verdict(resume, 2 * FLUSH_INTERVAL)}]"
        if "time_to_serve_again_s" in result:
            line += f"  node back after {result['time_to_serve_again_s']:.3f}s"
            line += f"  live nodes intact: {result['live_nodes_keys_intact']}"
        print(line)
    exact = figures["gunicorn_4_workers_exact"] = exact_counts(args.requests)
    print(
        f"{'gunicorn_4_workers_exact':36s} requests {exact['requests']:>7,}  failed {exact['failed_requests']}  "
        f"counted {exact['events_counted']:,}  lost {exact['events_lost']} [{verdict(exact['events_lost'], 0)}]"
    )
    write_results("soak_faults", figures, " ".join([os.path.basename(sys.executable), *sys.argv]))


if __name__ == "__main__":
    main()

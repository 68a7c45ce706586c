"""Flush cost: events applied per second by one flusher against a real
memcached and a real Redis, same run, and the round trips each flush took.

    .venv/bin/python bench/bench_flush.py [--repeats 7] [--store both|memcache|redis] [--profile]

Two workloads: 50 configs x 1,000 events (SPEC §4: <= 3 round trips per
flush, counted here both by ``FlushSummary.round_trips`` and by counting the
requests written: memcache socket writes, redis-py pipeline sends), and 3
configs x 10,000 events over 64 keys (a busy web worker's half second),
early and late in a period (after a million events). Each is measured
beside the same flush choosing slots with one coin per event, as the
original ``dos.py`` did, alternated, for a same-run speed-up of the
geometric-skip slot choice. ``--store`` picks the servers (default: both,
memcached then Redis, in the same run).
``--profile`` runs pyinstrument over the second one and prints where the
flusher spends its time.
"""

from __future__ import annotations

import argparse
import socket
import time
from typing import Any, Callable

from _common import Memcached, median, spread, verdict, write_results

import samplez
from samplez.engine import engine
from samplez.reservoir import sampling as reservoir
from samplez.store import wire
from samplez.testing import RedisServer, ServerProcess


class CountingSocket:
    """Counts ``sendall`` calls: one per server per round trip."""

    sends = 0

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def sendall(self, data: bytes) -> None:
        CountingSocket.sends += 1
        self._sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def count_socket_writes() -> None:
    connect = wire.Connection._connect

    def counted(self: wire.Connection) -> Any:
        return CountingSocket(connect(self))

    wire.Connection._connect = counted  # type: ignore[method-assign]

    # redis-py writes a pipeline with one send_packed_command (in as many
    # sendall calls as its buffer cuts it into): count the sends.
    import redis.connection

    send = redis.connection.Connection.send_packed_command

    def sent(self: Any, command: Any, check_health: bool = True) -> None:
        CountingSocket.sends += 1
        send(self, command, check_health)

    redis.connection.Connection.send_packed_command = sent  # type: ignore[method-assign]


def queue(configs: list[samplez.Config], events_each: int, keys: list[str]) -> int:
    for config in configs:
        for i in range(events_each):
            samplez.set(config, keys[i % len(keys)], float(i % 997))
    return len(configs) * events_each


def flush_once(configs: list[samplez.Config], events_each: int, keys: list[str]) -> dict[str, float]:
    total = queue(configs, events_each, keys)
    before = CountingSocket.sends
    start = time.perf_counter()
    summary = samplez.flush()
    elapsed = time.perf_counter() - start
    return {
        "rate": summary.applied / elapsed,
        "trips": summary.round_trips,
        "writes": CountingSocket.sends - before,
        "applied": summary.applied / total,
    }


def coin_per_event(first: int, count: int, samples: int, rand: Callable[[], float]) -> dict[int, int]:
    """Algorithm R with one random draw per event (the baseline)."""
    slots: dict[int, int] = {}
    for position in range(count):
        number = first + position
        slot = number if number < samples else int(rand() * (number + 1))
        if slot < samples:
            slots[slot] = position
    return slots


def measure(configs: list[samplez.Config], events_each: int, keys: list[str], repeats: int) -> dict[str, Any]:
    """The current flush and, alternated with it, the same flush drawing one
    coin per event, so the speed-up is a same-run ratio."""
    now: list[dict[str, float]] = []
    old: list[dict[str, float]] = []
    current = reservoir.choose_slots
    for _ in range(repeats):
        now.append(flush_once(configs, events_each, keys))
        reservoir.choose_slots = coin_per_event
        try:
            old.append(flush_once(configs, events_each, keys))
        finally:
            reservoir.choose_slots = current
    return {
        "events_per_flush": len(configs) * events_each,
        "events_per_second": spread([r["rate"] for r in now]),
        "events_per_second_coin_per_event": spread([r["rate"] for r in old]),
        "speedup": median([n["rate"] / o["rate"] for n, o in zip(now, old)]),
        "round_trips": spread([r["trips"] for r in now]),
        "socket_writes": spread([r["writes"] for r in now]),
        "applied_fraction": spread([r["applied"] for r in now]),
    }


def run_on(kind: str, repeats: int, profile: bool) -> dict[str, Any]:
    """Every workload against a fresh server of ``kind``."""
    wide = [samplez.Config(f"flush_wide_{kind}_{i}", period=600, samples=1_000, by_value=True) for i in range(50)]
    busy = [
        samplez.Config(f"flush_latency_{kind}", period=300, samples=10_000, by_value=True),
        samplez.Config(f"flush_popular_{kind}", period=600, samples=10_000, by_value=True),
        samplez.Config(f"flush_status_{kind}", period=60, samples=1_000, by_value=True),
    ]
    keys = [f"/item/{i}" for i in range(64)]
    server: ServerProcess = Memcached() if kind == "memcache" else RedisServer()
    with server:
        # A patient timeout: a 50,000-op pipeline on a loaded machine may
        # stall past the default half second.
        if kind == "memcache":
            store: samplez.Store = samplez.MemcacheStore(server.address, timeout=5)
        else:
            store = samplez.RedisStore(f"redis://{server.address}/0", timeout=5)
        samplez.configure(store=store, flush="request", max_pending=1_000_000, max_pending_bytes=2**30)
        queue(busy, 100, keys)
        samplez.flush()  # warm up the connection
        figures = {
            "wide_50x1000": measure(wide, 1_000, keys, repeats),
            "busy_3x10000": measure(busy, 10_000, keys, repeats),
        }
        # Later in the period each reservoir has seen a million events and
        # few new ones win a slot: where skipping pays.
        queue(busy, 1_000_000, keys)
        samplez.flush()
        figures["late_3x10000"] = measure(busy, 10_000, keys, repeats)
        if profile:
            from pyinstrument import Profiler

            queue(busy, 10_000, keys)
            with Profiler(interval=0.0005) as profiler:
                samplez.flush()
            print(profiler.output_text(unicode=True, color=False, show_all=False))
        engine.stop()
        store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--store", choices=("both", "memcache", "redis"), default="both")
    parser.add_argument("--profile", action="store_true", help="profile the busy-worker flush with pyinstrument")
    args = parser.parse_args()
    count_socket_writes()
    kinds = ("memcache", "redis") if args.store == "both" else (args.store,)
    results = {kind: run_on(kind, args.repeats, args.profile) for kind in kinds}

    for kind, figures in results.items():
        print(f"== {kind}")
        for name, f in figures.items():
            rate, trips, writes = f["events_per_second"]["median"], f["round_trips"]["max"], f["socket_writes"]["max"]
            print(
                f"{name:14s} {f['events_per_flush']:6d} events/flush  {rate:10,.0f} events/s"
                f"  round trips {trips:.0f} (requests written {writes:.0f})  [{verdict(trips, 3)} <= 3]"
            )
            coins = f["events_per_second_coin_per_event"]["median"]
            print(f"{'':14s} one coin per event: {coins:10,.0f} events/s  (skips: {f['speedup']:.2f}x, same run)")
    if len(results) == 2:
        for name in results["memcache"]:
            redis_rate, memcache_rate = (results[k][name]["events_per_second"]["median"] for k in ("redis", "memcache"))
            print(f"redis / memcache events/s, {name}: {redis_rate / memcache_rate:.2f} (medians, same run)")
    write_results("flush", results, f"python bench/bench_flush.py --store {args.store}")


if __name__ == "__main__":
    main()

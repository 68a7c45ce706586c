"""Helpers shared by the bench scripts: a throwaway memcached, medians,
and the results file every script writes.

Run the scripts from the repository root (``./dev bench`` does); each one
prints its figures and writes ``bench/results/<name>.json``.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from samplez.testing import MemcachedServer  # noqa: E402


class Memcached(MemcachedServer):
    """A memcached for the length of a ``with`` block (256 MB by default)."""

    def __init__(self, memory_mb: int = 256, threads: int = 2) -> None:
        super().__init__(memory_mb=memory_mb, threads=threads)


def median(values: list[float]) -> float:
    return statistics.median(values)


def median_interval(values: list[float], draws: int = 2000) -> tuple[float, float]:
    """A 95 % bootstrap interval for the median of ``values`` (seeded, so a
    run's figures reproduce): how far another run of as many rounds could
    land on this noisy machine."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    return medians[int(draws * 0.025)], medians[int(draws * 0.975) - 1]


def ratio_interval(numerators: list[float], denominators: list[float], draws: int = 2000) -> tuple[float, float]:
    """A 95 % bootstrap interval for ``median(numerators) /
    median(denominators)``, two figures measured once per round: rounds are
    resampled whole, so what a round's noise gives both stays paired."""
    rng = random.Random(0)
    rounds = list(zip(numerators, denominators))
    ratios = []
    for _ in range(draws):
        sample = rng.choices(rounds, k=len(rounds))
        ratios.append(statistics.median(n for n, _ in sample) / statistics.median(d for _, d in sample))
    ratios.sort()
    return ratios[int(draws * 0.025)], ratios[int(draws * 0.975) - 1]


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def per_call(fn: Callable[[int], float], calls: int, repeats: int) -> list[float]:
    """Seconds per call over ``repeats`` runs of ``fn(calls)``, which returns
    the elapsed seconds of its timed part."""
    return [fn(calls) / calls for _ in range(repeats)]


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_results(name: str, figures: dict[str, Any], command: str) -> Path:
    """Write ``bench/results/<name>.json`` with the figures, the command
    that produced them and the machine they ran on."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "command": command, "machine": machine(), "figures": figures}
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    print(f"-> {path.relative_to(ROOT)}")
    return path


def verdict(value: float, target: float, lower_is_better: bool = True) -> str:
    ok = value <= target if lower_is_better else value >= target
    return "OK" if ok else "MISSED"


def save_chart(fig: Any, path: Path) -> None:
    """Write a matplotlib figure as the PNG the README shows."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"-> {path.relative_to(ROOT)}")


def call_wsgi(app: Callable[..., Any], requests: int, paths: int = 64) -> None:
    """Call the WSGI ``app`` ``requests`` times in process, for GET
    ``/item/<n>`` over ``paths`` paths, iterating and closing each body as
    a server does."""
    from werkzeug.test import EnvironBuilder

    envs = [EnvironBuilder(path=f"/item/{i}").get_environ() for i in range(paths)]

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        return None

    for i in range(requests):
        body = app(dict(envs[i % paths]), start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()

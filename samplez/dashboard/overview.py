"""The overview the dashboard opens on: the site's traffic, read from the
request metrics (:mod:`samplez.requests`).

Requests per second, the error rate (the share of 5xx responses) and the
latency p50/p95/p99, "now" (the last :data:`NOW_SECONDS`) and per bucket
of the requests counter over its window (a minute each by default), oldest
first; then the busiest endpoints (by requests over the window) and the
slowest (by p95 latency over the window).

Counts come from the rolling counters' buckets, summed over keys. The
latency percentiles come from the latency reservoir's current and previous
periods, each sample placed in a bucket by its own time: a reservoir is a
uniform sample of its period, so each bucket's samples are a sample of that
bucket's requests. A bucket with no requests has a rate of 0 and no error
rate or percentile (``None``: a gap in a chart, not a zero). Rates are over
the part of the window that had traffic, so a site up for ten minutes does
not read as a tenth of its rate.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ..metric import Metric
from ..requests import RequestMetrics, shown_in
from ..reservoir import PERIODS
from ..reservoir.result import percentile
from .formatting import jsonable
from .views import PageContext

__all__ = ["NOW_SECONDS", "QUANTILES", "TOP", "overview_view"]

log = logging.getLogger("samplez")

#: What "now" means: the buckets covering the last five minutes.
NOW_SECONDS = 300
#: Endpoints listed as the busiest and as the slowest.
TOP = 10
QUANTILES = (50, 95, 99)
OFF = (
    "Request metrics are not on this dashboard: they are off (request_metrics=False), "
    "or the dashboard was given sections that leave them out."
)


@dataclass(frozen=True)
class Grid:
    """The buckets of the window ending now, oldest first: bucket ``i``
    starts at ``start + i * step``; the newest is cut short at ``now``."""

    start: float
    step: int
    count: int
    now: float

    def index(self, when: float) -> int | None:
        """The bucket ``when`` falls in, or ``None`` outside the window."""
        i = math.floor((when - self.start) / self.step)
        return i if 0 <= i < self.count else None

    def seconds_since(self, i: int) -> float:
        """Seconds from the start of bucket ``i`` to now (at least one)."""
        return max(self.now - (self.start + i * self.step), 1.0)

    @classmethod
    def of(cls, counter: Any, now: float) -> Grid:
        """The grid of a rolling counter's window at ``now``."""
        first = counter.window_buckets(now)[0]
        return cls(first * counter.bucket_seconds, counter.bucket_seconds, counter.buckets, now)

    @property
    def recent(self) -> int:
        """The index of the first bucket of "now"."""
        return max(self.count - math.ceil(NOW_SECONDS / self.step), 0)


def overview_view(shown: Iterable[Metric], ctx: PageContext) -> dict[str, Any]:
    """The overview of the request metrics among ``shown`` (the metrics on
    the dashboard); a plain message, not an error, when request metrics are
    off or nothing was recorded yet."""
    metrics = shown_in(shown)
    if metrics is None:
        return {"enabled": False, "message": OFF}
    try:
        return jsonable(_overview(metrics, ctx))
    except Exception as exc:
        log.exception("samplez dashboard: reading the request metrics failed")
        return {"enabled": True, "message": None, "error": f"could not read: {type(exc).__name__}"}


def _overview(metrics: RequestMetrics, ctx: PageContext) -> dict[str, Any]:
    grid = Grid.of(metrics.requests, ctx.now)
    requests = _readings(metrics.requests, ctx)
    per_key = {key: reading.total for key, reading in requests.items()}
    counts = _sum_buckets(reading.buckets for reading in requests.values()) or [0] * grid.count
    errors, answered = _status_buckets(metrics, ctx)
    samples = _latency_samples(metrics, ctx, grid)
    active = next((i for i, count in enumerate(counts) if count), grid.count)
    since = grid.seconds_since(active)
    now_from = max(grid.recent, active)
    total = sum(counts)
    return {
        "enabled": True,
        "message": None if total else f"No requests recorded in the last {_minutes(grid)} yet.",
        "metrics": {role: getattr(metrics, role).name for role in ("requests", "statuses", "latency", "slowest")},
        "window": grid.step * grid.count,
        "step": grid.step,
        "start": grid.start,
        "at": grid.now,
        "now_seconds": NOW_SECONDS,
        "requests": total,
        "requests_per_second": total / since,
        "now": _now(grid, now_from, counts, errors, answered, samples),
        "series": _series(grid, counts, errors, answered, samples),
        "busiest": _busiest(per_key, total, since),
        "slowest": _slowest(metrics, ctx, samples),
    }


def _minutes(grid: Grid) -> str:
    minutes = grid.step * grid.count // 60
    return "hour" if minutes == 60 else f"{minutes} minutes"


def _readings(counter: Any, ctx: PageContext) -> dict[str, Any]:
    """Each key the counter lists, with its reading."""
    result = ctx.read(counter)
    return {key: result[key] for key in result.keys()}


def _sum_buckets(series: Iterable[Sequence[float]]) -> list[float]:
    """The element-wise sum of equally long bucket lists."""
    totals: list[float] = []
    for buckets in series:
        if not totals:
            totals = [0] * len(buckets)
        for i, count in enumerate(buckets):
            totals[i] += count
    return totals


def _status_buckets(metrics: RequestMetrics, ctx: PageContext) -> tuple[list[float], list[float]]:
    """Per bucket: 5xx responses, and every response."""
    statuses = _readings(metrics.statuses, ctx)
    answered = _sum_buckets(r.buckets for r in statuses.values()) or [0] * metrics.statuses.buckets
    errors = _sum_buckets(r.buckets for key, r in statuses.items() if key.startswith("5"))
    return errors or [0] * len(answered), answered


def _latency_samples(metrics: RequestMetrics, ctx: PageContext, grid: Grid) -> list[tuple[str, int, float]]:
    """``(key, bucket, ms)`` for every latency sample in the window, from the
    reservoir's previous and current periods."""
    found = []
    for period in PERIODS:
        result = ctx.read(metrics.latency, period=period)
        for key in result.keys():
            for when, value in result.samples(key):
                i = grid.index(when)
                if i is not None:
                    found.append((key, i, value))
    return found


def _quantiles(values: list[float]) -> dict[str, float | None]:
    """``{"p50": ..., "p95": ..., "p99": ...}`` of ``values`` (sorted here)."""
    ordered = sorted(values)
    return {f"p{q}": percentile(ordered, q) if ordered else None for q in QUANTILES}


def _now(
    grid: Grid,
    first: int,
    counts: list[float],
    errors: list[float],
    answered: list[float],
    samples: list[tuple[str, int, float]],
) -> dict[str, Any]:
    """The figures of the buckets from ``first`` to the newest."""
    requests, failed, responses = sum(counts[first:]), sum(errors[first:]), sum(answered[first:])
    recent = [value for _, i, value in samples if i >= first]
    return {
        "seconds": grid.seconds_since(first),
        "requests": requests,
        "requests_per_second": requests / grid.seconds_since(first),
        "errors": failed,
        "error_rate": failed / responses if responses else None,
        "samples": len(recent),
        **_quantiles(recent),
    }


def _series(
    grid: Grid,
    counts: list[float],
    errors: list[float],
    answered: list[float],
    samples: list[tuple[str, int, float]],
) -> dict[str, list[Any]]:
    """One value per bucket, oldest first, for the charts."""
    by_bucket: list[list[float]] = [[] for _ in range(grid.count)]
    for _, i, value in samples:
        by_bucket[i].append(value)
    quantiles = [_quantiles(values) for values in by_bucket]
    return {
        "requests_per_second": [count / min(grid.step, grid.seconds_since(i)) for i, count in enumerate(counts)],
        "error_rate": [e / n if n else None for e, n in zip(errors, answered)],
        **{f"p{q}": [row[f"p{q}"] for row in quantiles] for q in QUANTILES},
    }


def _busiest(per_key: dict[str, int], total: float, since: float) -> list[dict[str, Any]]:
    """The :data:`TOP` endpoints with the most requests over the window."""
    top = sorted(per_key.items(), key=lambda item: (-item[1], item[0]))[:TOP]
    return [
        {"key": key, "requests": count, "rate": count / since, "share": count / total if total else None}
        for key, count in top
        if count
    ]


def _slowest(metrics: RequestMetrics, ctx: PageContext, samples: list[tuple[str, int, float]]) -> list[dict[str, Any]]:
    """The :data:`TOP` endpoints with the highest p95 latency over the
    window, with their p50, p99 and the window's exact maximum."""
    by_key: dict[str, list[float]] = {}
    for key, _, value in samples:
        by_key.setdefault(key, []).append(value)
    stats = {key: _quantiles(values) for key, values in by_key.items()}
    top = sorted(stats, key=lambda key: (-(stats[key]["p95"] or 0.0), key))[:TOP]
    maxima = _readings(metrics.slowest, ctx)
    return [
        {"key": key, "samples": len(by_key[key]), **stats[key], "max": maxima[key].max if key in maxima else None}
        for key in top
    ]

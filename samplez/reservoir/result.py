"""``SampleResult``: what a reservoir holds for one period, and the
statistics derived from it."""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from .config import Config

__all__ = ["SampleResult", "mean", "percentile"]

ROW_FIELDS = ("key", "count", "frequency", "average", "min", "max", "p50", "p95", "p99", "share")


def mean(values: list[float]) -> float:
    """The mean of finite ``values`` (not empty). A sum past the float range
    (two samples of ``1e308``) is taken exactly, as fractions, where
    ``math.fsum`` would raise: slower, and needed only at such magnitudes."""
    try:
        return math.fsum(values) / len(values)
    except OverflowError:
        return statistics.mean(values)


def between(low: float, high: float, fraction: float) -> float:
    """The point ``fraction`` (0-1) of the way from ``low`` to ``high``,
    never outside them. Two values of both signs near the float limit are
    further apart than a float holds: then each is weighted instead."""
    gap = high - low
    point = low + gap * fraction if math.isfinite(gap) else low * (1 - fraction) + high * fraction
    return min(max(point, low), high)


def percentile(ordered: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of sorted values, interpolated
    linearly between the closest ranks."""
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return between(ordered[low], ordered[high], rank - low)


class SampleResult:
    """The samples of one config for one period.

    ``total_events`` counts every event of the period, ``unique_samples``
    the slots read back; a key's frequency is its share of the samples times
    the overall event rate, scaled back by ``1/rate``. With ``key=`` given,
    only that key is kept and ``total_events``/``unique_samples`` are its own
    sample count, so the page does not reveal the overall traffic.
    """

    def __init__(
        self,
        config: Config,
        period_start: float,
        elapsed: float,
        total_events: int,
        samples: Iterable[tuple[str, float, float]],
        key: str | None = None,
        reachable: bool = True,
    ) -> None:
        self.config = config
        self.period_start = period_start
        self.elapsed = elapsed
        self.rate = config.rate
        self.reachable = reachable
        by_key: dict[str, list[tuple[float, float]]] = {}
        count = 0
        for sample_key, when, value in samples:
            by_key.setdefault(sample_key, []).append((when, value))
            count += 1
        self._scale = (total_events / count) if count else 0.0
        if key is not None:
            wanted = config.normalize_key(key)
            by_key = {wanted: by_key[wanted]} if wanted in by_key else {}
            count = total_events = len(by_key.get(wanted, ()))
        self.key = key
        self.total_events = total_events
        self.unique_samples = count
        self._by_key = by_key
        self._sorted: dict[str, list[float]] = {}

    def __repr__(self) -> str:
        return (
            f"<SampleResult {self.config.name} total_events={self.total_events} "
            f"unique_samples={self.unique_samples} keys={len(self._by_key)}>"
        )

    def _values(self, key: str) -> list[float]:
        ordered = self._sorted.get(key)
        if ordered is None:
            ordered = self._sorted[key] = sorted(v for _, v in self._by_key.get(key, ()))
        return ordered

    def keys(self) -> list[str]:
        """Keys with samples, the most sampled first."""
        return sorted(self._by_key, key=lambda k: (-len(self._by_key[k]), k))

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def overall_rate(self) -> float:
        """Events per second over the period so far (scaled by ``1/rate``);
        for a single-key result, that key's frequency."""
        if self.key is not None:
            return self.frequency(self.key) or 0.0
        return self.total_events / self.elapsed / self.rate

    def count(self, key: str) -> int:
        return len(self._by_key.get(key, ()))

    def frequency(self, key: str) -> float | None:
        """Estimated events per second for ``key``."""
        count = self.count(key)
        if not count:
            return None
        return count * self._scale / self.elapsed / self.rate

    def average(self, key: str) -> float | None:
        values = self._values(key)
        return mean(values) if values else None

    def min(self, key: str) -> float | None:
        values = self._values(key)
        return values[0] if values else None

    def max(self, key: str) -> float | None:
        values = self._values(key)
        return values[-1] if values else None

    def percentile(self, key: str, q: float) -> float | None:
        """The ``q``-th percentile (0 <= q <= 100) of ``key``'s values."""
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 <= q <= 100:
            raise ValueError(f"percentile q must be a number in [0, 100], got {q!r}")
        values = self._values(key)
        return percentile(values, q) if values else None

    def samples(self, key: str) -> list[tuple[float, float]]:
        """``(when, value)`` for every sample of ``key``, oldest first."""
        return sorted(self._by_key.get(key, ()))

    def row(self, key: str) -> dict[str, Any]:
        count = self.count(key)
        return {
            "key": key,
            "count": count,
            "frequency": self.frequency(key),
            "average": self.average(key),
            "min": self.min(key),
            "max": self.max(key),
            "p50": self.percentile(key, 50),
            "p95": self.percentile(key, 95),
            "p99": self.percentile(key, 99),
            "share": (count / self.unique_samples) if self.unique_samples else None,
        }

    def rows(
        self, sort: str = "frequency", limit: int | None = None, reverse: bool | None = None
    ) -> list[dict[str, Any]]:
        """One dict per key (fields: ``key``, ``count``, ``frequency``,
        ``average``, ``min``, ``max``, ``p50``, ``p95``, ``p99``, ``share``),
        sorted by ``sort`` (largest first; ``key`` alphabetically), at most
        ``limit`` of them."""
        if sort not in ROW_FIELDS:
            raise ValueError(f"sort must be one of {', '.join(ROW_FIELDS)}, got {sort!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be an int >= 0 or None, got {limit!r}")
        rows = [self.row(key) for key in self._by_key]
        if reverse is None:
            reverse = sort != "key"
        if sort == "key":
            rows.sort(key=lambda r: r["key"], reverse=reverse)
        else:
            # Ties broken by key so pages are stable between reloads.
            rows.sort(key=lambda r: r["key"])
            rows.sort(key=lambda r: r[sort] if r[sort] is not None else -math.inf, reverse=reverse)
        return rows if limit is None else rows[:limit]

    def as_dict(self, sort: str = "frequency", limit: int | None = None) -> dict[str, Any]:
        """A JSON-ready summary and rows."""
        return {
            "config": self.config.name,
            "period_start": self.period_start,
            "elapsed": self.elapsed,
            "total_events": self.total_events,
            "unique_samples": self.unique_samples,
            "unique_keys": len(self._by_key),
            "overall_rate": self.overall_rate(),
            "rate": self.rate,
            "rows": self.rows(sort=sort, limit=limit),
        }

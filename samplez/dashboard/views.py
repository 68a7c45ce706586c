"""What each dashboard page shows, as plain JSON-ready data.

The HTML pages and their ``?format=json`` twins render the same dicts built
here, so the two never disagree. Reading a metric never raises: a store
that cannot be reached or a metric that fails to read becomes a visible
``error`` (and ``reachable: false``) on its table, not a 500 page.
"""

from __future__ import annotations

import calendar
import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from ..definitions import Published, read_published
from ..engine import engine
from ..flush import Context
from ..metric import Metric, Section
from ..registry import registered_metrics, registered_sections
from ..requests import request_sections
from ..reservoir import PERIODS, ROW_FIELDS, SampleResult
from ..store.base import Store
from ..workers import EVERY, read_workers
from .formatting import duration, jsonable, num
from .svg import histogram_bins

__all__ = [
    "ORDERS",
    "PERIODS",
    "Query",
    "calendar_view",
    "health_view",
    "key_view",
    "metric_view",
    "parse_date",
    "visible_sections",
    "worker_view",
]

log = logging.getLogger("samplez")

ORDERS = ("asc", "desc")
#: A worker whose last flush is older than this is flagged: a live one
#: flushes (and sends its heartbeat) every EVERY seconds, idle or not.
STUCK_AFTER = 3 * EVERY
#: What a worker's row shows of its heartbeat (a field it lacks is None).
WORKER_FIELDS = (
    "id",
    "pid",
    "host",
    "started",
    "rss",
    "cpu",
    "requests",
    "pending",
    "applied",
    "dropped",
    "errors",
    "flushes",
    "last_flush",
    "seen",
)
SORTS = ROW_FIELDS
OTHER = "Other"


@dataclass(frozen=True)
class Query:
    """The checked query string of a page."""

    period: str = "current"
    sort: str = "frequency"
    order: str = "desc"
    limit: int = 40
    format: str = "html"


@dataclass
class PageContext(Context):
    """A page's context: where and when to read, and what the page has
    read, so that a metric shown twice on a page (in the overview and in
    its card) is read from the store once."""

    done: dict[tuple[int, str], Any] = field(default_factory=dict)

    def read(self, metric: Metric, period: str | None = None) -> Any:
        """``metric.read`` (of ``period``, for a reservoir), once per page."""
        key = (id(metric), period or "")
        if key not in self.done:
            self.done[key] = metric.read(self, period=period) if period else metric.read(self)
        return self.done[key]


def reader(store: Store | None) -> PageContext:
    """Where and when to read: the given store (or the engine's), with the
    engine's key prefix and clock."""
    return PageContext(store if store is not None else engine.store, engine.space, engine.clock())


def visible_sections(sections: Sequence[Section] | None, store: Store | None = None) -> list[tuple[str, list[Metric]]]:
    """``(title, metrics)`` pairs to show: the given sections, or every
    registered section (request metrics first) plus the metrics in none of
    them under "Other", then what other processes published in ``store``
    (the engine's when ``None``) and this process does not define."""
    if sections is not None:
        return [(s.title, list(s.metrics)) for s in sections]
    first = {id(section) for section in request_sections()}
    registered = sorted(registered_sections(), key=lambda section: id(section) not in first)
    shown = [(s.title, list(s.metrics)) for s in registered]
    grouped = {id(m) for _, metrics in shown for m in metrics}
    others = sorted((m for m in registered_metrics() if id(m) not in grouped), key=lambda m: m.name)
    if others:
        shown.append((OTHER, others))
    by_title = {title: metrics for title, metrics in shown}
    for title, metrics in published(store).sections:
        title = title or OTHER
        if title in by_title:
            by_title[title].extend(metrics)
        else:
            shown.append((title, metrics))
            by_title[title] = metrics
    return shown


def published(store: Store | None) -> Published:
    """What other processes defined in ``store`` (see
    :mod:`samplez.definitions`); nothing when it cannot be read."""
    local = {metric.name: metric for metric in registered_metrics()}
    try:
        return read_published(reader(store), local)
    except Exception:
        log.exception("samplez dashboard: reading the published definitions failed")
        return Published()


def _identity(metric: Metric) -> dict[str, Any]:
    return {"name": metric.name, "title": metric.title, "kind": metric.kind}


def metric_view(metric: Metric, ctx: PageContext, query: Query) -> dict[str, Any]:
    """One metric's table: a reservoir's rows and summary, or a counter's
    keys with value and series."""
    try:
        if metric.kind == "reservoir":
            return _reservoir(metric, ctx, query)
        return _counter(metric, ctx, query)
    except Exception as exc:
        log.exception("samplez dashboard: reading %s failed", metric.name)
        return {**_identity(metric), "reachable": False, "error": f"could not read: {type(exc).__name__}"}


def _reservoir(config: Any, ctx: PageContext, query: Query) -> dict[str, Any]:
    result = ctx.read(config, period=query.period)
    rows = top_rows(result, query.sort, query.limit, reverse=query.order == "desc")
    return {
        **_identity(config),
        "key_name": config.key_name,
        "value_units": config.value_units,
        "period_seconds": config.period,
        "capacity": config.samples,
        "period": query.period,
        "reachable": result.reachable,
        "period_start": result.period_start,
        "elapsed": result.elapsed,
        "total_events": result.total_events,
        "unique_samples": result.unique_samples,
        "unique_keys": len(result.keys()),
        "overall_rate": result.overall_rate(),
        "rate": config.rate,
        "rows": jsonable(rows),
    }


def _sort_value(result: SampleResult, key: str, column: str) -> Any:
    """What ``column`` sorts ``key`` by, computing nothing else."""
    if column in ("count", "frequency", "share"):
        return result.count(key)  # frequency and share grow with the count
    if column == "average":
        return result.average(key)
    if column in ("min", "max"):
        return getattr(result, column)(key)
    return result.percentile(key, int(column[1:]))  # p50, p95, p99


def top_rows(result: SampleResult, sort: str, limit: int, reverse: bool) -> list[dict[str, Any]]:
    """``result.rows(sort, limit, reverse)``, but the full row (seven
    statistics) is computed for the ``limit`` keys shown only, not for
    every key of the reservoir: a page over 10,000 samples stays fast."""
    keys = sorted(result.keys())
    if sort == "key":
        keys.sort(reverse=reverse)
    else:
        values = {key: _sort_value(result, key, sort) for key in keys}
        keys.sort(key=lambda k: values[k] if values[k] is not None else -math.inf, reverse=reverse)
    return [result.row(key) for key in keys[:limit]]


def _reading(reading: Any) -> tuple[Any, list[Any]]:
    value = getattr(reading, "display_value", None)
    series = getattr(reading, "series", None)
    return value, list(series) if series is not None else []


def _counter(metric: Metric, ctx: PageContext, query: Query) -> dict[str, Any]:
    result = ctx.read(metric)
    keys = list(result.keys()) if hasattr(result, "keys") else []
    rows = []
    for key in keys:
        value, series = _reading(result[key])
        rows.append({"key": str(key), "value": jsonable(value), "series": jsonable(series)})
    if query.sort == "key":
        rows.sort(key=lambda r: r["key"], reverse=query.order == "desc")
    else:
        rows.sort(key=lambda r: r["key"])
        rows.sort(key=_by_value, reverse=query.order == "desc")
    view = {**_identity(metric), "reachable": True, "unique_keys": len(rows), "rows": rows[: query.limit]}
    if metric.kind == "calendar":
        view["year"] = time.gmtime(ctx.now).tm_year  # for the link to the calendar API
    return view


def _by_value(row: dict[str, Any]) -> float:
    value = row["value"]
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("-inf")


def key_view(metric: Metric, ctx: Context, key: str, query: Query) -> dict[str, Any]:
    """One key of one metric: a reservoir's samples (newest first, at most
    ``limit``) and their histogram, or a counter's full reading."""
    if metric.kind != "reservoir":
        reading = metric.read(ctx)[key]
        value, series = _reading(reading)
        detail = reading.as_dict() if callable(getattr(reading, "as_dict", None)) else None
        return {
            **_identity(metric),
            "key": key,
            "value": jsonable(value),
            "series": jsonable(series),
            "detail": jsonable(detail),
        }
    config: Any = metric
    # Read the whole period, not key=: the key's share and frequency need
    # the other keys' samples.
    result = config.read(ctx, period=query.period)
    stored = config.normalize_key(key)
    samples = result.samples(stored)
    edges, counts = histogram_bins([value for _, value in samples])
    return {
        **_identity(config),
        "key": key,
        "stored_key": stored,
        "key_name": config.key_name,
        "value_units": config.value_units,
        "period": query.period,
        "reachable": result.reachable,
        "row": jsonable(result.row(stored)) if samples else None,
        "samples_total": len(samples),
        "samples": jsonable([list(sample) for sample in reversed(samples[-query.limit :])]),
        "histogram": {"edges": jsonable(edges), "counts": counts},
    }


def health_view(store: Store | None) -> dict[str, Any]:
    """The flusher's own health, what the store is, and the live workers."""
    store = store if store is not None else engine.store
    flusher = dict(engine.health)
    flusher.update(pending=engine.pending, flush_interval=engine.flush_interval, flush_mode=engine.flush_mode)
    servers = None
    if callable(getattr(store, "health", None)):
        try:
            servers = store.health()  # type: ignore[attr-defined]
        except Exception:
            log.exception("samplez dashboard: store health failed")
    try:
        live = read_workers(reader(store))
    except Exception:
        log.exception("samplez dashboard: reading the workers failed")
        live = []
    now = time.time()
    return {
        "now": now,
        "flusher": jsonable(flusher),
        "workers": jsonable([worker_view(beat, now) for beat in live]),
        "definitions": published(store).problems,
        "store": {
            "kind": store.kind,
            "description": store.describe(),
            "shared": bool(store.shared),
            "servers": jsonable(servers),
        },
    }


def _number(value: object) -> float | None:
    """``value`` if it is a finite number (a heartbeat is another process's
    JSON: trust no field's type)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def worker_view(beat: dict[str, Any], now: float) -> dict[str, Any]:
    """One worker's heartbeat with its uptime and the age of its last
    flush (``now`` and the heartbeat's times are wall-clock seconds), and
    ``problems``: why it looks stuck, if it does. A worker that has not
    flushed yet is as late as its age."""
    started, last_flush = _number(beat.get("started")), _number(beat.get("last_flush"))
    since = last_flush if last_flush is not None else started
    age = now - since if since is not None else None
    dropped = _number(beat.get("dropped"))
    problems = []
    if age is None or age > STUCK_AFTER:
        problems.append(f"no flush for {duration(age)}" if age is not None else "no flush time")
    if dropped:
        problems.append(f"dropped {num(dropped)} events")
    return {
        **{field: beat.get(field) for field in WORKER_FIELDS},
        "uptime": now - started if started is not None else None,
        "last_flush_age": age,
        "problems": problems,
    }


# -- the calendar API -----------------------------------------------------------

_DIGITS = {"year": re.compile(r"[0-9]{1,4}"), "part": re.compile(r"[0-9]{1,2}")}


def parse_date(parts: Iterable[str | None]) -> tuple[int, int | None, int | None, int | None]:
    """``(year, month, day, hour)`` from the path parts (``'02'`` and
    ``'2'`` alike); :class:`ValueError` for an impossible date."""
    year_text, month_text, day_text, hour_text = parts
    if year_text is None or not _DIGITS["year"].fullmatch(year_text) or not 1 <= int(year_text) <= 9999:
        raise ValueError(f"year must be 1-9999, got {year_text!r}")
    year = int(year_text)

    def part(label: str, text: str | None, low: int, high: int) -> int | None:
        if text is None:
            return None
        if not _DIGITS["part"].fullmatch(text) or not low <= int(text) <= high:
            raise ValueError(f"{label} must be {low}-{high}, got {text!r}")
        return int(text)

    month = part("month", month_text, 1, 12)
    day = part("day", day_text, 1, calendar.monthrange(year, month)[1] if month else 31)
    hour = part("hour", hour_text, 0, 23)
    return year, month, day, hour


def calendar_view(
    metric: Metric, ctx: Context, key: str, year: int, month: int | None, day: int | None, hour: int | None
) -> dict[str, Any] | None:
    """The Bootic-style answer for one key (``'all'`` for every key), or
    ``None`` when the counter has no such key: not in its key index and no
    count of its own (the index may have been evicted, the data not)."""
    data = metric.read(ctx, year=year, month=month, day=day, hour=hour)
    segments = data.get(key)
    if segments is None or (key not in data and not any(segments.values())):
        return None
    return {
        "event": metric.name,
        "key": key,
        "year": year,
        "month": month,
        "day": day,
        "hour": hour,
        "data": jsonable(dict(segments)),
    }

"""``GET <dashboard>/metrics``: every metric the dashboard shows, read from
the shared store, in the Prometheus text format 0.0.4 (or OpenMetrics 1.0
when the ``Accept`` header asks for it), so one scrape of any worker sees
the whole site.

Each metric becomes ``samplez_<name>`` (its name with anything but
``[A-Za-z0-9_]`` made ``_``), ``# HELP`` from its title:

=================  ============================================================
reservoir          summary per ``key``: ``quantile`` 0.5/0.95/0.99 of the
                   current period's samples, ``_count``/``_sum`` the period's
                   estimated events and their sum (``_seconds`` and values in
                   seconds when ``value_units`` is ``ms`` or ``s``)
rolling counter    counter ``_total`` (``cumulative``: since first seen) and
                   gauge ``_window`` (the total over the window)
rolling max        gauge (the max over the window)
calendar counter   gauge per ``key`` and ``period`` (hour, day, month, year)
any other counter  gauge of the current step (count, distinct items, bits)
worker heartbeat   gauges ``samplez_worker_*`` labelled ``pid`` and ``host``
=================  ============================================================

Request metrics (every :class:`~samplez.RequestMetrics` of the process,
whatever sections the dashboard shows) carry ``method`` and
``route`` labels (the key ``"<METHOD> <route>"`` split at its first space;
``(other)`` has ``route`` only) or ``status``, and their durations are in
seconds. Label values are keys of live traffic: prometheus_client escapes
backslashes, quotes and newlines, and a lone surrogate becomes ``?``.

Counters are read with ``read_current``: only the values exported (a
stepped counter's current step, a calendar's current periods), never the
history a chart needs. Metrics are read one after the other, each in its
own pipelined round trips (a reservoir one, a counter two: its key index,
then its keys' data; a bitmap three), so a scrape's round trips grow with
the metrics, never with the keys, and its gets grow with the keys by a
fixed number per counter. A scrape that cannot read the store answers 503,
so Prometheus records ``up == 0`` rather than zeros that would read as
counter resets.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any, Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.exposition import generate_latest as text_format
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_format
from prometheus_client.samples import Sample
from werkzeug.wrappers import Response

from ..flush import Context
from ..metric import Metric as SamplezMetric
from ..metric import Section
from ..requests import every_request_metrics
from ..store.base import Op, Store, count_failures
from ..workers import read_workers
from .views import reader, visible_sections

__all__ = ["NAME_PREFIX", "QUANTILES", "metric_name", "metrics_response", "scrape", "wants_openmetrics"]

log = logging.getLogger("samplez")

NAME_PREFIX = "samplez_"
QUANTILES = (0.5, 0.95, 0.99)
TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
#: ``value_units`` read as a duration: how many make a second.
PER_SECOND = {"ms": 1000, "s": 1, "seconds": 1}
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")
#: Heartbeat fields shown per worker: (name, field, help, unit).
WORKER_GAUGES = (
    ("worker_start_time", "started", "When the worker started (UNIX time)", "seconds"),
    ("worker_heartbeat_time", "seen", "The worker's last heartbeat (UNIX time)", "seconds"),
    ("worker_last_flush_time", "last_flush", "The worker's last flush (UNIX time)", "seconds"),
    ("worker_resident_memory", "rss", "Resident memory of the worker", "bytes"),
    ("worker_cpu", "cpu", "CPU time the worker used", "seconds"),
    ("worker_requests", "requests", "Requests the worker served", ""),
    ("worker_pending_events", "pending", "Events waiting in the worker's batch", ""),
    ("worker_applied_events", "applied", "Events the worker applied to the store", ""),
    ("worker_dropped_events", "dropped", "Events the worker dropped (batch full)", ""),
    ("worker_store_errors", "errors", "Store errors the worker met", ""),
    ("worker_flushes", "flushes", "Flushes the worker ran", ""),
)


def metric_name(name: str) -> str:
    """The Prometheus name of a samplez metric: prefixed, and every
    character outside ``[A-Za-z0-9_]`` (samplez names allow ``.`` and
    ``-``) made ``_``."""
    return NAME_PREFIX + _NOT_NAME.sub("_", name)


def wants_openmetrics(accept: str) -> bool:
    """Whether an ``Accept`` header asks for OpenMetrics (with q > 0)."""
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        if media.lower() != "application/openmetrics-text":
            continue
        q = next((p.partition("=")[2] for p in params if p.lower().startswith("q=")), "1")
        try:
            if float(q) > 0:
                return True
        except ValueError:
            continue
    return False


def _label(value: object) -> str:
    text = str(value)
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")


# -- labels -----------------------------------------------------------------------

Labeler = tuple[tuple[str, ...], Callable[[str], list[str]]]


def _by_key(key: str) -> list[str]:
    return [_label(key)]


def _by_route(key: str) -> list[str]:
    method, sep, route = key.partition(" ")
    return [_label(method), _label(route)] if sep else ["", _label(key)]


def _labelers(metrics: Iterable[SamplezMetric]) -> dict[int, Labeler]:
    """How each request metric's keys become labels (others: ``key``)."""
    known = {id(m) for m in metrics}
    labelers: dict[int, Labeler] = {}
    for requests in every_request_metrics():
        for metric in (requests.requests, requests.latency, requests.slowest):
            if id(metric) in known:
                labelers[id(metric)] = (("method", "route"), _by_route)
        if id(requests.statuses) in known:
            labelers[id(requests.statuses)] = (("status",), _by_key)
    return labelers


# -- families -----------------------------------------------------------------------


def _title(metric: SamplezMetric) -> str:
    return _label(metric.title)


def _summary(config: Any, result: Any, labeler: Labeler, per_second: int | None) -> list[Metric]:
    names, labels_of = labeler
    unit = "seconds" if per_second else ""
    per = per_second or 1
    help_text = f"{_title(config)}, current {config.period} s period"
    family = SummaryMetricFamily(metric_name(config.name), help_text, labels=names, unit=unit)
    add = family.samples.append
    for key in sorted(result.keys()):
        labels = dict(zip(names, labels_of(key)))
        for q in QUANTILES:
            add(Sample(family.name, {**labels, "quantile": str(q)}, result.percentile(key, q * 100) / per))
        events = round((result.frequency(key) or 0.0) * result.elapsed)
        add(Sample(family.name + "_sum", labels, (result.average(key) or 0.0) * events / per))
        add(Sample(family.name + "_count", labels, events))
    return [family]


def _rolling(counter: Any, readings: list[tuple[str, Any]], labeler: Labeler) -> list[Metric]:
    names, labels_of = labeler
    name, title = metric_name(counter.name), _title(counter)
    total = CounterMetricFamily(name, f"{title}, since first seen", labels=names)
    window = GaugeMetricFamily(name + "_window", f"{title}, last {counter.window} s", labels=names)
    for key, reading in readings:
        labels = labels_of(key)
        total.add_metric(labels, reading.cumulative)
        window.add_metric(labels, reading.total)
    return [total, window]


def _calendar(counter: Any, readings: list[tuple[str, Any]], labeler: Labeler) -> list[Metric]:
    names, labels_of = labeler
    help_text = f"{_title(counter)}, current UTC hour, day, month and year"
    family = GaugeMetricFamily(metric_name(counter.name), help_text, labels=(*names, "period"))
    for key, reading in readings:
        for period in ("hour", "day", "month", "year"):
            family.add_metric([*labels_of(key), period], getattr(reading, period))
    return [family]


def _gauge(counter: Any, readings: list[tuple[str, Any]], labeler: Labeler, per_second: int | None) -> list[Metric]:
    names, labels_of = labeler
    unit = "seconds" if per_second else ""
    family = GaugeMetricFamily(metric_name(counter.name), _title(counter), labels=names, unit=unit)
    for key, reading in readings:
        family.add_metric(labels_of(key), reading.display_value / (per_second or 1))
    return [family]


def _families(metric: Any, read: Any, labeler: Labeler | None) -> list[Metric]:
    """The families of one metric from what it read."""
    routed = labeler is not None
    labeler = labeler or (("key",), _by_key)
    if metric.kind == "reservoir":
        return _summary(metric, read, labeler, PER_SECOND.get(metric.value_units.strip().lower()))
    if metric.kind == "rolling":
        return _rolling(metric, read, labeler)
    if metric.kind == "calendar":
        return _calendar(metric, read, labeler)
    # A request metric's maxima are durations in ms.
    return _gauge(metric, read, labeler, PER_SECOND["ms"] if routed and metric.kind == "rolling_max" else None)


def _workers(beats: list[dict[str, Any]]) -> list[Metric]:
    families: list[Metric] = []
    for name, field, help_text, unit in WORKER_GAUGES:
        family = GaugeMetricFamily(NAME_PREFIX + name, help_text, labels=("pid", "host"), unit=unit)
        for beat in beats:
            value = beat.get(field)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                family.add_metric([_label(beat.get("pid")), _label(beat.get("host"))], value)
        families.append(family)
    return families


# -- a scrape -----------------------------------------------------------------------


class Scrape:
    """One scrape's families (in order, no two claiming a sample name),
    its round trips and how many of its reads failed."""

    def __init__(self, families: list[Metric], round_trips: int, failures: int) -> None:
        self.families = families
        self.round_trips = round_trips
        self.failures = failures

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)

    def render(self, openmetrics: bool) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)  # type: ignore[arg-type]
        return openmetrics_format(registry) if openmetrics else text_format(registry)  # type: ignore[no-any-return]


def _claims(family: Metric) -> set[str]:
    """The sample names a family may write."""
    extra = {"counter": ("_total", "_created"), "summary": ("_count", "_sum", "_created")}
    return {family.name, *(family.name + suffix for suffix in extra.get(family.type, ()))}


class _Counted(Store):
    """The store, counting a scrape's round trips and failed reads."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.kind, self.shared = store.kind, store.shared
        self.round_trips = 0
        self.failures = 0

    def execute(self, ops: Sequence[Op]) -> tuple[list[Any], int]:
        results, trips = self.store.execute(ops)
        self.round_trips += trips
        self.failures += count_failures(results)
        return results, trips


def _read(metric: Any, ctx: Context) -> Any:
    if metric.kind == "reservoir":
        return metric.read(ctx, period="current")
    return list(metric.read_current(ctx).items())


def scrape(sections: Sequence[Section] | None, store: Store | None) -> Scrape:
    """Read the request metrics the middleware records (whatever sections
    the dashboard shows), every metric of ``sections`` (``None``: every
    registered one) and the workers' heartbeats. A metric that fails to
    read is logged and left out; the others are still shown."""
    shown = [m for requests in every_request_metrics() for m in requests.metrics]
    shown += [m for _, ms in visible_sections(sections, store) for m in ms]
    metrics = list({id(m): m for m in shown}.values())
    at = reader(store)
    counted = _Counted(at.store)
    ctx = Context(counted, at.space, at.now)
    labelers = _labelers(metrics)
    families: list[Metric] = []
    claimed: set[str] = set()
    for metric in metrics:
        try:
            new = _families(metric, _read(metric, ctx), labelers.get(id(metric)))
        except Exception:
            log.exception("samplez /metrics: reading %s failed; left out", metric.name)
            continue
        families += _unclaimed(new, claimed, metric.name)
    try:
        families += _unclaimed(_workers(read_workers(ctx)), claimed, "workers")
    except Exception:
        log.exception("samplez /metrics: reading the workers failed; left out")
    return Scrape(families, counted.round_trips, counted.failures)


def _unclaimed(new: list[Metric], claimed: set[str], owner: str) -> list[Metric]:
    """``new`` if none of its names is taken (two samplez names can map to
    one Prometheus name: ``a.b`` and ``a_b``), else nothing, logged."""
    names = set().union(*map(_claims, new))
    if names & claimed:
        log.error("samplez /metrics: %s left out: %s already taken", owner, ", ".join(sorted(names & claimed)))
        return []
    claimed |= names
    return new


def metrics_response(environ: dict[str, Any], sections: Sequence[Section] | None, store: Store | None) -> Response:
    """The ``/metrics`` response: 200 with the exposition, or 503 (plain
    text) when reads of the store failed."""
    result = scrape(sections, store)
    if result.failures:
        message = f"503 the store could not be read ({result.failures} reads failed)\n"
        return Response(message, status=503, mimetype="text/plain")
    openmetrics = wants_openmetrics(environ.get("HTTP_ACCEPT", ""))
    return Response(result.render(openmetrics), content_type=OPENMETRICS if openmetrics else TEXT)

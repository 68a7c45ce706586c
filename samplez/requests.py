"""Request metrics with no code: what the middleware records by itself for
every request it serves.

Each request is keyed ``"<METHOD> <route>"`` (see :mod:`samplez.routes`)
and counted four ways, folded with the request's own batch as the
response closes: in ``requests`` (a rolling count), ``statuses`` (a rolling
count per status code), ``latency`` (a reservoir of durations in ms, from
the call until the response is closed) and ``slowest`` (a rolling max of
the same durations). The windows cover an hour in minute buckets and the
reservoir an hour, so the overview can chart the last hour.
"""

from __future__ import annotations

import weakref
from typing import Any, Iterable

from . import checks
from .counters import RollingCounter, RollingMax
from .metric import Metric, Section
from .reservoir import Config
from .routes import UNMATCHED, collapse

__all__ = [
    "RequestMetrics",
    "default_request_metrics",
    "every_request_metrics",
    "leading",
    "request_key",
    "request_sections",
    "shown_in",
]

#: Methods counted under their own name; any other is ``OTHER``, so that
#: made-up methods cannot add keys.
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"))
SECTION = "Requests"
#: Every RequestMetrics alive, so readers (the overview, the Prometheus
#: exposition) know which metrics are request metrics.
_made: weakref.WeakSet[RequestMetrics] = weakref.WeakSet()


class RequestMetrics:
    """The metrics the middleware records for every request.

    :param prefix: the start of the four metrics' names (``<prefix>_requests``,
        ``_statuses``, ``_latency``, ``_slowest``).
    :param window: seconds the rolling counts and maxima cover, in
        ``buckets`` buckets.
    :param period: seconds of one latency reservoir; ``samples`` its size.
    :param max_keys: endpoints listed per metric; more count under
        ``(other)``.

    >>> app = samplez.Middleware(app, request_metrics=samplez.RequestMetrics(prefix='http_api'))
    """

    def __init__(
        self,
        prefix: str = "http",
        window: int = 3600,
        buckets: int = 60,
        period: int = 3600,
        samples: int = 10_000,
        max_keys: int = 100,
    ) -> None:
        checks.name("prefix", prefix)
        self.requests = RollingCounter(
            f"{prefix}_requests", window, buckets, max_keys=max_keys, title="Requests by endpoint"
        )
        self.statuses = RollingCounter(f"{prefix}_statuses", window, buckets, title="Responses by status")
        self.latency = Config(
            f"{prefix}_latency",
            period=period,
            samples=samples,
            by_value=True,
            max_key_length=200,
            title="Latency by endpoint",
            key_name="Endpoint",
            value_units="ms",
        )
        self.slowest = RollingMax(
            f"{prefix}_slowest", window, buckets, max_keys=max_keys, title="Slowest response by endpoint"
        )
        self.section = Section(SECTION, self.requests, self.statuses, self.latency, self.slowest)
        _made.add(self)

    @property
    def metrics(self) -> tuple[Any, ...]:
        return self.section.metrics

    def sets(self, key: str, status: str, ms: float) -> tuple[tuple[int, str, Any], ...]:
        """What one request, ``ms`` long, adds: ``(slot, key, value)`` for
        each of the four metrics (the request's batch folds them in)."""
        return (
            (self.requests.slot, key, 1),
            (self.statuses.slot, status, 1),
            (self.latency.slot, key, ms),
            (self.slowest.slot, key, ms),
        )

    def __repr__(self) -> str:
        return f"<RequestMetrics {', '.join(m.name for m in self.metrics)}>"


def request_key(method: str, route: str | None, path: str, status: str) -> str:
    """``"<METHOD> <route>"``: the route a framework or the handler named,
    else :data:`~samplez.routes.UNMATCHED` for a 404, else the collapsed
    path."""
    if method not in METHODS:
        method = "OTHER"
    if route is None:
        route = UNMATCHED if status == "404" else collapse(path or "/")
    return f"{method} {route}"


_default: RequestMetrics | None = None


def default_request_metrics() -> RequestMetrics:
    """The process's one default :class:`RequestMetrics` (every middleware
    made with ``request_metrics=True`` shares it: names are unique)."""
    global _default
    if _default is None:
        _default = RequestMetrics()
    return _default


def every_request_metrics() -> list[RequestMetrics]:
    """Every live :class:`RequestMetrics` of the process, the default first,
    so that readers (the overview, the Prometheus exposition) know which
    metrics are request metrics."""
    made = sorted(_made, key=lambda m: m.requests.name)
    return ([_default] if _default is not None else []) + [m for m in made if m is not _default]


def request_sections() -> list[Section]:
    """The sections of every RequestMetrics alive, the default's first."""
    return [metrics.section for metrics in every_request_metrics()]


def leading(sections: Any, metrics: RequestMetrics | None) -> Any:
    """A dashboard's ``sections`` with ``metrics``' section first, so that
    a middleware given sections of its own still opens on the overview of
    its requests. ``None`` (every section) and anything but a Section or an
    iterable of them (the dashboard refuses it) are returned as given."""
    if sections is None or metrics is None:
        return sections
    if isinstance(sections, Section):
        sections = (sections,)
    elif isinstance(sections, (str, bytes)) or not isinstance(sections, Iterable):
        return sections
    given = tuple(sections)
    return given if metrics.section in given else (metrics.section, *given)


def shown_in(metrics: Iterable[Metric]) -> RequestMetrics | None:
    """The :class:`RequestMetrics` whose four metrics are all among
    ``metrics`` (what a dashboard shows), the process's default first;
    ``None`` when there is none (request metrics off, or not shown)."""
    shown = {id(metric) for metric in metrics}
    for candidate in every_request_metrics():
        if all(id(metric) in shown for metric in candidate.metrics):
            return candidate
    return None

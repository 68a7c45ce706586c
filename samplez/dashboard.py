"""``Dashboard``: the built-in status pages of samplez as a WSGI app.

Pages (each with a JSON twin via ``?format=json``):

``/``                          every section: reservoir tables, counters, health
``/config/<name>``             one config or counter
``/config/<name>/key?key=...`` one key: its samples and histogram, or its reading
``/health``                    the flusher and the store
``/api/stats/track/<key|all>/<name>/<year>[/<month>[/<day>[/<hour>]]]``
                               a calendar counter's counts (JSON only)

Query string: ``period=current|previous``, ``sort=<column>``,
``order=asc|desc``, ``limit=<1..100000>`` (default 40), ``format=html|json``.
Anything else in a bad shape is a 4xx page; an unexpected exception is
logged and answered with a plain 500 page without traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from typing import Any, Callable, Iterable

import jinja2
from werkzeug.exceptions import BadRequest, HTTPException, NotFound
from werkzeug.routing import Map, MapAdapter, RequestRedirect, Rule
from werkzeug.wrappers import Request, Response

from . import access, dashboard_format, svg
from .dashboard_views import (
    ORDERS,
    PERIODS,
    SORTS,
    Query,
    calendar_view,
    health_view,
    key_view,
    metric_view,
    parse_date,
    reader,
    visible_sections,
)
from .errors import ConfigError
from .metric import Metric, Section
from .result import ROW_FIELDS
from .store.base import Store

__all__ = ["Dashboard", "SECURITY_HEADERS"]

log = logging.getLogger("samplez")

SECURITY_HEADERS = {
    # No script at all: sorting and paging are links, charts are inline SVG.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MAX_LIMIT = 100_000
_LIMIT_RE = re.compile(r"[0-9]{1,6}")
_HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE_DIRS = (os.path.join(_HERE, "templates"), os.path.join(os.path.dirname(_HERE), "templates"))

_DATE_PARTS = ("year", "month", "day", "hour")
_TRACK = "/api/stats/track/<key>/<name>/<year>"
ROUTES = [
    ("/", "index", None),
    ("/health", "health", None),
    ("/config/<name>", "metric", None),
    ("/config/<name>/key", "key", None),
    ("/static/samplez.css", "css", None),
    ("/favicon.ico", "favicon", None),
    (_TRACK, "calendar", {"month": None, "day": None, "hour": None}),
    (_TRACK + "/<month>", "calendar", {"day": None, "hour": None}),
    (_TRACK + "/<month>/<day>", "calendar", {"hour": None}),
    (_TRACK + "/<month>/<day>/<hour>", "calendar", None),
]
# Read-only pages: anything but GET (and HEAD) is a 405.
URL_MAP = Map([Rule(path, endpoint=name, defaults=defaults, methods=["GET"]) for path, name, defaults in ROUTES])


@functools.cache
def environment() -> jinja2.Environment:
    """The jinja2 environment: templates from the installed package or the
    source tree, every ``{{ }}`` escaped."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([d for d in TEMPLATE_DIRS if os.path.isdir(d)]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        num=dashboard_format.num,
        pct=dashboard_format.pct,
        duration=dashboard_format.duration,
        when=dashboard_format.when,
    )
    env.globals.update(
        sparkline=svg.sparkline,
        bars=svg.bars,
        histogram=svg.histogram,
        meter=svg.meter,
        fmt=dashboard_format.num,
        COLUMNS=COLUMNS,
        HOURS=[f"{hour:02d}:00" for hour in range(24)],
    )
    return env


#: Reservoir table columns: (row field, header; None = the config's key_name).
COLUMNS = (
    ("key", None),
    ("count", "Samples"),
    ("frequency", "Frequency /s"),
    ("average", "Average"),
    ("min", "Min"),
    ("max", "Max"),
    ("p50", "p50"),
    ("p95", "p95"),
    ("p99", "p99"),
    ("share", "Share"),
)
assert tuple(c for c, _ in COLUMNS) == ROW_FIELDS


class Dashboard:
    """The samplez dashboard as a standalone WSGI app (the middleware mounts
    the same app at its ``dashboard_path``).

    :param sections: the sections to show (a :class:`~samplez.Section` or an
        iterable of them); ``None`` shows every registered section, and
        configs and counters in no section under "Other".
    :param store: the store to read (default: the one given to
        :func:`samplez.configure`); read with the engine's prefix and clock.
    :param auth: ``None`` answers loopback clients only (403 otherwise), a
        callable ``(environ) -> bool`` decides per request, and
        ``('user', 'password')`` asks for HTTP basic auth.

    >>> from werkzeug.middleware.dispatcher import DispatcherMiddleware
    >>> app = DispatcherMiddleware(app, {'/stats': samplez.Dashboard(auth=('ops', 's3cret'))})
    """

    def __init__(self, sections: Any = None, store: Store | None = None, auth: Any = None) -> None:
        self.sections = _check_sections(sections)
        if store is not None and not isinstance(store, Store):
            raise ConfigError(f"store must be a samplez store (MemcacheStore, MemoryStore) or None, got {store!r}")
        self.store = store
        self._guard = access.guard(auth)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            response = self._respond(environ)
        except Exception:
            log.exception("samplez dashboard: unexpected error on %r", environ.get("PATH_INFO"))
            response = Response("500 Internal Server Error\n", status=500, mimetype="text/plain")
        response.headers.update(SECURITY_HEADERS)
        return response(environ, start_response)

    # -- dispatch -------------------------------------------------------------

    def _respond(self, environ: dict[str, Any]) -> Response:
        refused = self._guard(environ)
        if refused is not None:
            return refused
        request = Request(environ)
        try:
            adapter = URL_MAP.bind_to_environ(environ)
        except HTTPException as exc:  # e.g. a Host header no URL can hold
            return Response(f"{exc.code} {exc.name}\n", status=exc.code or 400, mimetype="text/plain")
        as_json = request.args.get("format") == "json" or request.path.startswith("/api/")
        try:
            endpoint, values = adapter.match()
            if endpoint == "css":
                return Response(_stylesheet(), mimetype="text/css")
            if endpoint == "favicon":  # browsers ask for it on the JSON pages
                return Response(status=204)
            if endpoint == "calendar":
                return self._calendar(**values)
            query = parse_query(request.args)
            page = _Page(adapter, query, endpoint, values)
            return getattr(self, "_" + endpoint)(page, request, **values)
        except RequestRedirect as redirect:
            return redirect.get_response(environ)  # type: ignore[return-value]
        except HTTPException as exc:
            return _error(exc.code or 500, exc.description or exc.name, as_json, adapter)

    def _metric_named(self, name: str) -> Metric:
        for _, metrics in visible_sections(self.sections):
            for metric in metrics:
                if metric.name == name:
                    return metric
        raise NotFound(f"no config or counter named {_clip(name)} on this dashboard")

    def _index(self, page: _Page, request: Request) -> Response:
        ctx = reader(self.store)
        sections: list[dict[str, Any]] = [
            {"title": title, "metrics": [metric_view(m, ctx, page.query) for m in metrics]}
            for title, metrics in visible_sections(self.sections)
        ]
        unreachable = [m["name"] for s in sections for m in s["metrics"] if not m["reachable"]]
        data = {**page.query_dict(), "sections": sections, "unreachable": unreachable}
        data["health"] = health_view(self.store)
        return page.render("index.html", data)

    def _metric(self, page: _Page, request: Request, name: str) -> Response:
        metric = self._metric_named(name)
        data = {**page.query_dict(), "metric": metric_view(metric, reader(self.store), page.query)}
        return page.render("metric.html", data)

    def _key(self, page: _Page, request: Request, name: str) -> Response:
        metric = self._metric_named(name)
        key = request.args.get("key")
        if not key:
            raise BadRequest("the key parameter is missing: /config/<name>/key?key=<url-encoded key>")
        page.values["key"] = key
        data = {**page.query_dict(), "key": key_view(metric, reader(self.store), key, page.query)}
        return page.render("key.html", data)

    def _health(self, page: _Page, request: Request) -> Response:
        return page.render("health.html", {"health": health_view(self.store)})

    def _calendar(self, key: str, name: str, **parts: str | None) -> Response:
        try:
            metric = self._metric_named(name)
        except NotFound as exc:
            return _json({"error": exc.description, "status": 404}, 404)
        if metric.kind != "calendar":
            return _json({"error": f"{_clip(name)} is not a calendar counter", "status": 404}, 404)
        try:
            year, month, day, hour = parse_date(parts[p] for p in _DATE_PARTS)
        except ValueError as exc:
            return _json({"error": str(exc), "status": 404}, 404)
        data = calendar_view(metric, reader(self.store), key, year, month, day, hour)
        if data is None:
            return _json({"error": f"no key {_clip(key)} in {name}", "status": 404}, 404)
        return _json(data)


class _Page:
    """One request's page: its query, its links and its rendering."""

    def __init__(self, adapter: MapAdapter, query: Query, endpoint: str = "index", values: Any = None) -> None:
        self.adapter = adapter
        self.query = query
        self.endpoint = endpoint
        self.values: dict[str, Any] = dict(values or {})

    def here(self, **changes: Any) -> str:
        """This page again, with some query values changed."""
        return self.url(self.endpoint, **{**self.values, **changes})

    def query_dict(self) -> dict[str, Any]:
        q = self.query
        return {"period": q.period, "sort": q.sort, "order": q.order, "limit": q.limit}

    def url(self, endpoint: str, **values: Any) -> str:
        """A link that keeps this page's period, sort and limit."""
        q = self.query
        params: dict[str, Any] = {}
        if q.period != "current":
            params["period"] = q.period
        if (q.sort, q.order) != ("frequency", "desc"):
            params.update(sort=q.sort, order=q.order)
        if q.limit != Query.limit:
            params["limit"] = q.limit
        params.update(values)
        params = {k: v for k, v in params.items() if v is not None}
        return self.adapter.build(endpoint, params)

    def sort_url(self, endpoint: str, column: str, **values: Any) -> str:
        """The header link of ``column``: sort by it, or flip the order."""
        if column == self.query.sort:
            order = "asc" if self.query.order == "desc" else "desc"
        else:
            order = "asc" if column == "key" else "desc"
        return self.url(endpoint, sort=column, order=order, **values)

    def render(self, template: str, data: dict[str, Any]) -> Response:
        if self.query.format == "json":
            return _json(data)
        html = environment().get_template(template).render(data=data, page=self)
        return Response(html, mimetype="text/html")


def parse_query(args: Any) -> Query:
    """The checked query string; :class:`BadRequest` naming the bad value."""
    fmt = args.get("format", "html")
    if fmt not in ("html", "json"):
        raise BadRequest(f"format must be html or json, got {_clip(fmt)}")
    period = args.get("period", "current")
    if period not in PERIODS:
        raise BadRequest(f"period must be current or previous, got {_clip(period)}")
    sort = args.get("sort", "frequency")
    if sort not in SORTS:
        raise BadRequest(f"sort must be one of {', '.join(SORTS)}, got {_clip(sort)}")
    order = args.get("order", "asc" if sort == "key" else "desc")
    if order not in ORDERS:
        raise BadRequest(f"order must be asc or desc, got {_clip(order)}")
    raw_limit = args.get("limit", str(Query.limit))
    if not _LIMIT_RE.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT:,}, got {_clip(raw_limit)}")
    return Query(period=period, sort=sort, order=order, limit=int(raw_limit), format=fmt)


def _check_sections(sections: Any) -> tuple[Section, ...] | None:
    if sections is None:
        return None
    if isinstance(sections, Section):
        return (sections,)
    if isinstance(sections, (str, bytes)) or not isinstance(sections, Iterable):
        raise ConfigError(f"sections must be None, a Section or an iterable of Sections, got {sections!r}")
    checked = tuple(sections)
    for section in checked:
        if not isinstance(section, Section):
            raise ConfigError(f"sections must hold Section objects, got {section!r}")
    return checked


def _clip(text: str, length: int = 80) -> str:
    """User text quoted for an error message, cut to ``length`` characters."""
    return repr(text if len(text) <= length else text[:length] + "…")


def _json(data: Any, status: int = 200) -> Response:
    body = json.dumps(dashboard_format.jsonable(data), allow_nan=False, separators=(",", ":"))
    return Response(body, status=status, mimetype="application/json")


def _error(status: int, message: str, as_json: bool, adapter: MapAdapter) -> Response:
    if as_json:
        return _json({"error": message, "status": status}, status)
    html = environment().get_template("error.html").render(status=status, message=message, page=_Page(adapter, Query()))
    return Response(html, status=status, mimetype="text/html")


@functools.lru_cache(maxsize=1)
def _stylesheet() -> str:
    env = environment()
    assert env.loader is not None
    return env.loader.get_source(env, "samplez.css")[0]

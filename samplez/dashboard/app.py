"""The dashboard's pages: the WSGI app behind :class:`samplez.Dashboard`
(``dashboard.py``), imported with the first dashboard made.

Pages (each with a JSON twin via ``?format=json``):

``/``                          the overview (traffic, endpoints, workers), then every section
``/config/<name>``             one config or counter
``/config/<name>/key?key=...`` one key: its samples and histogram, or its reading
``/health``                    the flusher and the store
``/metrics``                   every metric for Prometheus (``exposition``);
                               access by ``metrics_auth`` when given
``/api/stats/track/<key|all>/<name>/<year>[/<month>[/<day>[/<hour>]]]``
                               a calendar counter's counts (JSON only)

Query string: ``period=current|previous``, ``sort=<column>``,
``order=asc|desc``, ``limit=<1..100000>`` (default 40), ``format=html|json``.
Anything else in a bad shape is a 4xx page; an unexpected exception is
logged and answered with a plain 500 page without traceback.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

from werkzeug.exceptions import BadRequest, HTTPException, NotFound
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.wrappers import Request, Response

from ..errors import ConfigError
from ..metric import Metric, Section
from ..store.base import Store
from . import access
from .overview import overview_view
from .render import Page, clip, error_page, json_response, parse_query, stylesheet
from .views import calendar_view, health_view, key_view, metric_view, parse_date, reader, visible_sections

__all__ = ["DashboardApp", "SECURITY_HEADERS"]

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

_DATE_PARTS = ("year", "month", "day", "hour")
_TRACK = "/api/stats/track/<key>/<name>/<year>"
ROUTES = [
    ("/", "index", None),
    ("/health", "health", None),
    ("/metrics", "metrics", None),
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


class DashboardApp:
    """The pages of one :class:`samplez.Dashboard`; its arguments are checked here."""

    def __init__(
        self, sections: Any = None, store: Store | None = None, auth: Any = None, metrics_auth: Any = None
    ) -> None:
        self.sections = _check_sections(sections)
        if store is not None and not isinstance(store, Store):
            raise ConfigError(
                f"store must be a samplez store (MemcacheStore, RedisStore, MemoryStore) or None, got {store!r}"
            )
        self.store = store
        self._guard = access.guard(auth)
        self._metrics_guard = self._guard if metrics_auth is None else access.guard(metrics_auth)

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
        metrics = environ.get("PATH_INFO") == "/metrics"
        refused = (self._metrics_guard if metrics else self._guard)(environ)
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
                return Response(stylesheet(), mimetype="text/css")
            if endpoint == "favicon":  # browsers ask for it on the JSON pages
                return Response(status=204)
            if endpoint == "calendar":
                return self._calendar(**values)
            if endpoint == "metrics":
                from .exposition import metrics_response  # prometheus_client, for scrapes only

                return metrics_response(environ, self.sections, self.store)
            query = parse_query(request.args)
            page = Page(adapter, query, endpoint, values)
            return getattr(self, "_" + endpoint)(page, request, **values)
        except RequestRedirect as redirect:
            return redirect.get_response(environ)  # type: ignore[return-value]
        except HTTPException as exc:
            return error_page(exc.code or 500, exc.description or exc.name, as_json, adapter)

    def _metric_named(self, name: str) -> Metric:
        for _, metrics in visible_sections(self.sections, self.store):
            for metric in metrics:
                if metric.name == name:
                    return metric
        raise NotFound(f"no config or counter named {clip(name)} on this dashboard")

    def _index(self, page: Page, request: Request) -> Response:
        ctx = reader(self.store)
        shown = visible_sections(self.sections, self.store)
        sections: list[dict[str, Any]] = [
            {"title": title, "metrics": [metric_view(m, ctx, page.query) for m in metrics]} for title, metrics in shown
        ]
        unreachable = [m["name"] for s in sections for m in s["metrics"] if not m["reachable"]]
        data = {**page.query_dict(), "sections": sections, "unreachable": unreachable}
        data["overview"] = overview_view([m for _, metrics in shown for m in metrics], ctx)
        data["health"] = health_view(self.store)
        data["workers"] = data["health"]["workers"]
        return page.render("index.html", data)

    def _metric(self, page: Page, request: Request, name: str) -> Response:
        metric = self._metric_named(name)
        data = {**page.query_dict(), "metric": metric_view(metric, reader(self.store), page.query)}
        return page.render("metric.html", data)

    def _key(self, page: Page, request: Request, name: str) -> Response:
        metric = self._metric_named(name)
        key = request.args.get("key")
        if not key:
            raise BadRequest("the key parameter is missing: /config/<name>/key?key=<url-encoded key>")
        page.values["key"] = key
        data = {**page.query_dict(), "key": key_view(metric, reader(self.store), key, page.query)}
        return page.render("key.html", data)

    def _health(self, page: Page, request: Request) -> Response:
        return page.render("health.html", {"health": health_view(self.store)})

    def _calendar(self, key: str, name: str, **parts: str | None) -> Response:
        try:
            metric = self._metric_named(name)
        except NotFound as exc:
            return json_response({"error": exc.description, "status": 404}, 404)
        if metric.kind != "calendar":
            return json_response({"error": f"{clip(name)} is not a calendar counter", "status": 404}, 404)
        try:
            year, month, day, hour = parse_date(parts[p] for p in _DATE_PARTS)
        except ValueError as exc:
            return json_response({"error": str(exc), "status": 404}, 404)
        data = calendar_view(metric, reader(self.store), key, year, month, day, hour)
        if data is None:
            return json_response({"error": f"no key {clip(key)} in {name}", "status": 404}, 404)
        return json_response(data)


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

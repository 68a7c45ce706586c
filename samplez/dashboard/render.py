"""How the dashboard's pages are rendered: the jinja2 templates (escaped),
the links that keep a page's query, the query string's checks, JSON.

Templates live in the top-level ``templates/`` folder, installed as the
package ``samplez.templates``; both places are searched, so the dashboard
works installed and from a source checkout.
"""

from __future__ import annotations

import functools
import json
import os
import re
from typing import Any

import jinja2
from werkzeug.exceptions import BadRequest
from werkzeug.routing import MapAdapter
from werkzeug.wrappers import Response

from ..reservoir import ROW_FIELDS
from . import formatting, svg
from .views import ORDERS, PERIODS, SORTS, Query

__all__ = [
    "COLUMNS",
    "MAX_LIMIT",
    "Page",
    "clip",
    "environment",
    "error_page",
    "json_response",
    "parse_query",
    "stylesheet",
]

MAX_LIMIT = 100_000
_LIMIT_RE = re.compile(r"[0-9]{1,6}")
_HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE_DIRS = (os.path.join(_HERE, "..", "templates"), os.path.join(_HERE, "..", "..", "templates"))


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
        num=formatting.num,
        pct=formatting.pct,
        duration=formatting.duration,
        when=formatting.when,
        rate=formatting.rate,
        megabytes=formatting.megabytes,
    )
    env.globals.update(
        sparkline=svg.sparkline,
        bars=svg.bars,
        histogram=svg.histogram,
        meter=svg.meter,
        timeline=svg.timeline,
        clock_times=formatting.clock_times,
        fmt=formatting.num,
        fmt_rate=formatting.rate,
        fmt_pct=formatting.pct,
        fmt_ms=formatting.milliseconds,
        COLUMNS=COLUMNS,
        HOURS=[f"{hour:02d}:00" for hour in range(24)],
    )
    return env


#: Reservoir table headers by row field; the key column is headed by the
#: config's ``key_name``.
HEADERS = {
    "count": "Samples",
    "frequency": "Frequency",
    "average": "Average",
    "min": "Min",
    "max": "Max",
    "p50": "p50",
    "p95": "p95",
    "p99": "p99",
    "share": "Share",
}
#: (row field, header or None), in the order of the table.
COLUMNS = tuple((field, HEADERS.get(field)) for field in ROW_FIELDS)


class Page:
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
            return json_response(data)
        html = environment().get_template(template).render(data=data, page=self)
        return Response(html, mimetype="text/html")


def parse_query(args: Any) -> Query:
    """The checked query string; :class:`BadRequest` naming the bad value."""
    fmt = args.get("format", "html")
    if fmt not in ("html", "json"):
        raise BadRequest(f"format must be html or json, got {clip(fmt)}")
    period = args.get("period", "current")
    if period not in PERIODS:
        raise BadRequest(f"period must be current or previous, got {clip(period)}")
    sort = args.get("sort", "frequency")
    if sort not in SORTS:
        raise BadRequest(f"sort must be one of {', '.join(SORTS)}, got {clip(sort)}")
    order = args.get("order", "asc" if sort == "key" else "desc")
    if order not in ORDERS:
        raise BadRequest(f"order must be asc or desc, got {clip(order)}")
    raw_limit = args.get("limit", str(Query.limit))
    if not _LIMIT_RE.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT:,}, got {clip(raw_limit)}")
    return Query(period=period, sort=sort, order=order, limit=int(raw_limit), format=fmt)


def clip(text: str, length: int = 80) -> str:
    """User text quoted for an error message, cut to ``length`` characters."""
    return repr(text if len(text) <= length else text[:length] + "…")


def json_response(data: Any, status: int = 200) -> Response:
    body = json.dumps(formatting.jsonable(data), allow_nan=False, separators=(",", ":"))
    return Response(body, status=status, mimetype="application/json")


def error_page(status: int, message: str, as_json: bool, adapter: MapAdapter) -> Response:
    if as_json:
        return json_response({"error": message, "status": status}, status)
    html = environment().get_template("error.html").render(status=status, message=message, page=Page(adapter, Query()))
    return Response(html, status=status, mimetype="text/html")


@functools.lru_cache(maxsize=1)
def stylesheet() -> str:
    env = environment()
    assert env.loader is not None
    return env.loader.get_source(env, "samplez.css")[0]

"""What the demo site measures: one Section per dashboard panel.

Every kind of samplez config and counter appears here, the way a real site
would use it, so the demo's dashboard shows them all.
"""

from __future__ import annotations

import samplez

__all__ = ["LATENCY", "OUTBOUND", "POPULAR", "SECTIONS", "SHOPS", "TRAFFIC", "VISITORS"]


def _pages(name: str, period: int, title: str) -> samplez.Config:
    return samplez.Config(
        name, period=period, by_value=True, samples=10000, value_units="qps", key_name="URL", title=title
    )


# Reservoirs: which pages are hot (by URL), where visitors go (by domain),
# and how slow each endpoint is (values in ms: average, percentiles).
POPULAR = samplez.Section(
    "Popular content", _pages("content_10m", 600, "Pages, 10 min"), _pages("content_1h", 3600, "Pages, 1 hour")
)
OUTBOUND_DOMAINS = samplez.Config(
    "outbound_domains_1h",
    period=3600,
    by_domain=True,
    samples=10000,
    value_units="qps",
    key_name="Domain",
    title="Links followed, by domain",
)
OUTBOUND = samplez.Section("Outbound links", OUTBOUND_DOMAINS)
LATENCY_SAMPLES = samplez.Config(
    "latency_5m",
    period=300,
    by_value=True,
    samples=10000,
    value_units="ms",
    key_name="Endpoint",
    title="Latency per endpoint, 5 min",
)
LATENCY_MAX = samplez.RollingMax("latency_max_1m", window=60, title="Slowest request per endpoint, last minute (ms)")
LATENCY = samplez.Section("Latency", LATENCY_SAMPLES, LATENCY_MAX)

# Counters: request rate and errors over sliding windows.
REQUESTS = samplez.RollingCounter("requests_1m", window=60, title="Requests per endpoint, last minute")
ERRORS = samplez.RollingCounter("errors_5m", window=300, buckets=60, title="Errors by status code, last 5 minutes")
TRAFFIC = samplez.Section("Traffic", REQUESTS, ERRORS)

# Who visits: an estimate (HyperLogLog), a bitmap of user ids, exact sets.
VISITORS_HLL = samplez.HyperLogLogCounter(
    "visitors_1h", step=samplez.SECONDS_1_HOUR, keep=24, title="Unique visitors per hour (HyperLogLog)"
)
DAILY_ACTIVES = samplez.BitmapCounter(
    "daily_actives", step=samplez.SECONDS_1_DAY, keep=7, title="Daily active users (bitmap of user ids)"
)
SHOP_VISITORS = samplez.UniqueCounter(
    "shop_visitors_10m", step=600, keep=6, title="Distinct visitors per shop, 10 min steps"
)
VISITORS = samplez.Section("Visitors", VISITORS_HLL, DAILY_ACTIVES, SHOP_VISITORS)

# Per shop account: page views by hour/day/month/year, orders per hour.
PAGEVIEWS = samplez.CalendarCounter("pageviews", title="Page views per shop")
ORDERS = samplez.SteppedCounter("orders_1h", step=samplez.SECONDS_1_HOUR, keep=24, title="Orders per shop, hourly")
SHOPS = samplez.Section("Shops", PAGEVIEWS, ORDERS)

SECTIONS = (TRAFFIC, LATENCY, POPULAR, OUTBOUND, VISITORS, SHOPS)

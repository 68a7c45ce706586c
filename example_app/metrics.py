"""What the demo site measures: one Section per dashboard panel.

Every kind of samplez config and counter appears here once, the way a real
site would use it, so the demo's dashboard shows them all.
"""

from __future__ import annotations

import samplez

__all__ = ["LATENCY", "OUTBOUND", "POPULAR", "SECTIONS"]

POPULAR = samplez.Section(
    "Popular content",
    samplez.Config(
        "content_10m",
        period=600,
        by_value=True,
        samples=10000,
        value_units="qps",
        key_name="URL",
        title="Pages, 10 min",
    ),
    samplez.Config(
        "content_1h",
        period=3600,
        by_value=True,
        samples=10000,
        value_units="qps",
        key_name="URL",
        title="Pages, 1 hour",
    ),
)
OUTBOUND = samplez.Section(
    "Outbound links",
    samplez.Config(
        "outbound_domains_1h",
        period=3600,
        by_domain=True,
        samples=10000,
        value_units="qps",
        key_name="Domain",
        title="Links followed, by domain",
    ),
)
LATENCY = samplez.Section(
    "Latency",
    samplez.Config(
        "latency_5m",
        period=300,
        by_value=True,
        samples=10000,
        value_units="ms",
        key_name="Endpoint",
        title="Latency per endpoint, 5 min",
    ),
)

SECTIONS = (LATENCY, POPULAR, OUTBOUND)

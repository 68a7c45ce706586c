"""The project's samplez metrics."""

from __future__ import annotations

import samplez

LATENCY = samplez.Config("django_latency", period=300, samples=1000, by_value=True, value_units="ms")
HITS = samplez.RollingCounter("django_hits", window=60)
PAGEVIEWS = samplez.CalendarCounter("django_pageviews")
SITE = samplez.Section("Django site", LATENCY, HITS, PAGEVIEWS)

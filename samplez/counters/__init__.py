"""Counters fed by ``samplez.set`` and read with ``samplez.get``: rolling
(sliding-window) counters and maxima, stepped counters that keep previous
steps, exact and HyperLogLog unique counters, bitmaps, and calendar
counters. See :mod:`samplez.counters.base` for what every result offers."""

from __future__ import annotations

from .base import Counter, CounterResult, Reading
from .calendars import CalendarCounter, CalendarReading, Segments
from .index import OTHER
from .rolling import MaxReading, RollingCounter, RollingMax, RollingReading
from .sketches import BitmapCounter, BitmapReading, HyperLogLogCounter
from .stepped import SteppedCounter, StepReading, UniqueCounter

__all__ = [
    "OTHER",
    "BitmapCounter",
    "BitmapReading",
    "CalendarCounter",
    "CalendarReading",
    "Counter",
    "CounterResult",
    "HyperLogLogCounter",
    "MaxReading",
    "Reading",
    "RollingCounter",
    "RollingMax",
    "RollingReading",
    "Segments",
    "StepReading",
    "SteppedCounter",
    "UniqueCounter",
]

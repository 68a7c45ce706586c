"""How the dashboard writes numbers and times, and how it makes data safe
for JSON.

Numbers are meant to be read at a glance: integers with thousands
separators, other values with three significant digits (``12.3``,
``0.0456``, ``1,235``). JSON gets the raw values, with anything JSON cannot
hold (NaN, infinities, tuples, non-str keys) made valid.
"""

from __future__ import annotations

import math
import time
from typing import Any

__all__ = ["duration", "jsonable", "num", "pct", "when"]

DASH = "–"


def num(value: object, units: str = "") -> str:
    """``1,234``, ``12.3``, ``0.0456`` (three significant digits), followed
    by ``units`` when given; a dash for None or a non-finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return DASH
    if isinstance(value, int):
        text = f"{value:,}"
    elif not math.isfinite(value):
        return DASH
    elif abs(value) >= 999.5:
        text = f"{value:,.0f}"
    elif value == 0:
        text = "0"
    else:
        text = f"{value:.3g}"
    return f"{text} {units}" if units else text


def pct(value: object) -> str:
    """A share (0-1) as a percentage: ``12.3 %``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return DASH
    return f"{num(value * 100)} %"


def duration(seconds: object) -> str:
    """``45 s``, ``4 min 12 s``, ``2 h 5 min``, ``3 d 4 h``."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return DASH
    total = int(round(seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def when(timestamp: object) -> str:
    """A UNIX time as ``2026-11-26 05:15:42 UTC``."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or not math.isfinite(timestamp):
        return DASH
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
    except (OverflowError, OSError, ValueError):
        return DASH


def jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` with every part JSON can hold: non-finite floats become
    ``None``, tuples and sets lists, keys str, anything else its ``str``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth > 20:
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, depth + 1) for v in value]
    as_dict = getattr(value, "as_dict", None)
    if callable(as_dict):
        return jsonable(as_dict(), depth + 1)
    return str(value)

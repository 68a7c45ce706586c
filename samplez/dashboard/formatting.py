"""How the dashboard writes numbers and times, and how it makes data safe
for JSON.

Numbers are meant to be read at a glance: integers with thousands
separators, other values with three significant digits (``12.3``,
``0.0456``, ``1,235``). A rate reads in the unit that puts it at one or
more (``6.6 /h``, not ``0.00184 /s``). JSON gets the raw values, with
anything JSON cannot hold (NaN, infinities, tuples, non-str keys) made
valid.
"""

from __future__ import annotations

import math
import time
from typing import Any

__all__ = ["clock_times", "duration", "jsonable", "megabytes", "milliseconds", "num", "pct", "rate", "when"]

DASH = "–"
#: Per second, minute, hour and day: a rate takes the first unit in which
#: it is at least one, or the last.
RATE_UNITS = (("/s", 1), ("/min", 60), ("/h", 3600), ("/d", 86400))


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


def rate(per_second: object) -> str:
    """Events per second in a unit a person reads: ``12 /s``, ``30 /min``,
    ``6.6 /h``, ``8.6 /d``, with two significant digits (rates are
    estimates), whole numbers from 100 up; a dash for None."""
    if isinstance(per_second, bool) or not isinstance(per_second, (int, float)):
        return DASH
    if not math.isfinite(per_second) or per_second < 0:
        return DASH
    if per_second == 0:
        return "0 /s"
    for unit, seconds in RATE_UNITS:
        if per_second * seconds >= 1:
            return _in_unit(per_second * seconds, unit)
    return _in_unit(per_second * seconds, unit)


def _in_unit(scaled: float, unit: str) -> str:
    if scaled >= 99.5:
        return f"{scaled:,.0f} {unit}"
    if scaled < 0.01:
        return f"< 0.01 {unit}"
    return f"{scaled:.2g} {unit}"


def megabytes(size: object) -> str:
    """A size in bytes as ``41.2 MB``."""
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        return DASH
    return num(size / 2**20, "MB")


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


def milliseconds(value: object) -> str:
    """A duration in ms: ``12.3 ms``."""
    return num(value, "ms") if num(value) != DASH else DASH


def clock_times(start: float, step: float, count: int) -> list[str]:
    """``count`` times of day (``14:05``, UTC) ``step`` seconds apart from
    ``start``: the labels of a timeline's points."""
    return [time.strftime("%H:%M", time.gmtime(start + i * step)) for i in range(count)]


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

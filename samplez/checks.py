"""Every check of what users give samplez.

Definitions (a config's or counter's arguments, ``samplez.configure``'s
settings) raise :class:`~samplez.ConfigError` when made, naming the argument
and showing the bad value. Values given to ``samplez.set`` raise
``TypeError`` or ``ValueError`` at the call: each metric kind names its
check as ``check_value``.
"""

from __future__ import annotations

import math
import re
import sys
from typing import Any, Callable

from .errors import ConfigError
from .store.keys import MAX_COUNT

_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

# -- definitions ----------------------------------------------------------------


def name(label: str, value: object) -> str:
    """A metric name or key prefix: 1-64 characters of ``[A-Za-z0-9_.-]``."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise ConfigError(f"{label} must be 1-64 characters of [A-Za-z0-9_.-], got {shown(value)}")
    return value


def prefix(value: object) -> str:
    return name("prefix", value)


def shown(value: object) -> str:
    """``repr`` of a bad value, short (and safe for ints of any size)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an int of {value.bit_length()} bits"
    return repr(value)[:80]


def positive_int(label: str, value: object, maximum: int | None = None) -> int:
    if type(value) is not int or value < 1 or (maximum is not None and value > maximum):
        bound = f" and <= {maximum}" if maximum is not None else ""
        raise ConfigError(f"{label} must be an int > 0{bound}, got {shown(value)}")
    return value


def text(label: str, value: object, allow_none: bool = False) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{label} must be a str, got {shown(value)}")
    return value


def seconds(label: str, value: object) -> int:
    """A whole number of seconds > 0 (floats like ``60.0`` are accepted)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return positive_int(label, value)


def config_error(label: str, message: str, value: object) -> ConfigError:
    return ConfigError(f"{label} {message}, got {value!r}")


def at_least(label: str, low: int) -> Callable[[Any], int]:
    """A check of an int >= ``low``."""

    def check(value: Any) -> int:
        if type(value) is not int or value < low:
            raise ConfigError(f"{label} must be an int >= {low}, got {shown(value)}")
        return value

    return check


def choice(label: str, options: tuple[str, ...]) -> Callable[[Any], str]:
    """A check of one of ``options``."""

    def check(value: Any) -> str:
        if value not in options:
            raise ConfigError(f"{label} must be one of {', '.join(map(repr, options))}, got {shown(value)}")
        return value  # type: ignore[no-any-return]

    return check


def clock(clock: Any) -> Callable[[], float]:
    """``clock`` if it is a callable returning finite seconds: asked once
    now, so a wrong one fails here and not inside every request."""
    try:
        now = clock()
    except Exception as exc:
        raise ConfigError(f"clock must be a callable returning seconds, got {clock!r} ({exc!r})") from None
    if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now) or now < 0:
        raise ConfigError(f"clock must return seconds since the epoch, got {now!r} from {clock!r}")
    return clock  # type: ignore[no-any-return]


def flush_interval(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.01 <= value <= 3600:
        raise ConfigError(f"flush_interval must be seconds in [0.01, 3600], got {value!r}")
    return float(value)


# -- values given to samplez.set ----------------------------------------------------

FLOAT_MAX = int(sys.float_info.max)


def check_number(value: object) -> None:
    """An int or a finite float (``bool`` is not a number here); samples are
    stored as floats, so an int must fit one."""
    kind = type(value)
    if kind is float:
        if value - value == 0.0:  # type: ignore[operator]  # finite: inf - inf and nan - nan are nan
            return
    elif kind is int and -FLOAT_MAX <= value <= FLOAT_MAX:  # type: ignore[operator]
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an int past the float range
            finite = False
        if not finite:
            raise ValueError(f"samplez value must be finite (a float), got {shown(value)}")
        return
    raise TypeError(f"samplez value must be an int or a float, got {kind.__name__} {shown(value)}")


def check_count(value: object) -> None:
    """An int from 0 to ``MAX_COUNT``: counters only go up (memcache
    ``incr`` is integral and unsigned), and a larger value could never be
    read back as a count."""
    if type(value) is not int and (not isinstance(value, int) or isinstance(value, bool)):
        raise TypeError(f"this counter adds ints (memcache incr is integral), got {type(value).__name__} {value!r}")
    if not 0 <= value <= MAX_COUNT:  # type: ignore[operator]
        raise ValueError(
            f"counters add ints from 0 to 2**53 ({MAX_COUNT:,}), the largest count read back exactly, "
            f"got {shown(value)}"
        )


def check_item(value: object) -> None:
    """An item to count once: a str or an int."""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise TypeError(f"unique counters take a str or int item, got {type(value).__name__} {shown(value)}")
    if isinstance(value, int) and value.bit_length() > 1024:  # str() of it could fail at flush
        raise ValueError(f"int items must be below 2**1024, got {shown(value)}")


def check_bit(value: object) -> None:
    """A bit number: an int >= 0 below 2**32."""
    if type(value) is not int and (not isinstance(value, int) or isinstance(value, bool)):
        raise TypeError(f"bitmap counters take a bit number (int >= 0), got {type(value).__name__} {value!r}")
    if not 0 <= value < 2**32:  # type: ignore[operator]
        raise ValueError(f"bit number must be in [0, 2**32), got {value!r}")

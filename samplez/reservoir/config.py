"""``Config``: one reservoir sampler, checked when it is defined."""

from __future__ import annotations

import math
from typing import Any, Sequence

from ..checks import check_number, positive_int, text
from ..errors import ConfigError
from ..flush import Context, Event, Plan
from ..metric import Metric
from . import sampling
from .domain import domain_of

__all__ = ["Config"]

MAX_SAMPLES = 100_000
#: What ``samplez.set`` keeps of a URL for ``by_domain``: room for a scheme,
#: user info and the longest host name.
URL_HEAD = 512


class Config(Metric):
    """A reservoir of ``samples`` random events per epoch-aligned ``period``.

    :param name: 1-64 characters of ``[A-Za-z0-9_.-]``, unique in the process.
    :param period: seconds per period (an int >= 1); period index =
        ``floor(now / period)``, so every process agrees on the boundaries.
    :param samples: reservoir size (1 to 100,000).
    :param by_value: use the key as given.
    :param by_domain: reduce a URL key to its domain (``bad_url`` if it is
        none); exactly one of ``by_value`` and ``by_domain`` must be true.
    :param rate: keep each key of a request with this probability
        (0 < rate <= 1); frequencies are scaled back by ``1/rate``.
    :param max_key_length: keys are cut to this many characters.
    :param tolerance: seconds of clock skew allowed between writers: a sample
        stamped further than this outside its period is ignored when read.
    :param title: dashboard title; ``key_name`` heads the key column and
        ``value_units`` follows every value.

    >>> LATENCY = Config('latency_5m', period=300, samples=10000, by_value=True, value_units='ms')
    """

    kind = "reservoir"
    dedup_in_request = True
    check_value = staticmethod(check_number)

    def __init__(
        self,
        name: str,
        period: int,
        samples: int,
        by_value: bool = False,
        by_domain: bool = False,
        rate: float = 1.0,
        max_key_length: int = 75,
        tolerance: float = 10,
        title: str | None = None,
        key_name: str = "Key",
        value_units: str = "",
    ) -> None:
        super().__init__(name, title)
        self.period = positive_int("period", period)
        self.samples = positive_int("samples", samples, MAX_SAMPLES)
        if by_value not in (True, False) or by_domain not in (True, False) or by_value == by_domain:
            raise ConfigError(
                "exactly one of by_value and by_domain must be true, "
                f"got by_value={by_value!r}, by_domain={by_domain!r}"
            )
        self.by_value, self.by_domain = bool(by_value), bool(by_domain)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ConfigError(f"rate must be a number with 0 < rate <= 1, got {rate!r}")
        self.rate = float(rate)
        self.max_key_length = positive_int("max_key_length", max_key_length, 10_000)
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < math.inf:
            raise ConfigError(f"tolerance must be a number of seconds >= 0, got {tolerance!r}")
        self.tolerance = tolerance
        self.key_name = text("key_name", key_name) or "Key"
        self.value_units = text("value_units", value_units) or ""
        # Long enough to read the previous complete period, plus skew.
        self.ttl = 2 * self.period + int(self.tolerance) + 60
        self._register()

    @property
    def set_key_limit(self) -> int:
        # A by_domain key is a URL whose host (at most 253 characters) comes
        # first: what follows it is never stored.
        return max(self.max_key_length, URL_HEAD) if self.by_domain else self.max_key_length

    def normalize_key(self, key: str) -> str:
        if self.by_domain:
            key = domain_of(key)
        return super().normalize_key(key)

    def apply(self, events: Sequence[Event], ctx: Context) -> Plan:
        return sampling.apply(self, events, ctx)

    def read(self, ctx: Context, period: str = "current", key: str | None = None, **options: Any) -> Any:
        if options:
            raise TypeError(f"unexpected options for a reservoir: {', '.join(options)}")
        return sampling.read(self, ctx, period=period, key=key)

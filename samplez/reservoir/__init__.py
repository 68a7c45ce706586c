"""Reservoir samplers: :class:`Config` defines one, ``sampling`` applies a
flush's events to the store and reads a period back, ``result`` derives
the statistics of a :class:`SampleResult`, and ``domain`` reduces URL keys
to their domain for ``by_domain`` configs."""

from __future__ import annotations

from .config import Config
from .result import ROW_FIELDS, SampleResult
from .sampling import PERIODS

__all__ = ["PERIODS", "ROW_FIELDS", "Config", "SampleResult"]

"""The one exception tree of samplez."""

from __future__ import annotations

__all__ = ["SamplezError", "ConfigError", "StoreError"]


class SamplezError(Exception):
    """Root of every exception samplez raises on purpose."""


class ConfigError(SamplezError, ValueError):
    """Raised when a config, counter, section or ``configure()`` argument is
    invalid; the message names the argument and shows the bad value."""


class StoreError(SamplezError):
    """Raised when a store cannot be reached or answers something it should
    not; the flusher catches it, logs it and counts it."""

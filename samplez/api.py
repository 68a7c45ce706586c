"""The module-level functions of samplez: configure, flush, get."""

from __future__ import annotations

from typing import Any, Callable, Iterator

from .engine import _UNSET, FlushSummary, engine
from .metric import Metric, Section
from .store.base import Store

__all__ = ["configure", "flush", "get", "get_section"]


def configure(
    store: Store | None = _UNSET,
    prefix: str = _UNSET,
    flush_interval: float = _UNSET,
    max_pending: int = _UNSET,
    max_pending_bytes: int = _UNSET,
    clock: Callable[[], float] = _UNSET,
    flush: str = _UNSET,
) -> None:
    """Set where and how samples are applied; arguments left out keep their
    current value (defaults: ``MemoryStore()``, ``prefix='samplez'``,
    ``flush_interval=0.5``, ``max_pending=100_000``,
    ``max_pending_bytes=32 * 2**20``, ``clock=time.time``,
    ``flush='background'``). ``flush='request'`` applies the batch after
    each response instead of in the background.

    >>> samplez.configure(store=samplez.MemcacheStore('127.0.0.1:11211'))
    """
    given = {name: value for name, value in locals().items() if value is not _UNSET}  # the keywords passed
    engine.configure(**given)


def flush() -> FlushSummary:
    """Apply every pending sample now, synchronously."""
    return engine.flush()


def get(metric: Metric, **options: Any) -> Any:
    """Read a config or counter from the store.

    For a :class:`~samplez.Config`: ``period='current'|'previous'`` and
    ``key=``, returning a :class:`~samplez.SampleResult`. For a counter: a
    mapping from key to reading (see each counter class).
    """
    if not isinstance(metric, Metric):
        raise TypeError(f"samplez.get needs a Config or a counter, got {metric!r}")
    return metric.read(engine.context(), **options)


def get_section(section: Section, **options: Any) -> Iterator[Any]:
    """Read every config and counter of ``section``, one at a time."""
    if not isinstance(section, Section):
        raise TypeError(f"samplez.get_section needs a Section, got {section!r}")
    for metric in section.metrics:
        yield get(metric, **options)

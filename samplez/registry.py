"""The process-wide registry of metrics and sections: names are unique per
process, and every metric gets a slot, the int its pending events carry."""

from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Iterator

from .errors import ConfigError

if TYPE_CHECKING:
    from .metric import Metric, Section

__all__ = [
    "detached",
    "is_detached",
    "lookup",
    "metric_at",
    "register",
    "registered_metrics",
    "registered_sections",
    "unregister",
]

_metrics: weakref.WeakValueDictionary[str, Metric] = weakref.WeakValueDictionary()
_sections: weakref.WeakValueDictionary[int, Section] = weakref.WeakValueDictionary()

#: Every metric made, weakly, by its slot. An event names its metric by
#: slot, so a pending event holds only an int, a str and numbers: the garbage
#: collector untracks such a tuple at its first collection, where one holding
#: the metric would be promoted to the oldest generation and, at 10,000s of
#: events per flush, set off full collections in every busy worker. It only
#: grows: a weakref per metric made.
_slots: list[weakref.ref[Metric]] = []
_registering = threading.Lock()
_detached: ContextVar[bool] = ContextVar("samplez_detached", default=False)


@contextmanager
def detached() -> Iterator[None]:
    """Metrics made inside are not registered: a reader's copies of what
    another process defined (:mod:`samplez.definitions`), which this
    process must never write, publish or count among its own names."""
    token = _detached.set(True)
    try:
        yield
    finally:
        _detached.reset(token)


def is_detached() -> bool:
    return _detached.get()


def register(metric: Metric) -> int:
    """Claim ``metric``'s name; returns its slot."""
    with _registering:  # one name and one slot per metric, whichever thread makes it
        if metric.name in _metrics:
            raise ConfigError(f"name must be unique in the process, {metric.name!r} is already defined")
        _metrics[metric.name] = metric
        _slots.append(weakref.ref(metric))
        return len(_slots) - 1


def register_section(section: Section) -> None:
    _sections[id(section)] = section


def registered_metrics() -> list[Metric]:
    return list(_metrics.values())


def registered_sections() -> list[Section]:
    return list(_sections.values())


def metric_at(slot: int) -> Metric | None:
    """The metric of an event's slot; ``None`` once nothing holds it."""
    return _slots[slot]()


def lookup(name: str) -> Metric | None:
    return _metrics.get(name)


def unregister(*things: Metric | Section) -> None:
    """Forget metrics or sections (and a section's metrics) so their names
    can be defined again, e.g. when a test or a reloader redefines them."""
    from .metric import Section  # the metric module imports this one

    for thing in things:
        if isinstance(thing, Section):
            _sections.pop(id(thing), None)
            unregister(*thing.metrics)
        elif _metrics.get(thing.name) is thing:
            del _metrics[thing.name]

"""What every config and counter shares: a checked name, the process-wide
registry, value checks used by ``samplez.set``, and the flush protocol.

The flush protocol keeps algorithms apart from the wire. ``apply`` is a
generator: each ``yield`` hands the flusher a list of store ops and receives
their results; the flusher runs every metric's generator in lock step, so
one pipelined round trip per server serves all of them. A metric must finish
within :data:`MAX_ROUNDS` yields and returns an :class:`Outcome`.
"""

from __future__ import annotations

import math
import re
import sys
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Generator, Iterable, Sequence

from .errors import ConfigError
from .keys import MAX_COUNT

if TYPE_CHECKING:
    from .keys import KeySpace
    from .store.base import Op, Store

__all__ = [
    "Context",
    "Event",
    "MAX_ROUNDS",
    "Metric",
    "Outcome",
    "Section",
    "check_bit",
    "check_count",
    "check_item",
    "check_number",
    "metric_at",
    "registered_metrics",
    "registered_sections",
    "unregister",
]

MAX_ROUNDS = 3
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_metrics: weakref.WeakValueDictionary[str, Metric] = weakref.WeakValueDictionary()
_sections: weakref.WeakValueDictionary[int, Section] = weakref.WeakValueDictionary()

#: Every metric made, weakly, by its ``slot``. An event names its metric by
#: slot, so a pending event holds only an int, a str and numbers: the garbage
#: collector untracks such a tuple at its first collection, where one holding
#: the metric would be promoted to the oldest generation and, at 10,000s of
#: events per flush, set off full collections of the heap in every busy
#: worker (docs/PERFORMANCE.md, "The garbage collector"). It only grows: a
#: weakref per metric made.
_slots: list[weakref.ref[Metric]] = []
_registering = threading.Lock()

#: ``(slot, key, value, when)``: one ``samplez.set`` waiting to be applied.
Event = tuple[int, str, Any, float]
Plan = Generator[list["Op"], list[Any], "Outcome"]


@dataclass
class Outcome:
    """What a metric's ``apply`` did with its events."""

    applied: int = 0
    failed: int = 0
    retry: list[Event] = field(default_factory=list)


@dataclass
class Context:
    """Where and when: the store, its key space and the clock's reading."""

    store: Store
    space: KeySpace
    now: float


# -- checks -----------------------------------------------------------------


FLOAT_MAX = int(sys.float_info.max)


def _shown(value: object) -> str:
    """``repr`` of a bad value, short (and safe for ints of any size)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an int of {value.bit_length()} bits"
    return repr(value)[:80]


def positive_int(label: str, value: object, maximum: int | None = None) -> int:
    if type(value) is not int or value < 1 or (maximum is not None and value > maximum):
        bound = f" and <= {maximum}" if maximum is not None else ""
        raise ConfigError(f"{label} must be an int > 0{bound}, got {_shown(value)}")
    return value


def text(label: str, value: object, allow_none: bool = False) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{label} must be a str, got {_shown(value)}")
    return value


def check_number(value: object) -> None:
    """An int or a finite float (``bool`` is not a number here); samples are
    stored as floats, so an int must fit one."""
    kind = type(value)
    if kind is int and -FLOAT_MAX <= value <= FLOAT_MAX:  # type: ignore[operator]
        return
    if kind is float or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        try:
            finite = math.isfinite(value)  # type: ignore[arg-type]
        except OverflowError:  # an int past the float range
            finite = False
        if not finite:
            raise ValueError(f"samplez value must be finite (a float), got {_shown(value)}")
        return
    raise TypeError(f"samplez value must be an int or a float, got {kind.__name__} {_shown(value)}")


def check_count(value: object) -> None:
    """An int from 0 to ``MAX_COUNT``: counters only go up (memcache
    ``incr`` is integral and unsigned), and a larger value could never be
    read back as a count."""
    if type(value) is not int and (not isinstance(value, int) or isinstance(value, bool)):
        raise TypeError(f"this counter adds ints (memcache incr is integral), got {type(value).__name__} {value!r}")
    if not 0 <= value <= MAX_COUNT:  # type: ignore[operator]
        raise ValueError(
            f"counters add ints from 0 to 2**53 ({MAX_COUNT:,}), the largest count read back exactly, "
            f"got {_shown(value)}"
        )


def check_item(value: object) -> None:
    """An item to count once: a str or an int."""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise TypeError(f"unique counters take a str or int item, got {type(value).__name__} {_shown(value)}")
    if isinstance(value, int) and value.bit_length() > 1024:  # str() of it could fail at flush
        raise ValueError(f"int items must be below 2**1024, got {_shown(value)}")


def check_bit(value: object) -> None:
    """A bit number: an int >= 0 below 2**32."""
    if type(value) is not int and (not isinstance(value, int) or isinstance(value, bool)):
        raise TypeError(f"bitmap counters take a bit number (int >= 0), got {type(value).__name__} {value!r}")
    if not 0 <= value < 2**32:  # type: ignore[operator]
        raise ValueError(f"bit number must be in [0, 2**32), got {value!r}")


# -- metrics ------------------------------------------------------------------


class Metric:
    """Base of :class:`~samplez.Config` and every counter.

    :param name: 1-64 characters of ``[A-Za-z0-9_.-]``, unique in the process.
    :param title: shown on the dashboard (default: the name).
    """

    #: Short name of the kind, used by the dashboard and the JSON pages.
    kind: ClassVar[str] = "metric"
    #: Inside one request, does a later ``set`` of a key replace an earlier one?
    dedup_in_request: ClassVar[bool] = False
    #: The metric's index in the process (events carry it), set by ``_register``.
    slot: int
    #: The ``samplez.set`` check of a value.
    check_value: Callable[[object], None] = staticmethod(check_number)
    rate: float = 1.0
    max_key_length: int = 200

    def __init__(self, name: str, title: str | None = None) -> None:
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ConfigError(f"name must be 1-64 characters of [A-Za-z0-9_.-], got {_shown(name)}")
        self.name = name
        self.title = text("title", title, allow_none=True) or name

    def _register(self) -> None:
        """Claim the name; called last by subclasses, once fully valid."""
        with _registering:  # one name and one slot per metric, whichever thread makes it
            if self.name in _metrics:
                raise ConfigError(f"name must be unique in the process, {self.name!r} is already defined")
            _metrics[self.name] = self
            self.slot = len(_slots)
            _slots.append(weakref.ref(self))
        self._samplez_targets = Targets((self,))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    @property
    def set_key_limit(self) -> int:
        """How many characters of a key ``samplez.set`` keeps (the rest
        could never be stored)."""
        return self.max_key_length

    def normalize_key(self, key: str) -> str:
        """The key as stored: truncated to ``max_key_length`` characters, a
        lone surrogate (left by a bad decode upstream) replaced by ``?`` so
        every stored key encodes as UTF-8 on the dashboard and in JSON."""
        if len(key) > self.max_key_length:
            key = key[: self.max_key_length]
        if not key.isascii():
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                key = key.encode("utf-8", "replace").decode("utf-8")
        return key

    def apply(self, events: Sequence[Event], ctx: Context) -> Plan:
        """Apply ``events``; see the module docstring for the protocol."""
        raise NotImplementedError

    def read(self, ctx: Context, **options: Any) -> Any:
        """What ``samplez.get`` returns for this metric."""
        raise NotImplementedError


class Section:
    """A titled group of configs and counters, shown together and fed by one
    ``samplez.set``.

    >>> LATENCY = Section('Latency', Config('latency_5m', period=300, samples=1000, by_value=True))
    """

    def __init__(self, title: str, *metrics: Metric) -> None:
        self.title = text("title", title) or ""
        if len(metrics) == 1 and not isinstance(metrics[0], Metric) and isinstance(metrics[0], Iterable):
            metrics = tuple(metrics[0])  # Section('t', [a, b]) works too
        for metric in metrics:
            if not isinstance(metric, Metric):
                raise ConfigError(f"a Section holds configs and counters, got {metric!r}")
        if not metrics:
            raise ConfigError(f"Section {title!r} must hold at least one config or counter")
        self.metrics: tuple[Metric, ...] = tuple(dict.fromkeys(metrics))
        self._samplez_targets = Targets(self.metrics)
        _sections[id(self)] = self

    @property
    def configs(self) -> tuple[Metric, ...]:
        return self.metrics

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.metrics)

    def __repr__(self) -> str:
        return f"<Section {self.title!r}: {', '.join(m.name for m in self.metrics)}>"


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
    for thing in things:
        if isinstance(thing, Section):
            _sections.pop(id(thing), None)
            unregister(*thing.metrics)
        elif _metrics.get(thing.name) is thing:
            del _metrics[thing.name]


class Targets:
    """What one ``samplez.set`` target stands for: its metrics, the checks
    of a value, and how many characters of a key they can use. Kept on each
    Metric and Section, made anew for any other iterable."""

    __slots__ = ("metrics", "checks", "key_limit")

    def __init__(self, metrics: tuple[Metric, ...]) -> None:
        self.metrics = metrics
        self.checks = tuple(dict.fromkeys(type(m).check_value for m in metrics))
        self.key_limit = max(m.set_key_limit for m in metrics)


def resolve_targets(target: object) -> Targets:
    """The :class:`Targets` of a ``samplez.set`` target."""
    try:
        return target._samplez_targets  # type: ignore[attr-defined,no-any-return]
    except AttributeError:
        pass
    if isinstance(target, (str, bytes)) or not isinstance(target, Iterable):
        raise TypeError(f"samplez.set needs a Config, a counter, a Section or an iterable of them, got {target!r}")
    metrics: list[Metric] = []
    for item in target:
        if isinstance(item, Section):
            metrics.extend(item.metrics)
        elif isinstance(item, Metric):
            metrics.append(item)
        else:
            raise TypeError(f"samplez.set needs configs, counters or sections, got {item!r}")
    if not metrics:
        raise TypeError(f"samplez.set needs at least one config or counter, got {target!r}")
    return Targets(tuple(dict.fromkeys(metrics)))

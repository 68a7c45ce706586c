"""What every config and counter shares (:class:`Metric`), the
:class:`Section` that groups them, and what a ``samplez.set`` target stands
for (:class:`Targets`). How a metric's events reach the store is the flush
protocol of :mod:`samplez.flush`."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Sequence

from . import checks, registry
from .errors import ConfigError

if TYPE_CHECKING:
    from .flush import Context, Event, Plan

__all__ = ["Metric", "Section", "Targets", "resolve_targets"]


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
    check_value: Callable[[object], None] = staticmethod(checks.check_number)
    rate: float = 1.0
    max_key_length: int = 200

    def __init__(self, name: str, title: str | None = None) -> None:
        self.name = checks.name("name", name)
        self.title = checks.text("title", title, allow_none=True) or name

    def _register(self) -> None:
        """Claim the name; called last by subclasses, once fully valid.
        A metric made :func:`~samplez.registry.detached` claims nothing and
        gets no slot: ``samplez.set`` refuses it."""
        if registry.is_detached():
            return
        self.slot = registry.register(self)
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
        self.title = checks.text("title", title) or ""
        if len(metrics) == 1 and not isinstance(metrics[0], Metric) and isinstance(metrics[0], Iterable):
            metrics = tuple(metrics[0])  # Section('t', [a, b]) works too
        for metric in metrics:
            if not isinstance(metric, Metric):
                raise ConfigError(f"a Section holds configs and counters, got {metric!r}")
        if not metrics:
            raise ConfigError(f"Section {title!r} must hold at least one config or counter")
        self.metrics: tuple[Metric, ...] = tuple(dict.fromkeys(metrics))
        self._samplez_targets = Targets(self.metrics)
        registry.register_section(self)

    @property
    def configs(self) -> tuple[Metric, ...]:
        return self.metrics

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.metrics)

    def __repr__(self) -> str:
        return f"<Section {self.title!r}: {', '.join(m.name for m in self.metrics)}>"


class Targets:
    """What one ``samplez.set`` target stands for: its metrics, the check
    of a value, how many characters of a key they can use, and what a
    request batch does with a value. Kept on each Metric and Section, made
    anew for any other iterable."""

    __slots__ = ("metrics", "check", "key_limit", "kept", "counted", "sampled", "floats")

    def __init__(self, metrics: tuple[Metric, ...]) -> None:
        self.metrics = metrics
        kinds = tuple(dict.fromkeys(type(m).check_value for m in metrics))
        self.check: Callable[[object], None] = kinds[0] if len(kinds) == 1 else functools.partial(_check_all, kinds)
        #: Every metric takes any finite float (what most sets give).
        self.floats = kinds == (checks.check_number,)
        self.key_limit = max(m.set_key_limit for m in metrics)
        #: Slots whose last value in a request is kept; whose every set
        #: counts; and (slot, rate) of those kept by a coin flip per key.
        self.kept = tuple(m.slot for m in metrics if m.dedup_in_request and m.rate == 1.0)
        self.counted = tuple(m.slot for m in metrics if not m.dedup_in_request)
        self.sampled = tuple((m.slot, m.rate) for m in metrics if m.dedup_in_request and m.rate < 1.0)


def _check_all(checks: tuple[Callable[[object], None], ...], value: object) -> None:
    for check in checks:
        check(value)


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

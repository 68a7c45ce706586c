"""``samplez.set`` and the per-request batch.

``set`` runs on the request thread and does only in-memory work: it checks
the value, then records it in the current request's batch (a ``contextvars``
variable, so threads and greenlets each see their own) or, outside a
request, in the process batch. A request's batch is a mapping keyed by
(slot, key) (a ``RequestBatch`` dict, or the C module's ``Batch``), active
while its request's code runs (the middleware says when), that applies the
request rules as values arrive: one value per (config, key), the last one
set, kept with probability ``rate`` by one coin flip per key shared by every
config; counters, which count every ``set``, keep a list beside it. When the
request ends, ``join`` turns it into events stamped with one time and
``finish`` hands them to the process batch.

``set``, ``finish`` and the middleware's call have a twin in C
(``_speedups.c``), which runs when it is built and hands back to the
Python here every call off the usual path.
"""

from __future__ import annotations

import logging
import os
import random
from contextvars import ContextVar
from typing import Any

from .engine import engine
from .metric import Event, resolve_targets

__all__ = ["RequestBatch", "begin", "end", "finish", "join", "request_var", "set", "speedups"]

log = logging.getLogger("samplez")
#: The current request's batch; the middleware sets it around the app call.
request_var: ContextVar[Any] = ContextVar("samplez.request", default=None)


def _key(key: object) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (bytes, bytearray, memoryview)):
        try:
            return bytes(key).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"samplez key bytes must be UTF-8, got {bytes(key)[:40]!r}") from None
    raise TypeError(f"samplez key must be a str (or UTF-8 bytes), got {type(key).__name__} {key!r}")


class RequestBatch(dict):  # type: ignore[type-arg]
    """A request's batch in the Python twin: (slot, key) -> value, and
    ``active`` while its request's code runs. Once the request's call has
    returned (between the chunks of a streamed body) or its response is
    closed, a ``set`` made where it is still the context's batch is an
    event of the process batch, as outside any request. ``held`` while a
    response body that will fold it is still to be closed; idle (neither,
    and empty), the next request in its context reuses it."""

    __slots__ = ("active", "held")

    def __init__(self) -> None:
        self.active = True
        self.held = False


class _Side:
    """What a request batch holds besides its (slot, key) -> value entries:
    the coin flip of each key of a sampled config, and the values of
    counters, every one of which counts."""

    __slots__ = ("flips", "every")

    def __init__(self) -> None:
        self.flips: dict[str, float] = {}
        self.every: list[tuple[tuple[int, str], Any]] = []


_SIDE: Any = object()  # the key of a batch's _Side
_SMALL_INT = 2**30 - 1  # the largest int CPython stores in one digit


def set(target: Any, key: str | bytes, value: int | float | str = 1) -> None:  # noqa: A001
    """Record ``value`` for ``key`` in every config or counter of ``target``
    (a Config, a counter, a Section, or an iterable of them).

    Raises ``TypeError``/``ValueError`` here, at the call, for a value the
    target cannot take (``bool``, ``None``, NaN, ±inf, a str for a reservoir)
    or a key that is not text.

    >>> samplez.set(LATENCY, '/api/items', 124)
    """
    # The usual call, one config and a number in a request, is one dict
    # store after three type checks, each an opcode the interpreter
    # specializes (bench/bench_request_path.py). ``x - x == 0.0`` holds
    # for every finite float, and for no NaN or infinity; an int is
    # compared with one-digit ints (faster than with FLOAT_MAX), and a
    # larger one takes the general path, which checks its range.
    try:
        slot = target._samplez_number_slot
    except AttributeError:  # an iterable of targets
        slot = None
    if slot is not None and type(key) is str:
        kind = type(value)
        if (kind is float and value - value == 0.0) or (kind is int and -_SMALL_INT <= value <= _SMALL_INT):  # type: ignore[operator]
            batch = request_var.get()
            if batch is not None and batch.active:
                batch[slot, key] = value
                return
    try:
        targets = target._samplez_targets
        checks = target._samplez_checks
    except AttributeError:
        targets, checks = resolve_targets(target)
    for check in checks:
        check(value)
    if key.__class__ is not str:
        key = _key(key)
    batch = request_var.get()
    if batch is not None and batch.active:
        _record(batch, targets, key, value)
    elif len(targets) == 1 and targets[0].plain_slot is not None:
        engine.add((targets[0].slot, key, value, engine.clock()))
    else:
        batch = {}
        _record(batch, targets, key, value)
        finish(batch)


def _record(batch: dict[Any, Any], targets: tuple[Any, ...], key: str, value: Any) -> None:
    """Apply the request rules to one ``set`` of ``targets`` in ``batch``."""
    for metric in targets:
        slot = metric.plain_slot
        if slot is not None:  # the last value wins, every key is kept
            batch[slot, key] = value
            continue
        side = batch.get(_SIDE)
        if side is None:
            side = batch[_SIDE] = _Side()
        if not metric.dedup_in_request:
            side.every.append(((metric.slot, key), value))
            continue
        if metric.rate < 1.0:
            flip = side.flips.get(key)
            if flip is None:
                flip = side.flips[key] = random.random()
            if flip >= metric.rate:
                continue
        batch[metric.slot, key] = value


def begin() -> Any:
    """Start a request batch in the current context; returns its token."""
    return request_var.set(new_batch())


def end(token: Any) -> None:
    """Fold the current request's batch into the process batch and leave
    the request context (also when the handler raised)."""
    batch = request_var.get()
    request_var.reset(token)
    if batch is not None:
        batch.active = False
    finish(batch)


def finish(batch: dict[Any, Any] | None) -> None:
    """Fold a request's batch into the process batch. Runs as the response
    closes, so it never raises: a clock that fails costs the request's
    samples (logged, counted as dropped), not the request."""
    if batch:
        try:
            when = engine.clock()
        except Exception as exc:
            clock_failed(batch, exc)
            return
        engine.extend(join(batch, when))


def clock_failed(batch: dict[Any, Any], error: BaseException) -> None:
    """The clock raised ``error`` as ``batch`` was folded: its samples are
    dropped, counted and logged (both twins of ``finish`` end here)."""
    events = join(batch, 0.0)
    log.error("samplez: the clock failed; %d samples of this request dropped", len(events), exc_info=error)
    engine.drop(len(events))


def join(batch: dict[Any, Any], when: float) -> list[Event]:
    """The events of one request's batch, all stamped ``when``; the batch is
    left empty."""
    side = batch.pop(_SIDE, None)
    events: list[Event] = []
    append = events.append
    for (slot, key), value in batch.items():  # a loop, not a comprehension: no frame of its own
        append((slot, key, value, when))
    if side is not None:
        for (slot, key), value in side.every:
            append((slot, key, value, when))
    batch.clear()
    return events


def _speedups() -> Any:
    """The C request path (``_speedups.c``), or None: not built, or
    ``SAMPLEZ_PURE=1`` in the environment."""
    if os.environ.get("SAMPLEZ_PURE", "") not in ("", "0"):
        return None
    try:
        from . import _speedups as module  # type: ignore[attr-defined]
    except ImportError:
        return None
    return module


#: The C module that runs ``set``, ``finish`` and the middleware's call,
#: or None when their Python twins here and in middleware.py run.
speedups = _speedups()
python_set = set
python_finish = finish
#: What holds a request's sets: a ``RequestBatch``, or the C module's ``Batch``.
new_batch: Any = RequestBatch
if speedups is not None:
    # The C versions hand every call off their usual path to these twins.
    speedups.setup(request_var, engine, python_set, python_finish, clock_failed, _SIDE)
    engine.use_pending(speedups.Pending)
    engine.mirror(speedups.mirror)
    new_batch = speedups.Batch
    set = speedups.set  # noqa: A001
    finish = speedups.finish

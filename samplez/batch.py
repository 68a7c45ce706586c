"""``samplez.set`` and the per-request batch.

``set`` runs on the request thread and does only in-memory work: it checks
the value, then appends one tuple either to the current request's batch (a
``contextvars`` variable, so threads and greenlets each see their own) or,
outside a request, to the process batch. When the request ends, ``join``
folds its batch into the process batch: for reservoirs one value per
(config, key), the last one set, kept with probability ``rate`` by one coin
flip per key shared by every config.
"""

from __future__ import annotations

import logging
import random
from contextvars import ContextVar
from typing import Any

from .engine import engine
from .metric import Event, resolve_targets

__all__ = ["begin", "end", "enter", "finish", "join", "leave", "set"]

log = logging.getLogger("samplez")
_request: ContextVar[list[tuple[Any, str, Any]] | None] = ContextVar("samplez.request", default=None)


def _key(key: object) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (bytes, bytearray, memoryview)):
        try:
            return bytes(key).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"samplez key bytes must be UTF-8, got {bytes(key)[:40]!r}") from None
    raise TypeError(f"samplez key must be a str (or UTF-8 bytes), got {type(key).__name__} {key!r}")


def set(target: Any, key: str | bytes, value: int | float | str = 1) -> None:  # noqa: A001
    """Record ``value`` for ``key`` in every config or counter of ``target``
    (a Config, a counter, a Section, or an iterable of them).

    Raises ``TypeError``/``ValueError`` here, at the call, for a value the
    target cannot take (``bool``, ``None``, NaN, ±inf, a str for a reservoir)
    or a key that is not text.

    >>> samplez.set(LATENCY, '/api/items', 124)
    """
    try:
        targets = target._samplez_targets
        checks = target._samplez_checks
    except AttributeError:
        targets, checks = resolve_targets(target)
    for check in checks:
        check(value)
    if key.__class__ is not str:
        key = _key(key)
    batch = _request.get()
    if batch is not None:
        batch.append((targets, key, value))
    else:
        when = engine.clock()
        if len(targets) == 1 and targets[0].rate == 1.0:
            engine.add((targets[0], key, value, when))
        else:
            engine.extend(join([(targets, key, value)], when))


def begin() -> Any:
    """Start a request batch in the current context; returns its token."""
    return _request.set([])


def end(token: Any) -> None:
    """Fold the current request's batch into the process batch and leave
    the request context (also when the handler raised)."""
    batch = _request.get()
    leave(token)
    finish(batch)


def enter(batch: list[tuple[Any, str, Any]]) -> Any:
    """Make ``batch`` the current request's batch; returns the token for
    :func:`leave`. The middleware enters around each call into the app, so
    a response never closed cannot leave its batch behind in the thread."""
    return _request.set(batch)


def leave(token: Any) -> None:
    try:
        _request.reset(token)
    except ValueError:  # left from another context: leave it empty instead
        _request.set(None)


def finish(batch: list[tuple[Any, str, Any]] | None) -> None:
    """Fold a request's batch into the process batch. Runs as the response
    closes, so it never raises: a clock that fails costs the request's
    samples (logged, counted as dropped), not the request."""
    if batch:
        try:
            events = join(batch, engine.clock())
        except Exception:
            log.exception("samplez: the clock failed; %d samples of this request dropped", len(batch))
            engine.drop(len(batch))
            return
        engine.extend(events)


def join(batch: list[tuple[Any, str, Any]], when: float) -> list[Event]:
    """The events of one request: see the module docstring."""
    events: list[Event] = []
    last: dict[tuple[Any, str], Any] = {}
    flips: dict[str, float] | None = None
    # Runs once per request on the request thread: kept to plain loops and
    # dict stores (bench/bench_request_path.py measures it).
    for targets, key, value in batch:
        for metric in targets:
            if not metric.dedup_in_request:
                events.append((metric, key, value, when))
                continue
            if metric.rate < 1.0:
                if flips is None:
                    flips = {}
                flip = flips.get(key)
                if flip is None:
                    flip = flips[key] = random.random()
                if flip >= metric.rate:
                    continue
            last[metric, key] = value
    for (metric, key), value in last.items():
        events.append((metric, key, value, when))
    return events

"""Published definitions: every process that writes a metric says in the
store what the metric is, so that a dashboard or ``/metrics`` that never
imported the writer's code reads it with the same code as its own.

Key layout (user text never appears in a key):

* ``<prefix>:_defs:<id>``: one definition, a format version byte and JSON
  ``{"v", "kind", "name", "title", "section", "params"}``; ``id`` is the
  digest of that JSON, so two writers that define one name differently
  publish two definitions, and a reader sees the conflict.
* ``<prefix>:_defs``: the listing, JSON ``{id: expiry time}``, merged with
  ``gets``/``cas`` as the workers' listing is (:mod:`samplez.workers`).

A flush that applies events of a metric whose definition it has not
published in the last :data:`EVERY` seconds publishes it, in the same
rounds as the events. A definition lives as long as the data it describes
(the metric's TTL, at least :data:`MIN_TTL`), so a metric whose writers
stopped stays listed while its data lives. A lost ``cas`` is retried at the
next flush that writes.

Readers (:func:`read_published`) build real metrics from the definitions,
:func:`~samplez.registry.detached`: never registered, never written or
published from the reading process. A local metric of the same name wins;
a definition that does not parse or disagrees with a local one or another
writer's is reported as a problem for the Health page, never raised.
"""

from __future__ import annotations

import json
import logging
import math
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from . import listings
from .counters import (
    BitmapCounter,
    CalendarCounter,
    HyperLogLogCounter,
    RollingCounter,
    RollingMax,
    SteppedCounter,
    UniqueCounter,
)
from .flush import Context, Outcome, Plan
from .metric import Metric
from .registry import detached, metric_at, registered_sections
from .reservoir import Config
from .store.keys import FORMAT_VERSION, digest

__all__ = ["EVERY", "MIN_TTL", "Published", "Publisher", "definition_of", "read_published"]

log = logging.getLogger("samplez")

#: The format of a definition's JSON (its ``v``), apart from the store's
#: version byte: a reader says which versions it cannot read.
VERSION = 1
#: Seconds between two publications of one definition by one process.
EVERY = 5.0
#: The shortest life of a definition, longer than :data:`EVERY`.
MIN_TTL = 60
#: A listing never names more definitions than this (a runaway writer).
MAX_DEFINITIONS = 2000
_VERSION_BYTE = bytes([FORMAT_VERSION])

#: Per kind, the class that rebuilds it and the parameters a reader needs.
_STEPPED = ("step", "keep", "start_time", "roll", "max_keys")
KINDS: dict[str, tuple[type[Metric], tuple[str, ...]]] = {
    "reservoir": (
        Config,
        (
            "period",
            "samples",
            "by_value",
            "by_domain",
            "rate",
            "max_key_length",
            "tolerance",
            "key_name",
            "value_units",
        ),
    ),
    "rolling": (RollingCounter, ("window", "buckets", "max_keys")),
    "rolling_max": (RollingMax, ("window", "buckets", "max_keys")),
    "stepped": (SteppedCounter, (*_STEPPED, "start_at")),
    "unique": (UniqueCounter, _STEPPED),
    "hll": (HyperLogLogCounter, (*_STEPPED, "precision")),
    "bitmap": (BitmapCounter, _STEPPED),
    "calendar": (CalendarCounter, ("retention", "max_keys")),
}


@dataclass(frozen=True)
class Definition:
    """One metric's published form: its id, stored value and TTL."""

    id: str
    body: dict[str, Any]
    ttl: int

    @property
    def value(self) -> bytes:
        return _VERSION_BYTE + _canonical(self.body).encode()


def _canonical(body: Mapping[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def _params(metric: Metric) -> dict[str, Any] | None:
    known = KINDS.get(metric.kind)
    if known is None or type(metric) is not known[0]:
        return None  # a kind of the user's own: no reader could rebuild it
    return {name: getattr(metric, name) for name in known[1]}


def _section_of(metric: Metric) -> str | None:
    titles = sorted(section.title for section in registered_sections() if metric in section.metrics)
    return titles[0] if titles else None


_definitions: weakref.WeakKeyDictionary[Metric, Definition | None] = weakref.WeakKeyDictionary()


def definition_of(metric: Metric) -> Definition | None:
    """``metric``'s definition (made once), ``None`` for a kind no reader
    can rebuild."""
    try:
        return _definitions[metric]
    except KeyError:
        pass
    params = _params(metric)
    made = None
    if params is not None:
        body = {
            "v": VERSION,
            "kind": metric.kind,
            "name": metric.name,
            "title": metric.title,
            "section": _section_of(metric),
            "params": params,
        }
        ttl = max(int(getattr(metric, "ttl", 0)), MIN_TTL)
        made = Definition(digest(_canonical(body)), body, ttl)
    _definitions[metric] = made
    return made


class Publisher:
    """What this process published and when: made anew after a fork (a new
    writer publishes its own)."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def plan(self, ctx: Context, slots: Iterable[int]) -> Plan | None:
        """The plan that publishes the definitions of the metrics of
        ``slots`` that are due, or ``None`` when none is."""
        now = time.monotonic()
        due: dict[str, Definition] = {}
        for slot in slots:
            metric = metric_at(slot)
            made = definition_of(metric) if metric is not None else None
            if made is not None and now - self._last.get(made.id, -math.inf) >= EVERY:
                due[made.id] = made
        if not due:
            return None
        for id_ in due:
            self._last[id_] = now
        return self._publish(ctx, list(due.values()))

    def _publish(self, ctx: Context, due: list[Definition]) -> Plan:
        """Write the definitions and list them (two rounds)."""
        records = {made.id: (made.value, made.ttl) for made in due}
        if not (yield from listings.publish(ctx, "_defs", records, MAX_DEFINITIONS)):
            for made in due:
                self._last.pop(made.id, None)  # publish again at the next flush that writes
        return Outcome()


@dataclass
class Published:
    """What the store says other processes defined: ``(section title,
    metrics)`` pairs, and the definitions that could not be shown and why."""

    sections: list[tuple[str | None, list[Metric]]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)


#: Metrics built from definitions, by stored value: read again and again,
#: built once.
_built: dict[bytes, Metric | str] = {}


def _build(raw: bytes, body: object) -> Metric | str:
    """The metric a definition (``raw`` as stored) describes, or why there
    is none."""
    if raw in _built:
        return _built[raw]
    made: Metric | str
    if not isinstance(body, dict):
        made = "not a definition (unreadable JSON or an unknown store format)"
    elif body.get("v") != VERSION:
        made = f"format version {body.get('v')!r}, this reader knows {VERSION}"
    elif body.get("kind") not in KINDS or not isinstance(body.get("params"), dict):
        made = f"unknown kind {body.get('kind')!r}"
    else:
        cls, names = KINDS[body["kind"]]
        params = {name: body["params"][name] for name in names if name in body["params"]}
        try:
            with detached():
                made = cls(body.get("name"), title=body.get("title"), **params)  # type: ignore[call-arg,arg-type]
        except (TypeError, ValueError) as exc:  # ConfigError is a ValueError
            made = f"does not parse: {exc}"
    if len(_built) > MAX_DEFINITIONS:
        _built.clear()
    _built[raw] = made
    return made


def _problem(body: object, why: str) -> dict[str, Any]:
    fields = body if isinstance(body, dict) else {}

    def shown(name: str, limit: int) -> str:
        value = fields.get(name)
        return "" if value is None else str(value)[:limit]

    return {"name": shown("name", 200), "kind": shown("kind", 40), "title": shown("title", 200), "problem": why[:500]}


def read_published(ctx: Context, local: Mapping[str, Metric]) -> Published:
    """Every metric the store lists that ``local`` (this process's metrics
    by name) does not define, grouped by section title, newest definitions
    first; what cannot be shown goes to ``problems``. Never raises on what
    another process wrote."""
    published = Published()
    chosen: dict[str, tuple[str, Metric]] = {}
    groups: dict[str | None, list[Metric]] = {}
    for raw, body in listings.read(ctx, "_defs"):
        made = _build(raw, body)
        if isinstance(made, str):
            published.problems.append(_problem(body, made))
            continue
        mine = local.get(made.name)
        if mine is not None:
            if _params(mine) != _params(made) or mine.kind != made.kind:
                published.problems.append(_problem(body, "conflicts with this process's own metric of that name"))
            continue
        if made.name in chosen:
            if chosen[made.name][0] != _canonical(_params(made) or {}) + made.kind:
                published.problems.append(_problem(body, "another writer defines this name differently"))
            continue
        chosen[made.name] = (_canonical(_params(made) or {}) + made.kind, made)
        section = body.get("section") if isinstance(body, dict) else None
        groups.setdefault(section if isinstance(section, str) else None, []).append(made)
    titled = sorted(groups.items(), key=lambda group: (group[0] is None, group[0] or ""))
    published.sections = [(title, sorted(metrics, key=lambda m: m.name)) for title, metrics in titled]
    return published

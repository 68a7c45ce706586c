"""The flush protocol, and the runner that applies a batch of events.

The protocol keeps algorithms apart from the wire. A metric's ``apply`` is
a generator (a :data:`Plan`): each ``yield`` hands the flusher a list of
store ops and receives their results; :func:`run` drives every metric's plan
in lock step, so one pipelined round trip per server serves all of them. A
plan must finish within :data:`MAX_ROUNDS` yields and returns an
:class:`Outcome`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Generator, Mapping, Sequence

from .registry import metric_at
from .store.base import Op, count_failures

if TYPE_CHECKING:
    from .store.base import Store
    from .store.keys import KeySpace

__all__ = ["MAX_ROUNDS", "Context", "Event", "FlushTotals", "Outcome", "Plan", "group", "run"]

log = logging.getLogger("samplez.flush")
_slot = itemgetter(0)

MAX_ROUNDS = 3
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


class FlushTotals:
    """What one flush did."""

    __slots__ = ("applied", "failed", "round_trips", "errors", "retry")

    def __init__(self) -> None:
        self.applied = 0
        self.failed = 0
        self.round_trips = 0
        self.errors = 0
        self.retry: list[Event] = []


def group(events: Sequence[Event]) -> dict[int, list[Event]]:
    """``{slot: [events, in order]}`` (a stable sort keeps each metric's
    events in the order they came)."""
    return {slot: list(run) for slot, run in groupby(sorted(events, key=_slot), key=_slot)}


def run(groups: Mapping[int, Sequence[Event]], ctx: Context, also: Sequence[Plan] = ()) -> FlushTotals:
    """Apply ``groups`` (events by slot, from :func:`group`) to ``ctx.store``,
    with the plans ``also`` (that apply no events) in the same rounds."""
    totals = FlushTotals()
    live: list[tuple[Plan, list[Op], int]] = []
    for plan in also:
        try:
            live.append((plan, next(plan), 0))
        except StopIteration:
            pass
    for slot, batch in groups.items():
        metric = metric_at(slot)
        if metric is None:  # dropped by its owner before its events were applied
            totals.failed += len(batch)
            continue
        plan = metric.apply(batch, ctx)
        try:
            live.append((plan, next(plan), len(batch)))
        except StopIteration as stop:
            _account(totals, stop.value)
        except Exception:
            log.exception("samplez: planning the flush of %r failed", metric)
            totals.failed += len(batch)

    for round_number in range(1, MAX_ROUNDS + 1):
        if not live:
            break
        ops = [op for _, plan_ops, _ in live for op in plan_ops]
        results: list[Any]
        results, trips = ctx.store.execute(ops)
        totals.round_trips += trips
        totals.errors += count_failures(results)
        still: list[tuple[Plan, list[Op], int]] = []
        offset = 0
        for plan, plan_ops, size in live:
            answer = results[offset : offset + len(plan_ops)]
            offset += len(plan_ops)
            try:
                next_ops = plan.send(answer)
            except StopIteration as stop:
                _account(totals, stop.value)
                continue
            except Exception:
                log.exception("samplez: a flush plan failed")
                totals.failed += size
                continue
            if round_number == MAX_ROUNDS:
                plan.close()
                log.error("samplez: a flush plan wanted more than %d round trips", MAX_ROUNDS)
                totals.failed += size
            else:
                still.append((plan, next_ops, size))
        live = still
    return totals


def _account(totals: FlushTotals, outcome: Outcome | None) -> None:
    if outcome is None:
        return
    totals.applied += outcome.applied
    totals.failed += outcome.failed
    totals.retry.extend(outcome.retry)

"""Fixed-window counters that keep previous steps: :class:`SteppedCounter`
and :class:`UniqueCounter` (scrapy-cluster StatsCollector's TimeWindow,
Counter and UniqueCounter, hops' hopping windows).

Steps are aligned to the epoch plus the ``start_time`` offset: step index =
``floor((when - offset) / step)``, so 9:00-9:15 Monday and 9:00-9:15 Tuesday
are different steps with different memcache keys. Each step's keys live
``(keep + 1) * step`` seconds plus a margin, which is how ``keep`` prunes:
older steps are neither read nor kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..checks import check_item, config_error, seconds
from ..flush import Context, Event, Outcome, Plan
from ..store.base import REFUSED, Op, add, get, incr, set_
from ..store.keys import MAX_COUNT, count_of, digest
from .base import Counter, CounterResult, Reading, by_key_and_step, count_ops, fit, send_repairs, settle_counts, ttl_for

__all__ = ["StepReading", "SteppedCounter", "UniqueCounter"]

MAX_KEEP = 1000


@dataclass
class StepReading(Reading):
    """One key of a stepped counter: ``value`` in the current step (which
    started at ``step_start``) and ``history``, up to ``keep`` previous
    steps as ``(step_start, value)`` pairs, newest first."""

    value: int = 0
    history: list[tuple[float, int]] = field(default_factory=list)
    step_start: float = 0

    @property
    def display_value(self) -> float:
        return self.value

    @property
    def series(self) -> list[float]:
        values: list[float] = [value for _, value in reversed(self.history)]
        values.append(self.value)
        return values


class Stepped(Counter):
    """The step arithmetic and the reading shared by every stepped counter.

    :param step: seconds per step.
    :param keep: previous steps kept and read back (0-1000).
    :param start_time: UNIX time steps are aligned to (its remainder modulo
        ``step`` offsets every step); required when ``roll=False``.
    :param roll: move on to a new step when one ends; with ``roll=False``
        only ``[start_time, start_time + step)`` counts.
    :param max_keys: keys listed in the index; later keys count as ``(other)``.
    """

    def __init__(
        self,
        name: str,
        step: int,
        keep: int = 12,
        start_time: float | None = None,
        roll: bool = True,
        max_keys: int = 100,
        title: str | None = None,
    ) -> None:
        super().__init__(name, max_keys, title)
        self.step = seconds("step", step)
        if type(keep) is not int or not 0 <= keep <= MAX_KEEP:
            raise config_error("keep", f"must be an int in [0, {MAX_KEEP}]", keep)
        if roll not in (True, False):
            raise config_error("roll", "must be True or False", roll)
        if start_time is not None and (
            isinstance(start_time, bool)
            or not isinstance(start_time, (int, float))
            or not math.isfinite(start_time)
            or start_time < 0
        ):
            raise config_error("start_time", "must be a UNIX time >= 0 or None", start_time)
        if not roll and start_time is None:
            raise config_error("start_time", "is required when roll=False (the one window to count)", start_time)
        # Without roll there is one step to read, still remembered for
        # ``keep`` steps after it ends.
        self.ttl = ttl_for((keep + 1) * self.step)
        self.keep = keep if roll else 0
        self.start_time = start_time
        self.roll = bool(roll)
        self.offset = (start_time or 0) % self.step
        self._setup_index()

    def step_of(self, when: float) -> int | None:
        """The step holding ``when``; ``None`` outside a non-rolling window."""
        index = int((when - self.offset) // self.step)
        if not self.roll and index != self.step_of_start():
            return None
        return index

    def step_of_start(self) -> int:
        return int(((self.start_time or 0) - self.offset) // self.step)

    def step_start(self, index: int) -> float:
        start = index * self.step + self.offset
        return int(start) if float(start).is_integer() else start

    def steps_to_read(self, now: float) -> list[int]:
        """The current step, then up to ``keep`` previous ones."""
        current = int((now - self.offset) // self.step) if self.roll else self.step_of_start()
        return [current - back for back in range(self.keep + 1)]

    def _group(self, events: Sequence[Event], stored: dict[str, str], outcome: Outcome) -> dict[tuple[str, int], list]:
        groups = by_key_and_step(events, stored, self.step, self.offset)
        if not self.roll:  # only the one window of roll=False counts
            start = self.step_of_start()
            for outside in [where for where in groups if where[1] != start]:
                outcome.applied += len(groups.pop(outside))
        return groups

    def read(self, ctx: Context, **options: Any) -> CounterResult:
        if options:
            raise TypeError(f"unexpected options for a {type(self).__name__}: {', '.join(options)}")
        steps = self.steps_to_read(ctx.now)
        return CounterResult(self, self.listed(ctx), lambda keys: self._load(keys, steps, ctx))

    def read_current(self, ctx: Context) -> CounterResult:
        """The current step of every key, its history left empty."""
        steps = self.steps_to_read(ctx.now)[:1]
        return CounterResult(self, self.listed(ctx), lambda keys: self._load(keys, steps, ctx))

    def _load(self, keys: list[str], steps: list[int], ctx: Context) -> dict[str, Any]:
        values = self.step_values(keys, steps, ctx)
        return {key: self.reading(steps, values[key]) for key in keys}

    def reading(self, steps: list[int], values: list[Any]) -> StepReading:
        """Current value and history; steps older than the oldest one with
        data are left out of the history ("up to keep")."""
        history = [(self.step_start(index), value or 0) for index, value in zip(steps[1:], values[1:])]
        while history and values[len(history)] is None:
            history.pop()
        return StepReading(values[0] or 0, history, self.step_start(steps[0]))

    def step_values(self, keys: list[str], steps: list[int], ctx: Context) -> dict[str, list[Any]]:
        """Per key, one value per step (``None`` when the step has no data)."""
        results = self.read_steps(keys, steps, ctx)
        width = len(steps)
        return {
            key: [count_of(raw) if isinstance(raw, bytes) else None for raw in results[i * width : (i + 1) * width]]
            for i, key in enumerate(keys)
        }

    #: What follows the step in a count key (``count_key``).
    count_suffix = ""

    def count_key(self, ctx: Context, key: str, index: int) -> str:
        return f"{self.data_prefix(ctx, key)}:{index}{self.count_suffix}"

    def read_steps(self, keys: list[str], steps: list[int], ctx: Context) -> list[Any]:
        """The stored count values of every key's ``steps``, key by key, in
        one round trip; each key hashed once, not once per step."""
        suffixes = [f":{index}{self.count_suffix}" for index in steps]
        prefixes = [self.data_prefix(ctx, key) for key in keys]
        results, _ = ctx.store.execute([get(prefix + suffix) for prefix in prefixes for suffix in suffixes])
        return results


class SteppedCounter(Stepped):
    """Adds per key within fixed, epoch-aligned steps and keeps the previous
    ``keep`` steps (StatsCollector's TimeWindow and Counter).

    :param start_at: the value every step's counter starts from.

    Other parameters as :class:`Stepped`.

    >>> LOGINS = SteppedCounter('logins_15m', step=SECONDS_15_MINUTE, keep=4)
    >>> samplez.set(LOGINS, 'alice')
    >>> samplez.get(LOGINS)['alice'].history
    """

    kind = "stepped"

    def __init__(
        self,
        name: str,
        step: int,
        keep: int = 12,
        start_time: float | None = None,
        roll: bool = True,
        start_at: int = 0,
        max_keys: int = 100,
        title: str | None = None,
    ) -> None:
        if type(start_at) is not int or not 0 <= start_at <= MAX_COUNT:
            raise config_error("start_at", "must be an int from 0 to 2**53", start_at)
        self.start_at = start_at
        super().__init__(name, step, keep, start_time, roll, max_keys, title)

    def apply(self, events: Sequence[Event], ctx: Context) -> Plan:
        admission = yield from self.admit(events, ctx)
        outcome = Outcome()
        writes: list[tuple[str, int, Sequence[Event]]] = []
        for (key, index), batch in self._group(events, admission.stored, outcome).items():
            kept, amount = fit(batch, self.start_at, outcome)
            writes.append((self.count_key(ctx, key, index), amount, kept))
        ops: list[Op] = list(admission.ops)
        for key, amount, _ in writes:
            ops += count_ops(key, amount, self.ttl, self.start_at)
        results = yield ops
        admission.settle(results[: len(admission.ops)])
        repairs = settle_counts(writes, results[len(admission.ops) :], self.ttl, outcome, self.start_at)
        yield from send_repairs(repairs, outcome)
        return outcome


def item_digest(item: str | int) -> str:
    """A memcache-safe name for an item; ``5`` and ``'5'`` stay distinct."""
    return digest(f"{'i' if isinstance(item, int) else 's'}:{item}")


class UniqueCounter(Stepped):
    """Counts distinct items per key per step, exactly, across processes.

    Each (key, step, item) gets a memcache ``add`` marker: only the writer
    whose ``add`` stored it counts the item, so two processes seeing the same
    item never both count it. Markers live as long as their step is kept.
    Parameters as :class:`Stepped`; values are str or int items.

    >>> VISITORS = UniqueCounter('visitors_1h', step=SECONDS_1_HOUR)
    >>> samplez.set(VISITORS, '/home', user_id)
    """

    kind = "unique"
    check_value = staticmethod(check_item)

    def apply(self, events: Sequence[Event], ctx: Context) -> Plan:
        admission = yield from self.admit(events, ctx)
        outcome = Outcome()
        groups = self._group(events, admission.stored, outcome)
        counts: list[str] = []
        markers: list[tuple[int, list[Event]]] = []
        probes: list[Op] = []
        marks: list[Op] = []
        for g, ((key, index), batch) in enumerate(groups.items()):
            count = self.count_key(ctx, key, index)
            counts.append(count)
            # Probe the count now (incr 0), so foreign bytes are repaired in
            # the next round instead of needing a fourth.
            probes += [add(count, b"0", self.ttl), incr(count, 0)]
            items: dict[str, list[Event]] = {}
            for event in batch:
                items.setdefault(item_digest(event[2]), []).append(event)
            for item, same in items.items():
                marks.append(add(self.data_key(ctx, key, index, "m", item), b"1", self.ttl))
                markers.append((g, same))
        results = yield admission.ops + probes + marks
        admission.settle(results[: len(admission.ops)])
        results = results[len(admission.ops) :]
        found = results[1 : 2 * len(counts) : 2]
        fresh = [0] * len(counts)
        touched: list[list[Event]] = [[] for _ in counts]
        for (g, same), stored in zip(markers, results[2 * len(counts) :]):
            if stored is True:
                fresh[g] += 1
                touched[g].extend(same)
            elif stored is False:  # already counted, by us or another process
                outcome.applied += len(same)
            else:
                outcome.failed += len(same)
        writes: list[Op] = []
        pending: list[list[Event]] = []
        for count, probe, amount, same in zip(counts, found, fresh, touched):
            if not amount:
                continue
            foreign = probe is REFUSED or (isinstance(probe, int) and probe > MAX_COUNT)  # garbage: start again
            writes.append(set_(count, str(amount).encode(), self.ttl) if foreign else incr(count, amount))
            pending.append(same)
        if writes:
            results = yield writes
            for same, result in zip(pending, results):
                if result is True or isinstance(result, int):
                    outcome.applied += len(same)
                else:
                    outcome.failed += len(same)
        return outcome

    count_suffix = ":n"

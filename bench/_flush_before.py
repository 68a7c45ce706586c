"""The reservoir flush loop as first committed (70c6ac3), kept only so that
``bench_flush.py`` can measure it beside the current one in the same run
(the machine is too noisy for figures taken at different times).

It normalized and encoded every event's key although only the events that
land in a slot are written.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

from samplez.keys import encode_sample
from samplez.metric import Context, Event, Outcome, Plan
from samplez.store.base import REFUSED, add, incr, is_failure, set_


def apply(config: Any, events: Sequence[Event], ctx: Context) -> Plan:
    space, name, samples, ttl = ctx.space, config.name, config.samples, config.ttl
    periods: dict[int, list[tuple[str, float, float]]] = {}
    for _, key, value, when in events:
        periods.setdefault(int(when // config.period), []).append((config.normalize_key(key), when, float(value)))

    ops = []
    for index, batch in periods.items():
        counter = space.key(name, index, "n")
        ops += [add(counter, b"0", ttl), incr(counter, len(batch))]
    results = yield ops

    outcome = Outcome()
    slots: dict[str, bytes] = {}
    writes = []
    rand = random.random
    for (index, batch), total in zip(periods.items(), results[1::2]):
        if total is REFUSED:
            # Someone else's bytes sit under our counter: start it again.
            writes.append(set_(space.key(name, index, "n"), str(len(batch)).encode(), ttl))
            total = len(batch)
        elif not isinstance(total, int):
            outcome.failed += len(batch)
            continue
        n = total - len(batch)
        for key, when, value in batch:
            slot = n if n < samples else int(rand() * (n + 1))
            if slot < samples:
                slots[space.key(name, index, slot)] = encode_sample(key, when, value)
            n += 1
        outcome.applied += len(batch)
    writes += [set_(key, raw, ttl) for key, raw in slots.items()]
    results = yield writes
    lost = sum(1 for result in results if is_failure(result))
    outcome.applied -= lost
    outcome.failed += lost
    return outcome

"""Read many metrics in a few round trips: every reader's gets of one
depth go to the store in one pipeline.

A metric's reader issues its gets in dependent steps (the key index, then
the keys' data; a bitmap's directory, then its chunks) and each step is a
round trip, so reading fifty metrics one after the other costs a hundred
round trips. :func:`read_together` runs every reader against a
:class:`Prefetch` store instead, which answers from what it has fetched and
notes the rest as missing (answering "missing", which readers already
handle); it then fetches all the noted keys in one round trip and runs
again the readers that missed something, until none does. Readers are
pure functions of what they read (the clock is fixed in their context),
so the last run of each is exactly what it would have read directly. A
scrape costs as many round trips as the deepest reader has steps (three),
whatever the number of metrics and keys; each reader runs once more than
it has steps, the early runs over empty answers.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

from .base import Op, Store, count_failures, get

__all__ = ["MAX_DEPTH", "Prefetch", "Together", "read_together"]

T = TypeVar("T")

#: Rounds of fetching for missing keys; past them, a reader still missing
#: some (one with more dependent steps than any of ours) fetches its own.
MAX_DEPTH = 4


class Prefetch(Store):
    """A store for readers: ``get`` answers from what :meth:`fetch` read,
    noting any other key as missing (or, when ``eager``, fetching it at
    once); any other op goes to ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.kind = store.kind
        self.shared = store.shared
        self.known: dict[str, Any] = {}
        self.missing: dict[str, None] = {}
        #: Gets answered "missing" so far (a key missed twice counts twice).
        self.misses = 0
        self.eager = False
        self.round_trips = 0
        self.failures = 0

    def execute(self, ops: Sequence[Op]) -> tuple[list[Any], int]:
        if any(op.cmd != "get" for op in ops):
            return self._direct(ops)
        known = self.known
        unknown = [op.key for op in ops if op.key not in known]
        if unknown:
            self.missing.update(dict.fromkeys(unknown))
            if self.eager:
                self.fetch()
            else:
                self.misses += len(unknown)
        return [known.get(op.key) for op in ops], 0

    def fetch(self) -> bool:
        """Read every key noted missing in one round trip; ``False`` when
        none was."""
        if not self.missing:
            return False
        keys, self.missing = list(self.missing), {}
        results, _ = self._direct([get(key) for key in keys])
        self.known.update(zip(keys, results))
        return True

    def _direct(self, ops: Sequence[Op]) -> tuple[list[Any], int]:
        results, trips = self.store.execute(ops)
        self.round_trips += trips
        self.failures += count_failures(results)
        return results, trips

    def describe(self) -> str:
        return self.store.describe()


class Together:
    """What :func:`read_together` read: each reader's value (or the
    exception it raised), the round trips, and how many reads failed
    (a server unreachable or refusing)."""

    def __init__(self, values: list[Any], round_trips: int, failures: int) -> None:
        self.values = values
        self.round_trips = round_trips
        self.failures = failures


def read_together(store: Store, readers: Sequence[Callable[[Store], T]]) -> Together:
    """Run every ``reader(store)``, their gets pipelined together (see the
    module docstring). A reader that raises gives its exception as its
    value, so one bad metric does not hide the others."""
    prefetch = Prefetch(store)
    values: list[Any] = [None] * len(readers)
    pending = list(range(len(readers)))
    for _ in range(MAX_DEPTH):
        missed = []
        for i in pending:
            before = prefetch.misses
            values[i] = _run(readers[i], prefetch)
            if prefetch.misses > before:
                missed.append(i)
        pending = missed
        if not prefetch.fetch():
            break
    else:
        prefetch.eager = True
        for i in pending:
            values[i] = _run(readers[i], prefetch)
    return Together(values, prefetch.round_trips, prefetch.failures)


def _run(reader: Callable[[Store], T], store: Store) -> Any:
    try:
        return reader(store)
    except Exception as exc:
        return exc

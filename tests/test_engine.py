"""The engine: events a flush hands back are retried, also at exit."""

from __future__ import annotations

import samplez
from samplez.engine import engine
from samplez.flush import Outcome
from samplez.metric import Metric
from tests.conftest import unique_name


class Flaky(Metric):
    """Hands its events back ``misses`` times (as a lost compare-and-swap
    does), then applies them."""

    kind = "flaky"

    def __init__(self, misses: int) -> None:
        super().__init__(unique_name("flaky"))
        self.misses = misses
        self.applied: list[object] = []
        self._register()

    def apply(self, events, ctx):
        yield []  # no store work needed
        if self.misses:
            self.misses -= 1
            return Outcome(retry=list(events))
        self.applied.extend(value for _, _, value, _ in events)
        return Outcome(applied=len(events))


def test_handed_back_events_wait_for_the_next_flush(samplez_on):
    metric = Flaky(misses=1)
    samplez.set(metric, "k", 7)
    assert samplez.flush().applied == 0 and engine.pending == 1
    assert samplez.flush().applied == 1 and metric.applied == [7]


def test_exit_retries_handed_back_events(samplez_on):
    metric = Flaky(misses=2)
    samplez.set(metric, "k", 1)
    engine._at_exit()
    assert metric.applied == [1] and engine.pending == 0


def test_exit_gives_up_after_a_few_tries(samplez_on):
    metric = Flaky(misses=100)
    samplez.set(metric, "k", 1)
    engine._at_exit()
    assert metric.applied == [] and engine.pending == 1

"""CalendarCounter: Bootic's hour/day/month/year rollups and the ``all``
key, over MemoryStore and a real memcached."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

import samplez
from samplez.counters.calendars import segments_of
from tests.conftest import Clock, unique_name


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=timezone.utc).timestamp()  # type: ignore[misc]


def flush() -> None:
    summary = samplez.flush()
    assert summary.dropped == 0, summary


@pytest.fixture
def signups(samplez_on: samplez.Store, clock: Clock) -> samplez.CalendarCounter:
    """A calendar counter fed across two years, months, days and hours."""
    cal = samplez.CalendarCounter(unique_name("signups"))
    for when, key, value in [
        (at(2026, 2, 3, 10, 5), "pro", 1),
        (at(2026, 2, 3, 10, 55), "pro", 2),
        (at(2026, 2, 3, 23, 59, 59), "free", 4),
        (at(2026, 2, 28, 0, 0), "pro", 8),
        (at(2026, 12, 31, 23, 0), "free", 16),
        (at(2027, 1, 1, 0, 0), "pro", 32),
    ]:
        clock.now = when
        samplez.set(cal, key, value)
    flush()
    return cal


def test_year_rolls_up_by_month(signups: samplez.CalendarCounter) -> None:
    year = samplez.get(signups, year=2026)
    assert year["pro"] == {**dict.fromkeys(range(1, 13), 0), 2: 11}
    assert year["free"][2] == 4 and year["free"][12] == 16
    assert year["all"] == {**dict.fromkeys(range(1, 13), 0), 2: 15, 12: 16}
    assert samplez.get(signups, year=2027)["all"][1] == 32


def test_month_rolls_up_by_day(signups: samplez.CalendarCounter) -> None:
    february = samplez.get(signups, year=2026, month=2)
    assert list(february["pro"]) == list(range(1, 29))
    assert (february["pro"][3], february["pro"][28], february["free"][3]) == (3, 8, 4)
    assert february["all"].display_value == 15


def test_day_rolls_up_by_hour_and_an_hour_is_one_segment(signups: samplez.CalendarCounter) -> None:
    day = samplez.get(signups, year=2026, month=2, day=3)
    assert list(day["all"]) == list(range(24))
    assert (day["all"][10], day["all"][23], day["pro"][23]) == (3, 4, 0)
    assert samplez.get(signups, year=2026, month=2, day=3, hour=10)["pro"] == {0: 3}


def test_zero_padded_parts_name_the_same_segment(signups: samplez.CalendarCounter) -> None:
    assert (
        samplez.get(signups, year="2026", month="02", day="03")["pro"]
        == samplez.get(signups, year=2026, month=2, day=3)["pro"]
    )


def test_reading_now_gives_the_current_hour_day_month_and_year(signups: samplez.CalendarCounter, clock: Clock) -> None:
    clock.now = at(2026, 2, 3, 10, 30)
    result = samplez.get(signups)
    assert result.keys()[0] == "all" and set(result.keys()) == {"all", "pro", "free"}
    pro = result["pro"]
    assert (pro.hour, pro.day, pro.month, pro.year) == (3, 3, 11, 11)
    assert pro.series[10] == 3 and len(pro.series) == 24
    assert result["all"].day == 7
    assert json.loads(json.dumps(result.as_dict()))["free"]["day"] == 4
    assert result["nobody"].year == 0


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param({"year": 2026, "month": 13}, id="month-13"),
        pytest.param({"year": 2026, "month": 0}, id="month-0"),
        pytest.param({"year": 2026, "month": 2, "day": 30}, id="feb-30"),
        pytest.param({"year": 2025, "month": 2, "day": 29}, id="feb-29-not-leap"),
        pytest.param({"year": 2026, "month": 1, "day": 1, "hour": 24}, id="hour-24"),
        pytest.param({"year": -1}, id="year-negative"),
        pytest.param({"year": 10_000}, id="year-10000"),
        pytest.param({"year": 2026, "day": 3}, id="day-without-month"),
        pytest.param({"year": 2026, "month": 1, "hour": 3}, id="hour-without-day"),
        pytest.param({"month": 3}, id="month-without-year"),
        pytest.param({"year": "twenty"}, id="year-text"),
        pytest.param({"year": 2026.0}, id="year-float"),
    ],
)
def test_impossible_dates_raise_value_error(parts: dict) -> None:
    with pytest.raises(ValueError):
        segments_of(**{"year": None, **parts})


def test_feb_29_of_a_leap_year_is_a_day() -> None:
    assert len(segments_of(2028, 2, 29)) == 24


@pytest.mark.usefixtures("samplez_on")
def test_calendar_get_rejects_impossible_dates() -> None:
    cal = samplez.CalendarCounter(unique_name("cal"))
    with pytest.raises(ValueError, match="month"):
        samplez.get(cal, year=2026, month=13)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"retention": 0}, id="retention-zero"),
        pytest.param({"retention": -86400}, id="retention-negative"),
        pytest.param({"retention": "1y"}, id="retention-str"),
        pytest.param({"max_keys": 0}, id="max-keys-zero"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict) -> None:
    field = next(iter(kwargs))
    with pytest.raises(samplez.ConfigError, match=f"^{field} "):
        samplez.CalendarCounter(unique_name("bad"), **kwargs)


@pytest.mark.parametrize(
    "value, error",
    [
        pytest.param(1.0, TypeError, id="float"),
        pytest.param("1", TypeError, id="str"),
        pytest.param(-1, ValueError, id="negative"),
    ],
)
def test_bad_values_raise_at_set(value: object, error: type) -> None:
    cal = samplez.CalendarCounter(unique_name("cal"))
    with pytest.raises(error):
        samplez.set(cal, "a", value)


def test_a_long_retention_survives_memcached_30_day_rule(memcached, clock: Clock) -> None:
    # The TTL (two years) is past 30 days: the store must send it as an
    # absolute time, or memcached would expire the counts at once.
    samplez.configure(store=samplez.MemcacheStore(memcached.address), flush="request")
    cal = samplez.CalendarCounter(unique_name("cal"))
    samplez.set(cal, "k", 5)
    flush()
    now = datetime.now(timezone.utc)
    assert samplez.get(cal, year=now.year)["k"][now.month] == 5

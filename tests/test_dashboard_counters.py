"""Every counter kind on the dashboard (value, sparkline or bar chart, JSON
twin, drill-down), and the calendar JSON API on a real calendar counter."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

import samplez
from samplez.dashboard.formatting import jsonable
from samplez.registry import unregister
from tests.conftest import unique_name
from tests.test_dashboard import local_app, strict_json, table_keys

COUNTERS = [
    pytest.param(lambda n: samplez.RollingCounter(n, window=60), [3, 4, 5], "spark", id="rolling"),
    pytest.param(lambda n: samplez.RollingMax(n, window=60), [3.5, 9.25, 1.0], "spark", id="rolling-max"),
    pytest.param(lambda n: samplez.SteppedCounter(n, step=60), [3, 4, 5], "spark", id="stepped"),
    pytest.param(lambda n: samplez.UniqueCounter(n, step=60), ["u1", "u2", "u1"], "spark", id="unique"),
    pytest.param(lambda n: samplez.HyperLogLogCounter(n, step=60), ["u1", "u2", 3], "spark", id="hll"),
    pytest.param(lambda n: samplez.BitmapCounter(n, step=60), [1, 7, 7], "spark", id="bitmap"),
    pytest.param(lambda n: samplez.CalendarCounter(n), [3, 4, 5], "bars", id="calendar"),
]


@pytest.mark.parametrize("make, values, chart", COUNTERS)
def test_every_counter_kind_shows_values_and_a_chart(samplez_on, clock, make, values, chart):
    counter = make(unique_name("ctr"))
    for value in values:
        samplez.set(counter, "GET /hot", value)
        clock.advance(7)
    samplez.set(counter, "GET /cold", values[0])
    samplez.flush()
    app = local_app(samplez.Dashboard(sections=samplez.Section("Counters", counter)))
    try:
        page = app.get("/")
        keys = table_keys(page.text)
        assert "GET /hot" in keys and "GET /cold" in keys
        assert page.text.count(f'<svg class="{chart}"') == len(keys)
        metric = strict_json(app.get("/?format=json").text)["sections"][0]["metrics"][0]
        reading = samplez.get(counter)
        assert metric["kind"] == counter.kind and metric["unique_keys"] == len(reading.keys())
        for row in metric["rows"]:
            assert row["value"] == jsonable(reading[row["key"]].display_value)
            assert row["series"] == jsonable(reading[row["key"]].series)
        hot = reading["GET /hot"].display_value
        assert hot > reading["GET /cold"].display_value or counter.kind in ("bitmap", "rolling_max")
        detail = strict_json(app.get(f"/config/{counter.name}/key", params={"key": "GET /hot", "format": "json"}).text)
        assert detail["key"]["value"] == jsonable(hot)
        assert detail["key"]["detail"] == jsonable(reading["GET /hot"].as_dict())
        assert app.get(f"/config/{counter.name}/key", params={"key": "GET /hot"}).status_int == 200
    finally:
        unregister(counter)


@pytest.fixture
def views(samplez_on, clock):
    """A calendar counter with 3 views of plan:pro and 2 of plan:free, all in
    the clock's current hour."""
    counter = samplez.CalendarCounter(unique_name("views"))
    for key, times in (("plan:pro", 3), ("plan:free", 2)):
        for _ in range(times):
            samplez.set(counter, key)
    samplez.flush()
    yield counter, datetime.fromtimestamp(clock(), timezone.utc)
    unregister(counter)


def test_calendar_api_on_a_real_counter(views):
    counter, now = views
    app = local_app(samplez.Dashboard(sections=samplez.Section("Views", counter)))
    base = f"/api/stats/track/{{key}}/{counter.name}"
    year = strict_json(app.get(base.format(key="all") + f"/{now.year}").text)
    assert year["event"] == counter.name and year["key"] == "all" and year["month"] is None
    assert year["data"][str(now.month)] == 5 and sum(year["data"].values()) == 5 and len(year["data"]) == 12
    padded = strict_json(app.get(base.format(key="plan:pro") + f"/{now.year}/{now.month:02d}").text)
    bare = strict_json(app.get(base.format(key="plan:pro") + f"/{now.year}/{now.month}").text)
    assert padded == bare and padded["month"] == now.month and padded["data"][str(now.day)] == 3
    hours = strict_json(app.get(base.format(key="plan:free") + f"/{now.year}/{now.month}/{now.day}").text)
    assert hours["data"][str(now.hour)] == 2 and len(hours["data"]) == 24
    hour = strict_json(app.get(base.format(key="all") + f"/{now.year}/{now.month}/{now.day}/{now.hour}").text)
    assert hour["hour"] == now.hour and hour["data"] == {"0": 5}
    for path in (f"/nobody/{counter.name}/{now.year}", f"/all/{counter.name}/{now.year}/02/30"):
        response = app.get("/api/stats/track" + path, status=404)
        assert response.content_type == "application/json" and "error" in strict_json(response.text)


def test_calendar_card_links_its_api(views):
    counter, now = views
    app = local_app(samplez.Dashboard(sections=samplez.Section("Views", counter)))
    api = app.get("/").click(description="JSON API")
    assert api.content_type == "application/json" and strict_json(api.text)["year"] == now.year


def test_a_stepped_key_page_lists_its_previous_steps(samplez_on, clock):
    counter = samplez.SteppedCounter(unique_name("orders"), step=60, keep=3)
    for amount in (5, 7, 11):
        samplez.set(counter, "shop01", amount)
        samplez.flush()
        clock.advance(60)
    app = local_app(samplez.Dashboard(sections=samplez.Section("Orders", counter)))
    try:
        page = app.get(f"/config/{counter.name}/key", params={"key": "shop01"})
        assert "Previous steps" in page.text and page.text.count('<td class="n">') == 3
        assert '<svg class="spark"' in page.text
    finally:
        unregister(counter)

"""Published definitions (``samplez/definitions.py``): what one process
writes, another reads with no shared module: every kind rebuilt with its
parameters, local names first, and anything unreadable or hostile in the
store shown on the Health page, never raised."""

from __future__ import annotations

import gc
import json
import re
from typing import Any

import pytest
import webtest

import samplez
from samplez import definitions, registry
from samplez.dashboard.views import health_view, visible_sections
from samplez.engine import engine
from samplez.store.base import set_
from samplez.store.keys import FORMAT_VERSION
from tests.conftest import Clock, every_counter, stored_keys, unique_name

LOCAL = {"REMOTE_ADDR": "127.0.0.1"}


def reading(metric: Any) -> Any:
    """What ``metric`` reads now, comparable between two copies of it."""
    result = metric.read(engine.context())
    return result.rows() if metric.kind == "reservoir" else result.as_dict()


def write_and_forget(metrics: list[Any], key: str = "k") -> dict[str, tuple[str, Any, Any]]:
    """Write ``metrics`` and flush, then forget them as another process
    would never have known them; their kinds, parameters and readings."""
    for metric in metrics:
        samplez.set(metric, key, 5 if metric.kind == "bitmap" else 1)
    assert samplez.flush().applied == len(metrics)
    known = {m.name: (m.kind, definitions._params(m), reading(m)) for m in metrics}
    registry.unregister(*metrics)
    metrics.clear()
    gc.collect()
    return known


def shown(store: samplez.Store | None = None) -> dict[str, tuple[str, Any]]:
    return {m.name: (title, m) for title, metrics in visible_sections(None, store) for m in metrics}


@pytest.fixture
def prefixed(samplez_on: samplez.Store) -> samplez.Store:
    """``samplez_on`` under a prefix of its own: no other test's definitions."""
    samplez.configure(prefix=unique_name("defs"))
    return samplez_on


def test_every_kind_is_rebuilt_with_its_parameters_and_reads_the_same(prefixed):
    reservoir = samplez.Config(unique_name("lat"), period=60, samples=50, by_domain=True, value_units="ms")
    metrics = [*every_counter(max_keys=7), reservoir]
    shop = samplez.Section("Shop", metrics[0], reservoir)
    known = write_and_forget(metrics, key="http://www.example.com/x")
    registry.unregister(shop)
    seen = shown()
    for name, (kind, params, read) in known.items():
        title, metric = seen[name]
        assert (metric.kind, definitions._params(metric), reading(metric)) == (kind, params, read), name
        assert title == ("Shop" if kind in ("reservoir", "rolling") else "Other"), name
        assert registry.lookup(name) is None  # read, never registered as this process's own


def test_a_rebuilt_metric_cannot_be_set_or_published(prefixed):
    name = unique_name("hits")
    write_and_forget([samplez.RollingCounter(name, window=60)])
    remote = shown()[name][1]
    with pytest.raises(TypeError, match="samplez.set needs"):
        samplez.set(remote, "k")


def test_store_keys_are_hashed_and_values_versioned(prefixed, request):
    name = unique_name("hits")
    write_and_forget([samplez.RollingCounter(name, window=60)])
    prefix = engine.space.prefix
    keys = [key for key in stored_keys(request, prefixed) if key.startswith(f"{prefix}:_defs")]
    assert len(keys) == 2
    assert all(re.fullmatch(rf"{prefix}:_defs(:[0-9a-f]{{26}})?", key) for key in keys), keys
    raw = prefixed.execute([samplez.store.base.get(max(keys))])[0][0]
    assert raw[:1] == bytes([FORMAT_VERSION]) and json.loads(raw[1:])["v"] == definitions.VERSION


def test_a_definition_is_published_at_most_every_few_seconds():
    counter = samplez.RollingCounter(unique_name("hits"), window=60)
    publisher = definitions.Publisher()
    ctx = engine.context()
    assert publisher.plan(ctx, [counter.slot]) is not None
    assert publisher.plan(ctx, [counter.slot]) is None


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda n: samplez.RollingCounter(n, window=600), id="rolling-window"),
        pytest.param(lambda n: samplez.CalendarCounter(n), id="calendar-retention"),
        pytest.param(lambda n: samplez.Config(n, period=3600, samples=5, by_value=True), id="reservoir-two-periods"),
        pytest.param(lambda n: samplez.SteppedCounter(n, step=3600, keep=24), id="stepped-kept-steps"),
    ],
)
def test_a_definition_lives_as_long_as_its_data(make):
    metric = make(unique_name("m"))
    made = definitions.definition_of(metric)
    assert made is not None and made.ttl == metric.ttl > definitions.MIN_TTL


def test_a_local_metric_of_the_same_name_wins(prefixed):
    name = unique_name("hits")
    write_and_forget([samplez.RollingCounter(name, window=60)])
    mine = samplez.RollingCounter(name, window=60)
    assert shown()[name][1] is mine
    assert health_view(None)["definitions"] == []


def test_a_conflicting_local_metric_wins_and_the_conflict_is_on_health(prefixed):
    name = unique_name("hits")
    write_and_forget([samplez.RollingCounter(name, window=60)])
    mine = samplez.RollingCounter(name, window=120)
    assert shown()[name][1] is mine
    problems = health_view(None)["definitions"]
    assert [(p["name"], "conflicts" in p["problem"]) for p in problems] == [(name, True)]


def test_sections_given_win_over_the_store(prefixed):
    write_and_forget([samplez.RollingCounter(unique_name("hits"), window=60)])
    section = samplez.Section("Mine", samplez.RollingCounter(unique_name("mine"), window=60))
    assert [(t, [m.name for m in ms]) for t, ms in visible_sections([section])] == [("Mine", [section.metrics[0].name])]


def publish_raw(store: samplez.Store, entries: dict[str, bytes], now: float) -> None:
    """Write definitions as a hostile or broken writer would, and list them."""
    space = engine.space
    listing = bytes([FORMAT_VERSION]) + json.dumps({i: now + 600 for i in entries}).encode()
    ops = [set_(space.key("_defs", i), value, 600) for i, value in entries.items()]
    results, _ = store.execute([*ops, set_(space.key("_defs"), listing, 600)])
    assert all(result is True for result in results)


def body(**changes: Any) -> bytes:
    definition = {
        "v": definitions.VERSION,
        "kind": "rolling",
        "name": "fine",
        "title": None,
        "section": None,
        "params": {"window": 60, "buckets": 60, "max_keys": 10},
    }
    definition.update(changes)
    return bytes([FORMAT_VERSION]) + json.dumps(definition).encode()


HOSTILE = "<script>alert('x')</script>"


@pytest.mark.parametrize(
    "raw, why",
    [
        pytest.param(b"\x01{not json", "not a definition", id="bad-json"),
        pytest.param(b"\x09" + body()[1:], "not a definition", id="unknown-store-version"),
        pytest.param(body(v=99), "format version 99", id="newer-format"),
        pytest.param(body(kind="teapot"), "unknown kind", id="unknown-kind"),
        pytest.param(body(params={"window": -5}), "does not parse", id="bad-parameter"),
        pytest.param(body(params={"window": 60, "color": "red"}), None, id="extra-parameter-ignored"),
        pytest.param(body(name=HOSTILE), "does not parse", id="hostile-name"),
        pytest.param(body(name=["x"]), "does not parse", id="name-not-a-string"),
        pytest.param(bytes([FORMAT_VERSION]) + b"[1, 2]", "not a definition", id="json-not-an-object"),
    ],
)
def test_a_bad_definition_is_on_health_and_breaks_no_page(prefixed, clock: Clock, raw, why):
    publish_raw(prefixed, {"a" * 26: raw}, clock())
    app = webtest.TestApp(samplez.Dashboard(store=prefixed), extra_environ=LOCAL)
    for path in ("/", "/health", "/metrics"):  # HTML and text: inert; the JSON twins carry it as data
        response = app.get(path)
        assert response.status_int == 200 and "<script" not in response.text, path
    assert app.get("/?format=json").status_int == 200
    problems = app.get("/health?format=json").json["health"]["definitions"]
    assert [p["problem"].startswith(why) for p in problems] == ([True] if why else [])


def test_a_hostile_title_and_section_render_inert(prefixed, clock: Clock):
    name = unique_name("hostile")
    publish_raw(prefixed, {"b" * 26: body(name=name, title=HOSTILE, section=HOSTILE)}, clock())
    app = webtest.TestApp(samplez.Dashboard(store=prefixed), extra_environ=LOCAL)
    page = app.get("/")
    assert "<script" not in page.text and "&lt;script&gt;" in page.text
    sections = app.get("/?format=json").json["sections"]
    assert [(s["title"], [m["title"] for m in s["metrics"]]) for s in sections if s["title"] == HOSTILE] == [
        (HOSTILE, [HOSTILE])
    ]
    assert "<script" not in app.get(f"/config/{name}").text
    assert app.get("/metrics").status_int == 200


def test_two_writers_that_disagree_show_one_and_report_the_other(prefixed, clock: Clock):
    name = unique_name("hits")
    one, other = body(name=name), body(name=name, params={"window": 120})
    publish_raw(prefixed, {"c" * 26: one, "d" * 26: other}, clock())
    assert shown()[name][1].kind == "rolling"
    problems = health_view(None)["definitions"]
    assert [p["name"] for p in problems] == [name] and "differently" in problems[0]["problem"]

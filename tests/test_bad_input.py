"""The bad input catalogue: every input a careless or hostile caller can
hand samplez gets a clear exception at the call site (naming what was
wrong, short even for a 1 MB input) or is handled and reads back intact.
No bad input may fail later on the flusher thread or in a user request."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable

import pytest
import webtest

import samplez
from tests.conftest import unique_name

MB = 2**20


@pytest.fixture
def cfg() -> samplez.Config:
    return samplez.Config(unique_name("bad"), period=60, samples=100, by_value=True)


def config_with(**overrides: Any) -> Callable[[], Any]:
    def build() -> Any:
        args: dict[str, Any] = {"name": unique_name("bad"), "period": 60, "samples": 10, "by_value": True}
        args.update(overrides)
        return samplez.Config(**args)

    return build


def check_error(raised: pytest.ExceptionInfo[BaseException], pattern: str) -> None:
    message = str(raised.value)
    assert message, "an exception with an empty message"
    assert len(message) < 400, f"the message echoes the whole input ({len(message)} chars)"
    assert pattern in message, message


# -- samplez.set: refused at the call ---------------------------------------------

SET_REFUSED = [
    # keys
    pytest.param(None, 1, TypeError, "key must be a str", id="key-None"),
    pytest.param(42, 1, TypeError, "key must be a str", id="key-int"),
    pytest.param(4.2, 1, TypeError, "key must be a str", id="key-float"),
    pytest.param(["a"], 1, TypeError, "key must be a str", id="key-list"),
    pytest.param(b"\xff\xfe", 1, ValueError, "UTF-8", id="key-bytes-not-utf8"),
    pytest.param(bytearray(b"caf\xc3"), 1, ValueError, "UTF-8", id="key-bytearray-truncated-utf8"),
    pytest.param(b"\xff" * MB, 1, ValueError, "UTF-8", id="key-1MB-not-utf8"),
    # values
    pytest.param("k", float("nan"), ValueError, "finite", id="value-nan"),
    pytest.param("k", float("inf"), ValueError, "finite", id="value-inf"),
    pytest.param("k", float("-inf"), ValueError, "finite", id="value-minus-inf"),
    pytest.param("k", True, TypeError, "int or a float", id="value-True"),
    pytest.param("k", False, TypeError, "int or a float", id="value-False"),
    pytest.param("k", "12", TypeError, "int or a float", id="value-str"),
    pytest.param("k", None, TypeError, "int or a float", id="value-None"),
    pytest.param("k", Decimal("1.5"), TypeError, "int or a float", id="value-Decimal"),
    pytest.param("k", Fraction(1, 3), TypeError, "int or a float", id="value-Fraction"),
    pytest.param("k", 1j, TypeError, "int or a float", id="value-complex"),
    pytest.param("k", [1], TypeError, "int or a float", id="value-list"),
    pytest.param("k", 10**400, ValueError, "1329 bits", id="value-int-past-float"),
    pytest.param("k", -(10**400), ValueError, "1329 bits", id="value-negative-int-past-float"),
    pytest.param("k", "x" * MB, TypeError, "int or a float", id="value-1MB-str"),
]


@pytest.mark.parametrize(("key", "value", "error", "pattern"), SET_REFUSED)
def test_set_refuses_at_the_call(samplez_on, cfg, key, value, error, pattern):
    with pytest.raises(error) as raised:
        samplez.set(cfg, key, value)
    check_error(raised, pattern)
    assert samplez.flush().applied == 0


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("latency_5m", id="target-name-str"),
        pytest.param(None, id="target-None"),
        pytest.param(42, id="target-int"),
        pytest.param(b"cfg", id="target-bytes"),
        pytest.param([None], id="target-list-of-None"),
    ],
)
def test_set_refuses_what_is_not_a_config(target):
    with pytest.raises(TypeError) as raised:
        samplez.set(target, "k", 1)
    check_error(raised, "samplez.set needs")


def test_set_refuses_a_list_mixing_configs_and_junk(cfg):
    with pytest.raises(TypeError) as raised:
        samplez.set([cfg, "content_10m"], "k", 1)
    check_error(raised, "'content_10m'")


# -- samplez.set: accepted, and read back intact ------------------------------------

SET_ACCEPTED = [
    pytest.param(b"bytes-key", 1, "bytes-key", 1.0, id="key-utf8-bytes"),
    pytest.param("caf\u00e9".encode(), 1, "caf\u00e9", 1.0, id="key-utf8-bytes-accent"),
    pytest.param("nul\x00inside", 1, "nul\x00inside", 1.0, id="key-NUL"),
    pytest.param("line\r\nbreak", 1, "line\r\nbreak", 1.0, id="key-CRLF"),
    pytest.param("set x 0 0 1\r\nX\r\n", 1, "set x 0 0 1\r\nX\r\n", 1.0, id="key-protocol-injection"),
    pytest.param("a b\tc", 1, "a b\tc", 1.0, id="key-whitespace"),
    pytest.param("", 1, "", 1.0, id="key-empty"),
    pytest.param("\U0001f525\U0001f469\u200d\U0001f469\u200d\U0001f467", 1, None, 1.0, id="key-emoji-zwj"),
    pytest.param("\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd", 1, None, 1.0, id="key-RTL"),
    pytest.param("\u202eevil\u202c.exe", 1, None, 1.0, id="key-bidi-override"),
    pytest.param("<script>alert(1)</script>", 1, None, 1.0, id="key-html-js"),
    pytest.param("javascript:alert(document.cookie)", 1, None, 1.0, id="key-js-url"),
    pytest.param("' OR 1=1 --", 1, None, 1.0, id="key-sql"),
    pytest.param("%00%0d%0a../../etc/passwd", 1, None, 1.0, id="key-encoded-traversal"),
    pytest.param("\ud800lone", 1, "?lone", 1.0, id="key-lone-surrogate"),
    pytest.param("x" * MB, 1, "x" * 75, 1.0, id="key-1MB-truncated"),
    pytest.param("\u00e9" * MB, 1, "\u00e9" * 75, 1.0, id="key-1MB-multibyte-truncated"),
    pytest.param("\U0001f525" * 100, 1, "\U0001f525" * 75, 1.0, id="key-emoji-truncated-whole"),
    pytest.param("big", 10**30, "big", 1e30, id="value-huge-int-as-float"),
    pytest.param("neg", -(10**30), "neg", -1e30, id="value-huge-negative-int"),
    pytest.param("max", 1.7976931348623157e308, "max", 1.7976931348623157e308, id="value-float-max"),
    pytest.param("tiny", 5e-324, "tiny", 5e-324, id="value-subnormal"),
    pytest.param("zero", -0.0, "zero", 0.0, id="value-negative-zero"),
]


@pytest.mark.parametrize(("key", "value", "stored", "read"), SET_ACCEPTED)
def test_set_accepts_and_reads_back_intact(samplez_on, cfg, key, value, stored, read):
    stored = key if stored is None else stored
    samplez.set(cfg, key, value)
    summary = samplez.flush()
    assert (summary.applied, summary.errors) == (1, 0)
    result = samplez.get(cfg)
    assert result.keys() == [stored]
    assert [v for _, v in result.samples(stored)] == [read]
    assert samplez.get(cfg, key=stored).count(stored) == 1


def test_bad_inputs_inside_a_request_fail_only_that_call(samplez_on, cfg):
    # The handler catches samplez's error; the request and its good samples survive.
    def app(environ, start_response):
        refused = 0
        for value in (float("nan"), None, "x", 3):
            try:
                samplez.set(cfg, "/page", value)
            except (TypeError, ValueError):
                refused += 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(refused).encode()]

    response = webtest.TestApp(samplez.Middleware(app)).get("/page")
    assert response.text == "3"
    assert [v for _, v in samplez.get(cfg).samples("/page")] == [3.0]


# -- definitions: Config, Section, configure, stores, middleware -----------------------

CONFIG_REFUSED = [
    pytest.param({"name": ""}, "name must be", id="name-empty"),
    pytest.param({"name": "has space"}, "name must be", id="name-space"),
    pytest.param({"name": "tab\there"}, "name must be", id="name-tab"),
    pytest.param({"name": "new\nline"}, "name must be", id="name-newline"),
    pytest.param({"name": "nul\x00"}, "name must be", id="name-NUL"),
    pytest.param({"name": "colon:name"}, "name must be", id="name-colon"),
    pytest.param({"name": "caf\u00e9"}, "name must be", id="name-non-ascii"),
    pytest.param({"name": "x" * 65}, "name must be", id="name-65-chars"),
    pytest.param({"name": "x " * MB}, "name must be", id="name-1MB"),
    pytest.param({"name": None}, "name must be", id="name-None"),
    pytest.param({"name": 42}, "name must be", id="name-int"),
    pytest.param({"period": 0}, "period must be", id="period-zero"),
    pytest.param({"period": -5}, "got -5", id="period-negative"),
    pytest.param({"period": 1.5}, "period must be", id="period-float"),
    pytest.param({"period": "60"}, "period must be", id="period-str"),
    pytest.param({"period": True}, "period must be", id="period-bool"),
    pytest.param({"period": None}, "period must be", id="period-None"),
    pytest.param({"samples": 0}, "samples must be", id="samples-zero"),
    pytest.param({"samples": 100_001}, "samples must be", id="samples-too-many"),
    pytest.param({"samples": 10.0}, "samples must be", id="samples-float"),
    pytest.param({"rate": 0}, "rate must be", id="rate-zero"),
    pytest.param({"rate": 1.5}, "rate must be", id="rate-above-one"),
    pytest.param({"rate": -0.1}, "rate must be", id="rate-negative"),
    pytest.param({"rate": float("nan")}, "rate must be", id="rate-nan"),
    pytest.param({"rate": "0.5"}, "rate must be", id="rate-str"),
    pytest.param({"rate": True}, "rate must be", id="rate-bool"),
    pytest.param({"tolerance": -1}, "tolerance must be", id="tolerance-negative"),
    pytest.param({"tolerance": float("inf")}, "tolerance must be", id="tolerance-inf"),
    pytest.param({"tolerance": float("nan")}, "tolerance must be", id="tolerance-nan"),
    pytest.param({"tolerance": "10"}, "tolerance must be", id="tolerance-str"),
    pytest.param({"max_key_length": 0}, "max_key_length must be", id="max-key-length-zero"),
    pytest.param({"max_key_length": 10_001}, "max_key_length must be", id="max-key-length-huge"),
    pytest.param({"by_value": False}, "exactly one of by_value and by_domain", id="neither-by"),
    pytest.param({"by_domain": True}, "exactly one of by_value and by_domain", id="both-by"),
    pytest.param({"by_value": "yes"}, "exactly one of by_value and by_domain", id="by-value-str"),
    pytest.param({"title": 42}, "title must be", id="title-int"),
    pytest.param({"key_name": None}, "key_name must be", id="key-name-None"),
    pytest.param({"value_units": 5}, "value_units must be", id="value-units-int"),
]


@pytest.mark.parametrize(("overrides", "pattern"), CONFIG_REFUSED)
def test_config_refuses_bad_arguments(overrides, pattern):
    with pytest.raises(samplez.ConfigError) as raised:
        config_with(**overrides)()
    check_error(raised, pattern)


def test_config_names_are_unique_per_process():
    first = config_with()()
    with pytest.raises(samplez.ConfigError) as raised:
        samplez.Config(first.name, period=60, samples=10, by_value=True)
    check_error(raised, "unique")


def test_a_refused_config_does_not_claim_its_name():
    name = unique_name("half")
    with pytest.raises(samplez.ConfigError):
        samplez.Config(name, period=-1, samples=10, by_value=True)
    assert samplez.Config(name, period=60, samples=10, by_value=True).name == name


OTHER_REFUSED = [
    pytest.param(lambda: samplez.Section("t"), samplez.ConfigError, "at least one", id="section-empty"),
    pytest.param(lambda: samplez.Section("t", "cfg"), samplez.ConfigError, "holds configs", id="section-str"),
    pytest.param(lambda: samplez.Section(None, config_with()()), samplez.ConfigError, "title", id="section-title"),
    pytest.param(lambda: samplez.configure(prefix="has space"), samplez.ConfigError, "prefix", id="prefix-space"),
    pytest.param(lambda: samplez.configure(prefix=""), samplez.ConfigError, "prefix", id="prefix-empty"),
    pytest.param(lambda: samplez.configure(prefix="p\r\n"), samplez.ConfigError, "prefix", id="prefix-CRLF"),
    pytest.param(lambda: samplez.configure(prefix="x" * 65), samplez.ConfigError, "prefix", id="prefix-long"),
    pytest.param(lambda: samplez.configure(prefix=None), samplez.ConfigError, "prefix", id="prefix-None"),
    pytest.param(lambda: samplez.configure(flush_interval=0), samplez.ConfigError, "flush_interval", id="interval-0"),
    pytest.param(lambda: samplez.configure(flush_interval=-1), samplez.ConfigError, "got -1", id="interval-neg"),
    pytest.param(
        lambda: samplez.configure(flush_interval=float("nan")), samplez.ConfigError, "flush_interval", id="interval-nan"
    ),
    pytest.param(
        lambda: samplez.configure(flush_interval="1"), samplez.ConfigError, "flush_interval", id="interval-str"
    ),
    pytest.param(
        lambda: samplez.configure(flush_interval=True), samplez.ConfigError, "flush_interval", id="interval-bool"
    ),
    pytest.param(lambda: samplez.configure(max_pending=0), samplez.ConfigError, "max_pending", id="max-pending-0"),
    pytest.param(
        lambda: samplez.configure(max_pending=1.5), samplez.ConfigError, "max_pending", id="max-pending-float"
    ),
    pytest.param(lambda: samplez.configure(clock=5), samplez.ConfigError, "clock", id="clock-not-callable"),
    pytest.param(lambda: samplez.configure(clock=lambda: "now"), samplez.ConfigError, "'now'", id="clock-returns-str"),
    pytest.param(lambda: samplez.configure(clock=lambda: float("nan")), samplez.ConfigError, "nan", id="clock-nan"),
    pytest.param(lambda: samplez.configure(clock=lambda: -1.0), samplez.ConfigError, "-1.0", id="clock-negative"),
    pytest.param(
        lambda: samplez.configure(clock=lambda: 1 / 0), samplez.ConfigError, "ZeroDivision", id="clock-raises"
    ),
    pytest.param(lambda: samplez.configure(clock=lambda x: x), samplez.ConfigError, "clock", id="clock-wants-argument"),
    pytest.param(lambda: samplez.configure(flush="never"), samplez.ConfigError, "flush must be", id="flush-mode"),
    pytest.param(
        lambda: samplez.configure(store="127.0.0.1:11211"), samplez.ConfigError, "store must be", id="store-str"
    ),
    pytest.param(lambda: samplez.MemcacheStore([]), samplez.ConfigError, "servers", id="servers-none"),
    pytest.param(lambda: samplez.MemcacheStore("host:port"), samplez.ConfigError, "host:port", id="server-port-name"),
    pytest.param(lambda: samplez.MemcacheStore("host:70000"), samplez.ConfigError, "host:port", id="server-port-big"),
    pytest.param(lambda: samplez.MemcacheStore(":11211"), samplez.ConfigError, "host:port", id="server-no-host"),
    pytest.param(lambda: samplez.MemcacheStore([None]), samplez.ConfigError, "host:port", id="server-None"),
    pytest.param(lambda: samplez.MemcacheStore(timeout=0), samplez.ConfigError, "timeout", id="timeout-zero"),
    pytest.param(lambda: samplez.MemcacheStore(timeout=True), samplez.ConfigError, "timeout", id="timeout-bool"),
    pytest.param(
        lambda: samplez.MemcacheStore(connect_timeout=float("nan")), samplez.ConfigError, "connect_timeout", id="ct-nan"
    ),
    pytest.param(lambda: samplez.MemcacheStore(dead_timeout=-1), samplez.ConfigError, "dead_timeout", id="dead-neg"),
    pytest.param(lambda: samplez.MemcacheStore(dead_timeout="x"), samplez.ConfigError, "dead_timeout", id="dead-str"),
    pytest.param(lambda: samplez.Middleware(None), samplez.ConfigError, "app must be", id="middleware-app-None"),
    pytest.param(
        lambda: samplez.HyperLogLogCounter(unique_name("hll"), step=60, precision=21),
        samplez.ConfigError,
        "precision",
        id="hll-precision-past-memcache-item-size",
    ),
    pytest.param(
        lambda: samplez.Middleware(lambda e, s: [], dashboard_path="x"),
        samplez.ConfigError,
        "dashboard_path",
        id="middleware-relative-path",
    ),
    pytest.param(
        lambda: samplez.Middleware(lambda e, s: [], stroe=None), TypeError, "stroe", id="middleware-unknown-keyword"
    ),
]


@pytest.mark.parametrize(("build", "error", "pattern"), OTHER_REFUSED)
def test_definitions_refuse_bad_arguments(build, error, pattern):
    with pytest.raises(error) as raised:
        build()
    check_error(raised, pattern)


# -- reading ---------------------------------------------------------------------------

READ_REFUSED = [
    pytest.param(lambda c: samplez.get(c, period="last"), ValueError, "period must be", id="get-period-unknown"),
    pytest.param(lambda c: samplez.get(c, period=None), ValueError, "period must be", id="get-period-None"),
    pytest.param(lambda c: samplez.get(c, colour="red"), TypeError, "colour", id="get-unknown-option"),
    pytest.param(lambda c: samplez.get("latency_5m"), TypeError, "samplez.get needs", id="get-name-str"),
    pytest.param(lambda c: list(samplez.get_section(c)), TypeError, "needs a Section", id="get-section-config"),
    pytest.param(lambda c: samplez.get(c).percentile("k", 101), ValueError, "percentile", id="percentile-101"),
    pytest.param(lambda c: samplez.get(c).percentile("k", -1), ValueError, "percentile", id="percentile-negative"),
    pytest.param(lambda c: samplez.get(c).percentile("k", float("nan")), ValueError, "percentile", id="percentile-nan"),
    pytest.param(lambda c: samplez.get(c).rows(sort="evil"), ValueError, "sort must be", id="rows-sort-unknown"),
    pytest.param(lambda c: samplez.get(c).rows(limit=-1), ValueError, "limit must be", id="rows-limit-negative"),
    pytest.param(lambda c: samplez.get(c).rows(limit="5"), ValueError, "limit must be", id="rows-limit-str"),
]


@pytest.mark.parametrize(("read", "error", "pattern"), READ_REFUSED)
def test_reads_refuse_bad_arguments(samplez_on, cfg, read, error, pattern):
    samplez.set(cfg, "k", 1)
    samplez.flush()
    with pytest.raises(error) as raised:
        read(cfg)
    check_error(raised, pattern)


def test_unknown_keys_read_as_nothing(samplez_on, cfg):
    result = samplez.get(cfg, key="never seen \x00\r\n")
    assert result.count("never seen") == 0 and result.frequency("x") is None
    assert result.min("x") is None and result.percentile("x", 50) is None and result.rows() == []


# -- dashboard URLs through the middleware (the dashboard's own tests cover its pages) --

#: What only the middleware sees: URLs near its dashboard prefix (the
#: dashboard's own bad-input catalogue is tests/test_dashboard_input.py).
DASHBOARD_URLS = [
    pytest.param("/_samplez%2F..%2Fsetup.cfg", 404, id="encoded-traversal"),
    pytest.param("/_samplez//config", 404, id="double-slash"),
    pytest.param("/_samplez/?limit=%2B5", 400, id="bad-query"),
    pytest.param("/_samplez/config/{cfg}/key?key=k&format=json&sort=%00", 400, id="bad-query-json"),
    pytest.param("/_samplez/api/stats/track/k/{cal}/1970/1/1/0", 200, id="calendar-api"),
]


@pytest.mark.parametrize(("url", "status"), DASHBOARD_URLS)
def test_dashboard_urls_through_the_middleware(samplez_on, url, status):
    name = unique_name("dash")
    cfg = samplez.Config(name + "_r", period=60, samples=10, by_value=True)
    cal = samplez.CalendarCounter(name + "_y")
    samplez.set([cfg, cal], "k", 1)
    samplez.flush()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"app"]

    client = webtest.TestApp(samplez.Middleware(app), extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    response = client.get(url.format(cfg=cfg.name, cal=cal.name), expect_errors=True)
    assert response.status_int == status
    assert "Traceback" not in response.text and "Content-Security-Policy" in response.headers
    if "/api/" in url or "format=json" in url:
        assert response.content_type == "application/json" and response.json
    assert client.get("/_samplezX").text == "app"  # the application is untouched


def test_a_lone_surrogate_key_is_stored_as_a_question_mark_by_every_kind(samplez_on):
    # A str that is not valid Unicode (left by a bad decode upstream) must
    # not reach a page or a JSON answer as is: it cannot be encoded there.
    name = unique_name("surrogate")
    metrics = [
        samplez.Config(name + "_r", period=60, samples=10, by_value=True),
        samplez.RollingCounter(name + "_c", window=60),
        samplez.SteppedCounter(name + "_s", step=60),
        samplez.CalendarCounter(name + "_y"),
    ]
    samplez.set(metrics, "bad\ud800key", 1)
    assert samplez.flush().applied == len(metrics)
    assert samplez.get(metrics[0]).keys() == ["bad?key"]
    assert all("bad?key" in samplez.get(counter).keys() for counter in metrics[1:])
    dashboard = webtest.TestApp(
        samplez.Dashboard(sections=samplez.Section("S", *metrics)), extra_environ={"REMOTE_ADDR": "127.0.0.1"}
    )
    for metric in metrics:
        for url in (f"/config/{metric.name}", f"/config/{metric.name}?format=json", "/"):
            assert dashboard.get(url).status_int == 200


# -- the largest accepted arguments still work on a real memcached -------------------

EDGE_METRICS = [
    pytest.param(lambda n: samplez.Config(n, period=1, samples=1, by_value=True), 1, id="period-1s-one-sample"),
    pytest.param(lambda n: samplez.Config(n, period=10**9, samples=10, by_value=True), 1, id="period-31-years"),
    pytest.param(lambda n: samplez.Config(n, period=10**12, samples=10, by_value=True), 1, id="period-huge"),
    pytest.param(lambda n: samplez.SteppedCounter(n, step=10**9, keep=1000), 1, id="stepped-ttl-past-2038"),
    pytest.param(lambda n: samplez.CalendarCounter(n, retention=10**10), 1, id="calendar-retention-past-2038"),
    pytest.param(lambda n: samplez.RollingCounter(n, window=360 * 86400, buckets=12), 1, id="rolling-a-year"),
]


@pytest.mark.parametrize(("build", "value"), EDGE_METRICS)
def test_longest_periods_and_retentions_are_kept(samplez_on, build, value):
    # memcached reads expiries past 30 days as UNIX times held in 32 bits:
    # a TTL reaching past 2038 must be capped, not expire the item at once.
    metric = build(unique_name("edge"))
    samplez.set(metric, "k", value)
    summary = samplez.flush()
    assert (summary.applied, summary.dropped) == (1, 0)
    result = samplez.get(metric)
    assert (result.count("k") if metric.kind == "reservoir" else result["k"].display_value) >= 1


def test_the_largest_hll_precision_still_fits_one_memcache_item(memcached, clock):
    # Dense, a precision-20 sketch is ~525 KB; 21 would be just over 1 MB.
    samplez.configure(store=samplez.MemcacheStore(memcached.address), clock=clock, flush="request")
    samplez.configure(max_pending=400_000, max_pending_bytes=2**27)
    hll = samplez.HyperLogLogCounter(unique_name("hll"), step=3600, precision=20)
    for i in range(300_000):
        samplez.set(hll, "k", i)
    summary = samplez.flush()
    assert (summary.applied, summary.errors) == (300_000, 0)
    assert samplez.get(hll)["k"].value == pytest.approx(300_000, rel=0.01)


def test_an_index_of_keys_too_big_for_one_memcache_item_stays_bounded(samplez_on, clock):
    # 1000 keys of 200 control characters: JSON escapes each as \\u0000, so
    # listing them all would take ~1.2 MB, past memcached's item size.
    counter = samplez.RollingCounter(unique_name("wide"), window=60, max_keys=1000)
    keys = [f"{i:04d}" + "\x00" * 196 for i in range(1000)]
    for key in keys:
        samplez.set(counter, key, 1)
    summary = samplez.flush()
    assert (summary.applied, summary.errors) == (1000, 0)
    reading = samplez.get(counter)
    listed = [key for key in reading.keys() if key != "(other)"]
    assert 100 < len(listed) < 1000 and listed == keys[: len(listed)]
    assert sum(reading[key].total for key in listed) + reading["(other)"].total == 1000
    samplez.set(counter, keys[-1], 1)
    assert samplez.flush().errors == 0  # no oversized index sent again and again

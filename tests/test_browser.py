"""The dashboard in a real browser: Debian's Chromium driven by Playwright
against a real HTTP server on a loopback port.

Set ``SAMPLEZ_SCREENSHOT=docs/dashboard.png`` to also run the demo site
under generated traffic and save a screenshot of its overview there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from typing import Any, Iterator

import pytest

import samplez
from samplez.engine import engine
from samplez.registry import unregister
from tests.conftest import Clock, unique_name

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not shutil.which(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing", allow_module_level=True)

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PWN = "<img src=x onerror=window.__pwned=1>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread; yield its URL."""
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page that records console errors and uncaught exceptions."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.errors = []
    tab.on("console", lambda message: message.type == "error" and tab.errors.append(message.text))
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))
    yield tab
    context.close()


@pytest.fixture
def dashboard_url(clock: Clock) -> Iterator[str]:
    """A dashboard with two configs (one holding a hostile key) and two counters."""
    samplez.configure(store=samplez.MemoryStore(clock=clock), clock=clock, flush="request")
    latency = samplez.Config(unique_name("lat"), period=300, samples=1000, by_value=True, value_units="ms")
    pages = samplez.Config(unique_name("pages"), period=600, samples=1000, by_value=True, title="Pages")
    hits = samplez.RollingCounter(unique_name("hits"), window=60)
    views = samplez.CalendarCounter(unique_name("views"))
    for k in range(7):  # /api/6 the most frequent, so no column sorts like the keys
        for j in range((k + 1) * 5):
            samplez.set([latency, hits], f"/api/{k}", 5 * k + j % 3 + 1)
            samplez.set([pages, views], f"/page/{(k * j) % 11}")
        clock.advance(3)
    samplez.set(latency, PWN, 1)
    samplez.flush()
    sections = [samplez.Section("Latency", latency, hits), samplez.Section("Pages", pages, views)]
    with serve(samplez.Dashboard(sections=sections)) as url:
        yield url
    for section in sections:
        unregister(section)


@pytest.fixture
def site_url(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A raw WSGI site behind the middleware, with ten minutes of requests
    (some failing) at the injected clock, and a fresh heartbeat."""
    monkeypatch.setitem(engine.health, "dropped", 0)  # what earlier tests dropped is not this site's
    import urllib.error
    import urllib.request

    def site(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        failing = environ["PATH_INFO"].startswith("/fail")
        start_response("500 Internal Server Error" if failing else "200 OK", [("Content-Type", "text/plain")])
        return [b"site"]

    samplez.configure(store=samplez.MemoryStore(clock=clock), clock=clock, flush="request")
    metrics = samplez.RequestMetrics(prefix=unique_name("http"))
    app = samplez.Middleware(site, request_metrics=metrics, sections=samplez.Section("Site", metrics.latency))
    with serve(app) as url:
        for minute in range(10):
            for path in ("/users/1", "/users/2", "/orders/9f86d081", "/fail/3")[: 2 + minute % 3]:
                try:
                    urllib.request.urlopen(url + path).read()
                except urllib.error.HTTPError:
                    pass
            clock.advance(60)
        engine.heartbeat.last = -float("inf")
        samplez.flush()
        yield url + "/_samplez"
    unregister(metrics.section)


def test_the_overview_renders_its_charts_and_endpoints(page, site_url):
    response = page.goto(site_url + "/")
    assert response.status == 200 and "default-src 'none'" in response.headers["content-security-policy"]
    assert page.locator("svg.timeline").count() == 3
    assert page.locator("svg.timeline polyline, svg.timeline circle").count() >= 5  # p50, p95, p99 and more
    assert page.locator("svg.timeline rect.hover").count() == 3 * 60
    busiest = page.locator("table.busiest tbody td.k").all_inner_texts()
    assert busiest[0] == "GET /users/<int>" and "GET /orders/<hex>" in busiest
    assert len(page.locator("table.slowest tbody tr").all()) == 3
    assert page.locator(".kpis").first.text_content().count("Latency p") == 3
    # The timelines are drawn at their width, not collapsed.
    assert page.locator("svg.timeline").first.bounding_box()["width"] > 300
    with page.expect_navigation():
        page.locator("table.slowest tbody td.k a").first.click()
    assert "/key?key=" in page.url and page.locator("svg.histogram").count() == 1
    assert page.errors == []


def test_the_health_page_lists_the_workers(page, site_url):
    page.goto(site_url + "/")
    with page.expect_navigation():
        page.locator(".kpis a[href*=health]").click()
    rows = page.locator("table.workers tbody tr")
    assert rows.count() >= 1
    assert str(os.getpid()) in rows.first.inner_text().replace(",", "")
    assert page.locator("table.workers td.status").first.inner_text() == "ok"
    assert page.errors == []


def first_table_keys(tab: Any) -> list[str]:
    return tab.locator("table.data").first.locator("tbody td.k").all_inner_texts()


def test_index_renders_tables_and_charts(page, dashboard_url):
    response = page.goto(dashboard_url + "/")
    assert response.status == 200 and "default-src 'none'" in response.headers["content-security-policy"]
    assert page.locator("table.data").count() == 4
    assert page.locator("svg.spark").count() >= 7 and page.locator("svg.bars").count() >= 11
    assert page.locator("svg.meter").count() >= 8
    # The stylesheet applied: numbers are right-aligned.
    assert page.locator("td.n").first.evaluate("cell => getComputedStyle(cell).textAlign") == "right"
    assert page.errors == []


def test_clicking_a_column_header_sorts(page, dashboard_url):
    page.goto(dashboard_url + "/")
    before = first_table_keys(page)
    with page.expect_navigation():
        page.locator("table.data").first.locator("th[data-col=key] a").click()
    after = first_table_keys(page)
    assert after != before and after == sorted(before)
    assert "sort=key" in page.url
    with page.expect_navigation():
        page.locator("table.data").first.locator("th[data-col=key] a").click()
    assert first_table_keys(page) == sorted(before, reverse=True)
    assert page.errors == []


def test_a_hostile_key_stays_text(page, dashboard_url):
    page.goto(dashboard_url + "/")
    assert PWN in first_table_keys(page)
    with page.expect_navigation():
        page.get_by_text(PWN).first.click()
    assert "/key?key=" in page.url and page.locator("svg.histogram").count() == 1
    assert page.locator("img").count() == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.errors == []


def test_key_drill_down_and_json_twin(page, dashboard_url):
    page.goto(dashboard_url + "/")
    with page.expect_navigation():
        page.locator("table.data").first.locator("tbody td.k a").first.click()
    assert page.locator("svg.histogram rect").count() >= 1 and page.locator("table.samples tbody tr").count() > 0
    with page.expect_navigation():
        page.get_by_role("link", name="JSON").click()
    assert '"samples"' in page.content()
    assert page.errors == []


class TimeLapse:
    """The wall clock sped up ``speed`` times from now, until frozen: an
    hour's charts fill with minutes of demo traffic in seconds."""

    def __init__(self, speed: float) -> None:
        self.origin, self.speed = time.time(), speed
        self.frozen: float | None = None

    def __call__(self) -> float:
        if self.frozen is not None:
            return self.frozen
        return self.origin + (time.time() - self.origin) * self.speed

    def freeze(self) -> None:
        self.frozen = self()


@pytest.mark.skipif(not os.environ.get("SAMPLEZ_SCREENSHOT"), reason="set SAMPLEZ_SCREENSHOT=<path.png> to run")
def test_screenshot_of_the_demo(page):
    """The demo site under its own traffic, in a time lapse (40 minutes of
    demo time in 40 s), opened on its overview."""
    from example_app.site import create_app
    from example_app.traffic import Traffic

    lapse = TimeLapse(speed=60)
    samplez.configure(store=samplez.MemoryStore(clock=lapse), clock=lapse)
    with serve(create_app(flush_interval=0.2)) as url:
        host, port = url.rsplit(":", 1)
        traffic = Traffic(host.split("//")[1], int(port), rate=300, threads=3, seed=7).start()
        time.sleep(float(os.environ.get("SAMPLEZ_SCREENSHOT_SECONDS", "40")))
        traffic.stop()
        lapse.freeze()
        engine.heartbeat.last = -float("inf")
        samplez.flush()
        page.set_viewport_size({"width": 1280, "height": 1400})
        page.goto(url + "/_samplez/?limit=6")
        page.screenshot(path=os.environ["SAMPLEZ_SCREENSHOT"], full_page=False)
        assert page.errors == []

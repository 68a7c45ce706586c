"""Django: ``samplez.Middleware(get_wsgi_application())`` and views that
call ``samplez.set``, on the minimal project in tests/django_project."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest
import webtest

import samplez

django = pytest.importorskip("django")


@pytest.fixture(scope="module")
def application():
    from django.conf import settings

    if not settings.configured:
        from tests.django_project.settings import SETTINGS

        settings.configure(**SETTINGS)
    from tests.django_project import wsgi

    return wsgi.application


@pytest.fixture
def site(application, samplez_on):
    return webtest.TestApp(application, extra_environ={"REMOTE_ADDR": "127.0.0.1"})


def test_wrapped_django_counts_what_views_set(site, clock):
    from tests.django_project import metrics

    for account, item in (("acme", 1), ("acme", 2), ("bootic", 2)):
        assert site.get(f"/shop/{account}/item/{item}").json == {"account": account, "item": item}
    latency = samplez.get(metrics.LATENCY)
    assert (latency.total_events, latency.average("/shop/acme/item/2")) == (3, 7.0)
    assert samplez.get(metrics.HITS)["item"].total == 3
    today = datetime.fromtimestamp(clock(), timezone.utc)
    days = samplez.get(metrics.PAGEVIEWS, year=today.year, month=today.month)
    assert (days["acme"][today.day], days["all"][today.day]) == (2, 3)


def test_a_failing_django_view_still_contributes(site, caplog):
    from tests.django_project import metrics

    with caplog.at_level(logging.CRITICAL, logger="django.request"):
        site.get("/fail", status=500)
    assert samplez.get(metrics.HITS)["fail"].total == 1


def test_a_streamed_django_response_counts_sets_made_while_streaming(site):
    from tests.django_project import metrics

    assert site.get("/stream").text == "row 0\nrow 1\nrow 2\n"
    assert samplez.get(metrics.HITS)["streamed"].total == 3


def test_the_dashboard_answers_in_front_of_django(site):
    from tests.django_project import metrics

    site.get("/shop/acme/item/1")
    page = site.get("/_samplez/?format=json").json
    names = {m["name"] for s in page["sections"] for m in s["metrics"]}
    assert {m.name for m in metrics.SITE.metrics} <= names
    site.get("/no/such/page", status=404)  # Django's own 404, not the dashboard's


def test_django_requests_are_keyed_by_their_url_pattern(site):
    from samplez.requests import default_request_metrics

    site.get("/shop/acme/item/1")
    site.get("/shop/bootic/item/2")
    site.get("/no/such/page", status=404)
    samplez.flush()
    requests = samplez.get(default_request_metrics().requests)
    assert {key: requests[key].total for key in requests.keys()} == {
        "GET /shop/<str:account>/item/<int:item>": 2,
        "GET (unmatched)": 1,
    }

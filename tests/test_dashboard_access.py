"""Who may see the dashboard: loopback by default, a callable, HTTP basic
auth; and the wrapped application is never restricted."""

from __future__ import annotations

import base64

import pytest
import webtest

import samplez
from samplez.dashboard.access import is_loopback


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.mark.parametrize(
    "address, allowed",
    [
        pytest.param("127.0.0.1", True, id="ipv4-loopback"),
        pytest.param("127.200.3.4", True, id="ipv4-loopback-net"),
        pytest.param("::1", True, id="ipv6-loopback"),
        pytest.param("::ffff:127.0.0.1", True, id="ipv4-mapped-loopback"),
        pytest.param("10.0.0.1", False, id="private"),
        pytest.param("192.168.1.20", False, id="lan"),
        pytest.param("8.8.8.8", False, id="public"),
        pytest.param("::ffff:10.0.0.1", False, id="ipv4-mapped-private"),
        pytest.param("2001:db8::1", False, id="ipv6-public"),
        pytest.param("", False, id="empty"),
        pytest.param("localhost", False, id="a-name-is-not-an-address"),
        pytest.param("127.0.0.1, 10.0.0.1", False, id="garbage"),
        pytest.param(None, False, id="missing"),
    ],
)
def test_loopback_only_by_default(address, allowed):
    app = webtest.TestApp(samplez.Dashboard())
    environ = {} if address is None else {"REMOTE_ADDR": address}
    response = app.get("/", extra_environ=environ, expect_errors=True)
    assert response.status_int == (200 if allowed else 403)
    assert is_loopback(address) is allowed
    if not allowed:
        assert "loopback" in response.text and "Content-Security-Policy" in response.headers


@pytest.mark.parametrize(
    "headers, status",
    [
        pytest.param({}, 401, id="no-credentials"),
        pytest.param(basic("ops", "wrong"), 401, id="wrong-password"),
        pytest.param(basic("root", "s3cret:x"), 401, id="wrong-user"),
        pytest.param(basic("ops", "s3cret:x"[:-1]), 401, id="prefix-of-password"),
        pytest.param({"Authorization": "Basic !!!not-base64"}, 401, id="malformed"),
        pytest.param({"Authorization": "Bearer s3cret:x"}, 401, id="other-scheme"),
        pytest.param(basic("ops", "s3cret:x"), 200, id="right"),
        pytest.param({"Authorization": basic("ops", "s3cret:x")["Authorization"].lower()[:6]}, 401, id="no-token"),
        pytest.param({"Authorization": "basic " + basic("ops", "s3cret:x")["Authorization"][6:]}, 200, id="lower"),
    ],
)
def test_basic_auth(headers, status):
    app = webtest.TestApp(samplez.Dashboard(auth=("ops", "s3cret:x")))
    # Basic auth replaces the loopback rule: a remote client may log in.
    response = app.get("/", headers=headers, extra_environ={"REMOTE_ADDR": "203.0.113.9"}, expect_errors=True)
    assert response.status_int == status
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith('Basic realm="samplez"')


@pytest.mark.parametrize(
    "verdict, status",
    [
        pytest.param(lambda environ: environ.get("HTTP_X_TEAM") == "ops", 200, id="allows"),
        pytest.param(lambda environ: False, 403, id="refuses"),
        pytest.param(lambda environ: 1 / 0, 403, id="raises-means-refused"),
    ],
)
def test_callable_auth(verdict, status):
    app = webtest.TestApp(samplez.Dashboard(auth=verdict))
    response = app.get("/health", headers={"X-Team": "ops"}, extra_environ={"REMOTE_ADDR": "8.8.8.8"}, status="*")
    assert response.status_int == status


def test_the_wrapped_application_is_never_restricted():
    def wrapped(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"public"]

    app = webtest.TestApp(samplez.Middleware(wrapped), extra_environ={"REMOTE_ADDR": "198.51.100.7"})
    assert app.get("/anything").text == "public"
    assert app.get("/_samplez/", status=403).status_int == 403


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param("secret", id="a-str"),
        pytest.param(("ops",), id="one-item"),
        pytest.param(("ops", "pw", "x"), id="three-items"),
        pytest.param(("", "pw"), id="empty-user"),
        pytest.param(("ops", ""), id="empty-password"),
        pytest.param(("o:ps", "pw"), id="colon-in-user"),
        pytest.param(("ops", 1234), id="int-password"),
        pytest.param(42, id="an-int"),
        pytest.param(True, id="a-bool"),
    ],
)
def test_a_bad_auth_argument_is_a_config_error(auth):
    with pytest.raises(samplez.ConfigError, match="auth") as info:
        samplez.Dashboard(auth=auth)
    assert "pw" not in str(info.value)  # a password is never echoed


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"sections": "Latency"}, id="sections-str"),
        pytest.param({"sections": [42]}, id="sections-of-ints"),
        pytest.param({"sections": 42}, id="sections-int"),
        pytest.param({"store": "127.0.0.1:11211"}, id="store-str"),
    ],
)
def test_bad_sections_or_store_are_config_errors(kwargs):
    with pytest.raises(samplez.ConfigError, match=next(iter(kwargs))):
        samplez.Dashboard(**kwargs)

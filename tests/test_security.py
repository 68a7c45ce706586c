"""No user text reaches the memcache wire as a key: a TCP proxy in
front of a real memcached records every byte samplez sends, and the test
parses that stream as the memcached text protocol."""

from __future__ import annotations

import base64
import json
import re
import socket
import sys
import uuid
from typing import Any, Iterator
from urllib.parse import quote

import pytest
import webtest

import samplez
from samplez.store import base as ops
from samplez.testing import MemcachedServer
from tests.conftest import unique_name
from tests.proxy import Proxy

HOSTILE_KEYS = [
    "a b",
    "a\r\nb",
    "set x 0 0 1\r\nX\r\n",
    "k\r\nset injected 0 0 1\r\nY\r\nget injected",
    "\r\nflush_all\r\n",
    "get x",
    "k\x00\r\ndelete sentinel\r\n",
    "x" * 300,
    "\u202e<script>alert('injected')</script>",
    "caf\u00e9 \U0001f525",
]
# Fragments of the hostile keys that must never show up in a key on the wire.
FRAGMENTS = ["injected", "flush_all", "sentinel", "script", "set x", "get x", "xxxxxxxx", "caf"]
DIGEST_RE = re.compile(r"[0-9a-f]{26}")  # samplez.store.keys.digest
KEY_RE = re.compile(rb"samplez:[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)*")
COMMANDS = {b"get", b"gets", b"set", b"add", b"cas", b"incr", b"decr", b"touch", b"delete"}


@pytest.fixture
def proxy(memcached: MemcachedServer) -> Iterator[Proxy]:
    proxy = Proxy(memcached.port)
    yield proxy
    proxy.close()


def parse_commands(stream: bytes) -> list[tuple[bytes, list[bytes]]]:
    """``(command, keys)`` for every command in a client's byte stream; fails
    on anything that is not a well-formed memcached command."""
    commands = []
    pos = 0
    while pos < len(stream):
        end = stream.index(b"\r\n", pos)
        words = stream[pos:end].split(b" ")
        pos = end + 2
        cmd = words[0]
        assert cmd in COMMANDS, f"unexpected command on the wire: {stream[pos - 80 : pos]!r}"
        if cmd in (b"get", b"gets"):
            commands.append((cmd, words[1:]))
            continue
        commands.append((cmd, [words[1]]))
        if cmd in (b"set", b"add", b"cas"):
            size = int(words[4])
            assert stream[pos + size : pos + size + 2] == b"\r\n", "a data block that is not length-framed"
            pos += size + 2
    return commands


def raw_get(server: MemcachedServer, key: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(b"get " + key + b"\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            data += sock.recv(65536)
    return data


def metrics_under_test() -> list[samplez.Metric]:
    """One reservoir, and one counter of every kind that hashes user keys."""
    name = unique_name("sec")
    return [
        samplez.Config(name + "_r", period=60, samples=100, by_value=True, max_key_length=1000),
        samplez.RollingCounter(name + "_c", window=60),
        samplez.SteppedCounter(name + "_s", step=60),
        samplez.UniqueCounter(name + "_u", step=60),
    ]


def test_hostile_keys_never_reach_the_wire_as_keys(memcached, proxy, clock):
    assert raw_get(memcached, b"sentinel") == b"END\r\n"
    with socket.create_connection(("127.0.0.1", memcached.port)) as sock:
        sock.sendall(b"set sentinel 0 0 2\r\nok\r\n")
        assert sock.recv(64) == b"STORED\r\n"

    samplez.configure(store=samplez.MemcacheStore(f"127.0.0.1:{proxy.port}"), clock=clock, flush="request")
    config, rolling, stepped, unique = metrics_under_test()
    for key in HOSTILE_KEYS:
        samplez.set(config, key, 5)
        samplez.set([rolling, stepped], key, 2)
        samplez.set(unique, key, key)  # the item is hostile too
    summary = samplez.flush()
    assert summary.errors == 0 and summary.dropped == 0

    stream = bytes(proxy.sent)
    commands = parse_commands(stream)
    keys = [key for _, found in commands for key in found]
    assert commands and keys
    for key in keys:
        assert len(key) <= 250 and KEY_RE.fullmatch(key), f"key on the wire: {key!r}"
        # A digest is ours (hashed user text): "caf" is hex, so one may hold it.
        text = ":".join(part for part in key.decode("ascii").lower().split(":") if not DIGEST_RE.fullmatch(part))
        assert not any(fragment in text for fragment in FRAGMENTS), f"user text in a key: {key!r}"

    # The server saw no command but ours: nothing injected, nothing flushed,
    # and it holds exactly the keys written on the wire, plus the sentinel.
    for injected in (b"x", b"injected", b"k"):
        assert raw_get(memcached, injected) == b"END\r\n"
    assert raw_get(memcached, b"sentinel") == b"VALUE sentinel 0 2\r\nok\r\nEND\r\n"
    written = {key for cmd, found in commands if cmd in (b"set", b"add", b"cas") for key in found}
    assert set(memcached.keys()) == {"sentinel", *(key.decode() for key in written)}

    # And the data reads back: every hostile key, exactly.
    result = samplez.get(config)
    assert sorted(result.keys()) == sorted(HOSTILE_KEYS)
    assert all(result.samples(key)[0][1] == 5.0 for key in HOSTILE_KEYS)
    counted = samplez.get(rolling)
    assert all(counted[key].total == 2 for key in HOSTILE_KEYS)
    assert all(samplez.get(unique)[key].value == 1 for key in HOSTILE_KEYS)


def test_store_refuses_keys_that_would_break_the_protocol(memcached, proxy):
    # Defence in depth below the key builder: a malformed key never goes out.
    store = samplez.MemcacheStore(f"127.0.0.1:{proxy.port}")
    results, _ = store.execute([ops.set_("bad key", b"1", 60), ops.get("bad\r\nkey"), ops.set_("ok", b"1", 60)])
    assert results[2] is True
    assert all(ops.is_failure(r) for r in results[:2])
    assert b"bad" not in bytes(proxy.sent)
    assert raw_get(memcached, b"bad") == b"END\r\n"


def test_prefix_is_checked_before_it_can_reach_the_wire():
    for prefix in ("a b", "a\r\nb", "x" * 65, "caf\u00e9"):
        with pytest.raises(samplez.ConfigError):
            samplez.configure(prefix=prefix)


# -- the dashboard: hostile keys of every kind, no secrets ------------------------------

PAGES = ["/", "/health", "/config/{name}", "/config/{name}/key?key={key}", "/config/nope", "/?limit=x"]


def every_page(app: Any, metrics: list[Any]) -> Iterator[Any]:
    for metric in metrics:
        for key in HOSTILE_KEYS:
            for page in PAGES:
                for twin in ("", "format=json"):
                    url = page.format(name=metric.name, key=quote(key))
                    if twin:
                        url += ("&" if "?" in url else "?") + twin
                    yield app.get(url, expect_errors=True)


def test_dashboard_pages_leak_no_secret_and_run_no_user_text(memcached, clock, monkeypatch):
    secret = f"hunter2-{uuid.uuid4().hex}"
    password = f"pw-{uuid.uuid4().hex}"
    monkeypatch.setenv("SAMPLEZ_TEST_SECRET", secret)
    store = samplez.MemcacheStore(memcached.address)
    samplez.configure(store=store, clock=clock, flush="request")
    name = unique_name("dash")
    metrics = [
        samplez.Config(name + "_r", period=60, samples=100, by_value=True),
        samplez.RollingCounter(name + "_c", window=60),
        samplez.SteppedCounter(name + "_s", step=60),
        samplez.CalendarCounter(name + "_y"),
    ]
    for key in HOSTILE_KEYS:
        samplez.set(metrics, key, 3)
    assert samplez.flush().dropped == 0

    dashboard = samplez.Dashboard(sections=samplez.Section("Hostile", *metrics), store=store, auth=("ops", password))
    credentials = base64.b64encode(f"ops:{password}".encode()).decode()
    app = webtest.TestApp(dashboard, extra_environ={"REMOTE_ADDR": "203.0.113.9"})
    assert app.get("/", expect_errors=True).status_int == 401
    app.authorization = ("Basic", ("ops", password))

    seen = 0
    for response in every_page(app, metrics):
        seen += 1
        assert response.status_int < 500, response.request.url
        assert "Content-Security-Policy" in response.headers
        body = response.text
        for leak in (secret, password, credentials, "Traceback", 'File "', sys.executable):
            assert leak not in body, f"{leak!r} in {response.request.url}"
        if response.content_type == "text/html":
            assert "<script" not in body.lower(), response.request.url
        else:
            json.loads(body)  # valid JSON, whatever the keys hold
    assert seen == len(metrics) * len(HOSTILE_KEYS) * len(PAGES) * 2

    data = app.get(f"/config/{metrics[0].name}?format=json&limit=100").json
    stored = sorted(metrics[0].normalize_key(key) for key in HOSTILE_KEYS)
    assert sorted(row["key"] for row in data["metric"]["rows"]) == stored


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-Forwarded-For": "127.0.0.1"}, id="x-forwarded-for"),
        pytest.param({"X-Real-IP": "127.0.0.1"}, id="x-real-ip"),
        pytest.param({"Forwarded": "for=127.0.0.1"}, id="forwarded"),
        pytest.param({"Host": "localhost"}, id="host-localhost"),
        pytest.param({"X-Forwarded-For": "::1", "X-Forwarded-Host": "127.0.0.1"}, id="forwarded-ipv6"),
    ],
)
def test_loopback_only_default_ignores_spoofed_client_headers(samplez_on, headers):
    # Only the socket's address counts: a remote client cannot claim to be local.
    app = webtest.TestApp(samplez.Dashboard(), extra_environ={"REMOTE_ADDR": "203.0.113.9"})
    for url in ("/", "/health?format=json", "/config/anything"):
        response = app.get(url, headers=headers, expect_errors=True)
        assert response.status_int == 403, url
        assert "Content-Security-Policy" in response.headers


@pytest.mark.parametrize(
    ("key", "accepted"),
    [
        pytest.param("k" * 250, True, id="250-chars"),
        pytest.param("samplez:a.b-c_d:1:n", True, id="ours"),
        pytest.param("k" * 251, False, id="251-chars"),
        pytest.param("", False, id="empty"),
        pytest.param("a b", False, id="space"),
        pytest.param("a\r\nset x 0 0 1", False, id="crlf"),
        pytest.param("a\tb", False, id="tab"),
        pytest.param("a\x00b", False, id="nul"),
        pytest.param("a\x7fb", False, id="del"),
        pytest.param("caf\u00e9", False, id="non-ascii"),
    ],
)
def test_both_stores_refuse_the_same_malformed_keys(store, key, accepted):
    results, _ = store.execute([ops.set_(key, b"v", 60), ops.get(key), ops.set_("after", b"ok", 60), ops.get("after")])
    assert results[2:] == [True, b"ok"]  # a bad key never desynchronizes what follows
    if accepted:
        assert results[:2] == [True, b"v"]
    else:
        assert all(ops.is_failure(r) for r in results[:2])

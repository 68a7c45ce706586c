from __future__ import annotations

import pytest

from samplez.reservoir.domain import domain_of


@pytest.mark.parametrize(
    "url, domain",
    [
        pytest.param("http://www.a.example.com/some/content", "example.com", id="subdomains"),
        pytest.param("https://example.com", "example.com", id="bare"),
        pytest.param("http://news.bbc.co.uk/x", "bbc.co.uk", id="three-label-suffix"),
        pytest.param("http://myapp.appspot.com/feed", "myapp.appspot.com", id="hosting-exception"),
        pytest.param("http://192.168.1.10:8080/x", "192.168.1.10", id="ipv4"),
        pytest.param("http://[2001:db8::1]/x", "2001:db8::1", id="ipv6"),
        pytest.param("http://WWW.Example.COM/", "example.com", id="case"),
        pytest.param("not a url", "bad_url", id="no-scheme"),
        pytest.param("", "bad_url", id="empty"),
        pytest.param("http://", "bad_url", id="no-host"),
        pytest.param("http://[::1/x", "bad_url", id="broken-ipv6"),
        pytest.param("http://a..b.com/", "bad_url", id="empty-label"),
    ],
)
def test_domain_of(url, domain):
    assert domain_of(url) == domain

"""Reduce a URL key to the domain it belongs to (``Config(by_domain=True)``)."""

from __future__ import annotations

import functools
import ipaddress
from urllib.parse import urlsplit

__all__ = ["BAD_URL", "domain_of"]

BAD_URL = "bad_url"

# Suffixes under which every registrable name has three labels, not two
# (``news.bbc.co.uk`` -> ``bbc.co.uk``), and hosting domains whose
# subdomains belong to different owners (``a.appspot.com`` stays whole).
_THREE_LABEL_SUFFIXES = frozenset(
    """
    co.uk org.uk ac.uk gov.uk ltd.uk me.uk net.uk nhs.uk plc.uk sch.uk
    com.au net.au org.au edu.au gov.au id.au
    co.nz net.nz org.nz govt.nz ac.nz
    co.jp ne.jp or.jp ac.jp go.jp
    com.br net.br org.br gov.br
    com.cn net.cn org.cn gov.cn edu.cn
    co.in net.in org.in gov.in ac.in
    co.za org.za gov.za ac.za
    com.mx org.mx gob.mx com.ar com.tr com.tw com.hk com.sg co.kr or.kr
    co.il org.il ac.il com.ua co.id
    appspot.com blogspot.com github.io herokuapp.com cloudfront.net
    """.split()
)


@functools.lru_cache(maxsize=4096)
def domain_of(url: str) -> str:
    """Return the registrable domain of ``url``.

    IP addresses are kept whole, ``www.a.example.com`` gives ``example.com``,
    ``news.bbc.co.uk`` gives ``bbc.co.uk``; anything that does not parse as
    an absolute URL with a host gives ``'bad_url'``.

    >>> domain_of('http://www.a.example.com/x?y')
    'example.com'
    """
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return BAD_URL
    if not host or any(ch in host for ch in " \t\r\n/\\@"):
        return BAD_URL
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = [label for label in host.rstrip(".").split(".")]
    if any(not label for label in labels) or not any(ch.isalpha() for ch in labels[-1]):
        return BAD_URL
    if len(labels) <= 2:
        return ".".join(labels)
    if ".".join(labels[-2:]) in _THREE_LABEL_SUFFIXES:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])

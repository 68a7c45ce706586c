"""Who may see the dashboard: loopback clients, a callable's verdict, or
HTTP basic auth.

The dashboard shows the keys of live traffic (URLs, user ids), so the
default is the safest one that still works on a developer's machine: only
clients on the loopback interface. Behind a reverse proxy every request
looks local, so give ``auth`` explicitly there.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
from typing import Any, Callable

from werkzeug.wrappers import Response

from ..errors import ConfigError

__all__ = ["Guard", "guard", "is_loopback"]

log = logging.getLogger("samplez")

#: ``guard(environ)`` returns ``None`` to let the request in, else the
#: response that refuses it.
Guard = Callable[[dict[str, Any]], Response | None]


def is_loopback(address: object) -> bool:
    """True for 127.0.0.0/8, ``::1`` and IPv4-mapped ``::ffff:127.x``."""
    if not isinstance(address, str):
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _refuse(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(f"{status} {message}\n", status=status, mimetype="text/plain", headers=headers)


def _loopback_only(environ: dict[str, Any]) -> Response | None:
    if is_loopback(environ.get("REMOTE_ADDR")):
        return None
    return _refuse(403, "Forbidden: the samplez dashboard answers loopback clients only (see its auth argument)")


def _by_callable(check: Callable[[dict[str, Any]], bool]) -> Guard:
    def guard(environ: dict[str, Any]) -> Response | None:
        try:
            allowed = bool(check(environ))
        except Exception:
            log.exception("samplez dashboard: the auth callable raised; access refused")
            allowed = False
        return None if allowed else _refuse(403, "Forbidden")

    return guard


def _basic(user: str, password: str) -> Guard:
    expected_user, expected_password = user.encode(), password.encode()
    challenge = {"WWW-Authenticate": 'Basic realm="samplez", charset="UTF-8"'}

    def guard(environ: dict[str, Any]) -> Response | None:
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                given = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                given = b""
            given_user, _, given_password = given.partition(b":")
            # Both compares always run, so timing tells nothing about which failed.
            user_ok = hmac.compare_digest(given_user, expected_user)
            password_ok = hmac.compare_digest(given_password, expected_password)
            if user_ok and password_ok:
                return None
        return _refuse(401, "Unauthorized", challenge)

    return guard


def guard(auth: object) -> Guard:
    """The access check for an ``auth`` argument of the dashboard.

    :param auth: ``None`` (loopback clients only), a callable
        ``(environ) -> bool``, or ``('user', 'password')`` for HTTP basic
        auth; anything else is a :class:`~samplez.ConfigError`.
    """
    if auth is None:
        return _loopback_only
    if isinstance(auth, (tuple, list)):
        if len(auth) != 2 or not all(isinstance(part, str) and part for part in auth):
            raise ConfigError(f"auth must be ('user', 'password') with two non-empty str, got {_masked(auth)}")
        if ":" in auth[0]:
            raise ConfigError(f"auth user must not contain ':', got {auth[0]!r}")
        return _basic(auth[0], auth[1])
    if callable(auth):
        return _by_callable(auth)
    raise ConfigError(f"auth must be None, a callable (environ) -> bool or ('user', 'password'), got {_masked(auth)}")


def _masked(auth: object) -> str:
    """Describe a bad auth argument without echoing a password into logs."""
    if isinstance(auth, (tuple, list)):
        return f"a {type(auth).__name__} of {len(auth)} item(s)"
    if isinstance(auth, str):
        return f"a str of {len(auth)} characters"
    return repr(auth)

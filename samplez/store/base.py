"""The small store interface every algorithm in samplez talks to.

Algorithms never see the wire: they build lists of :class:`Op` and hand them
to :meth:`Store.execute`, which applies the whole list in one round trip per
server (a pipeline) and returns one result per op, in order:

=========  ==========================================================
``get``    the stored bytes, or ``None`` when the key is missing
``gets``   ``(bytes, cas_token)``, or ``None`` when the key is missing
``add``    ``True`` when stored, ``False`` when the key already exists
``set``    ``True`` when stored
``cas``    ``True`` when stored, ``False`` when the key changed or is gone
``incr``   the new value, or ``None`` when the key is missing
``touch``  ``True`` when the key exists
``delete`` ``True`` when the key existed
=========  ==========================================================

Any op may instead give a :class:`Failure`: ``UNREACHABLE`` when its server
could not be asked, ``REFUSED`` when the server answered with an error (a
non-numeric value under ``incr``, out of memory, a value too large).
"""

from __future__ import annotations

import abc
import re
from typing import Any, NamedTuple, Sequence

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_VALUE_LENGTH",
    "RELATIVE_TTL_LIMIT",
    "Failure",
    "Op",
    "REFUSED",
    "Store",
    "UNREACHABLE",
    "add",
    "cas",
    "delete",
    "get",
    "gets",
    "incr",
    "is_failure",
    "set_",
    "touch",
    "valid_key",
]

MAX_KEY_LENGTH = 250
MAX_VALUE_LENGTH = 1024 * 1024
# memcached reads an expiry above 30 days as an absolute UNIX time.
RELATIVE_TTL_LIMIT = 30 * 24 * 3600


#: Whether a str is one memcache key: printable ASCII without spaces, 1 to
#: 250 characters (a space or a newline would be read as more protocol).
valid_key = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}").fullmatch


class Failure:
    """The result of an op that did not happen; falsy, never equal to data."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"<samplez store failure: {self.reason}>"


UNREACHABLE = Failure("unreachable")
REFUSED = Failure("refused")


def is_failure(result: Any) -> bool:
    return isinstance(result, Failure)


class Op(NamedTuple):
    """One memcache operation; build them with the helpers below."""

    cmd: str
    key: str
    value: bytes = b""
    ttl: int = 0
    cas: int = 0
    delta: int = 0


def get(key: str) -> Op:
    return Op("get", key)


def gets(key: str) -> Op:
    return Op("gets", key)


def add(key: str, value: bytes, ttl: int) -> Op:
    return Op("add", key, value, ttl)


def set_(key: str, value: bytes, ttl: int) -> Op:
    return Op("set", key, value, ttl)


def cas(key: str, value: bytes, token: int, ttl: int) -> Op:
    return Op("cas", key, value, ttl, token)


def incr(key: str, delta: int) -> Op:
    return Op("incr", key, delta=delta)


def touch(key: str, ttl: int) -> Op:
    return Op("touch", key, ttl=ttl)


def delete(key: str) -> Op:
    return Op("delete", key)


class Store(abc.ABC):
    """A memcache-like key/value store that applies ops in batches."""

    #: Shown on the dashboard.
    kind: str = "store"
    #: False when every process has its own copy (the dashboard says so).
    shared: bool = True

    @abc.abstractmethod
    def execute(self, ops: Sequence[Op]) -> tuple[list[Any], int]:
        """Apply ``ops`` in order; return their results and the number of
        round trips it took (one per server asked, zero for no ops)."""

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Read ``keys`` in one round trip; missing or failed keys are absent."""
        results, _ = self.execute([get(key) for key in keys])
        return {k: v for k, v in zip(keys, results) if isinstance(v, bytes)}

    def reset_after_fork(self) -> None:
        """Drop state that must not be shared with a parent process."""

    def close(self) -> None:
        """Release connections; the store stays usable and reconnects."""

    def describe(self) -> str:
        return self.kind

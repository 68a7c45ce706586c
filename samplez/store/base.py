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
from itertools import repeat
from typing import Any, Iterable, NamedTuple, Sequence

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
    "count_failures",
    "is_failure",
    "set_",
    "touch",
    "all_keys_valid",
    "valid_key",
]

MAX_KEY_LENGTH = 250
MAX_VALUE_LENGTH = 1024 * 1024
# memcached reads an expiry above 30 days as an absolute UNIX time.
RELATIVE_TTL_LIMIT = 30 * 24 * 3600


#: Whether a str is one memcache key: printable ASCII without spaces, 1 to
#: 250 characters (a space or a newline would be read as more protocol).
valid_key = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}").fullmatch


#: The bytes a key may hold (what ``valid_key`` accepts).
_KEY_BYTES = bytes(range(0x21, 0x7F))


def all_keys_valid(keys: Sequence[str]) -> bool:
    """Whether ``valid_key`` accepts every key: one pass over a whole flush's
    keys joined, where a regex match per key would be the flush's largest
    cost after the network."""
    if not keys:
        return True
    text = "".join(keys)
    if not text.isascii() or text.encode("ascii").translate(None, _KEY_BYTES):
        return False
    lengths = list(map(len, keys))
    return min(lengths) >= 1 and max(lengths) <= MAX_KEY_LENGTH


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


def count_failures(results: Iterable[Any]) -> int:
    """How many of ``results`` are failures, counted in C."""
    return sum(map(isinstance, results, repeat(Failure)))


class Op(NamedTuple):
    """One memcache operation; build them with the helpers below."""

    cmd: str
    key: str
    value: bytes = b""
    ttl: int = 0
    cas: int = 0
    delta: int = 0


# The helpers build an Op with tuple.__new__, in C: Op(...) would run the
# named tuple's __new__, a Python function, for every op of a flush.
_new = tuple.__new__


def get(key: str) -> Op:
    return _new(Op, ("get", key, b"", 0, 0, 0))


def gets(key: str) -> Op:
    return _new(Op, ("gets", key, b"", 0, 0, 0))


def add(key: str, value: bytes, ttl: int) -> Op:
    return _new(Op, ("add", key, value, ttl, 0, 0))


def set_(key: str, value: bytes, ttl: int) -> Op:
    return _new(Op, ("set", key, value, ttl, 0, 0))


def cas(key: str, value: bytes, token: int, ttl: int) -> Op:
    return _new(Op, ("cas", key, value, ttl, token, 0))


def incr(key: str, delta: int) -> Op:
    return _new(Op, ("incr", key, b"", 0, 0, delta))


def touch(key: str, ttl: int) -> Op:
    return _new(Op, ("touch", key, b"", ttl, 0, 0))


def delete(key: str) -> Op:
    return _new(Op, ("delete", key, b"", 0, 0, 0))


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

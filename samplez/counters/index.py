"""The bounded index of the keys a counter has seen.

Each counter keeps one memcache value, ``<prefix>:<name>:index``: a format
version byte and a JSON list of the keys it has admitted, at most
``max_keys`` of them plus ``(other)``, where every later key is counted.
The index is only a listing for ``keys()`` and the dashboard: each key's
data lives under its own (hashed) memcache keys, so a read of a key works
whether or not the index still names it.

Admission must know the index before the data is written (a key past the
bound is written as ``(other)``), which costs a round trip. A small local
cache avoids it for keys this process admitted recently; the cache is
refreshed every :data:`REFRESH` seconds so that an evicted or expired index
is rebuilt from the keys still being written. The index is merged with
``gets``/``cas`` (or ``add`` when missing); a lost race only means the key
is listed on its next write, never a lost count.
"""

from __future__ import annotations

import json
import math
from typing import Any, Generator

from ..flush import Context
from ..store.base import Op, add, cas, get, gets
from ..store.keys import FORMAT_VERSION

__all__ = ["OTHER", "Admission", "KeyIndex", "decode_index"]

#: Where counts of keys past ``max_keys`` go.
OTHER = "(other)"
#: Seconds a process trusts its cached copy of the index.
REFRESH = 30.0
#: Bytes the encoded index may take: well inside one memcache item (1 MB),
#: whatever the keys hold (JSON escapes a control character in 6 bytes).
MAX_INDEX_BYTES = 512 * 1024
_VERSION = bytes([FORMAT_VERSION])


def encode_index(keys: list[str]) -> bytes:
    return _VERSION + json.dumps(keys, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def decode_index(raw: object) -> list[str]:
    """The listed keys, or ``[]`` for a missing or foreign value."""
    if not isinstance(raw, bytes) or raw[:1] != _VERSION:
        return []
    try:
        keys = json.loads(raw[1:].decode("utf-8", "surrogatepass"))
    except (UnicodeDecodeError, ValueError):
        return []
    if not isinstance(keys, list):
        return []
    return [key for key in keys if isinstance(key, str) and _utf8(key)]


def _utf8(key: str) -> bool:
    """False for a key no writer of ours stores (a lone surrogate from a
    JSON escape in foreign bytes): it could not be shown or encoded."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Admission:
    """The outcome of admitting one flush's keys: where each key's counts go
    (``stored[key]`` is the key itself or :data:`OTHER`), and the index
    write to send with the first data round (``ops``; pass its results to
    :meth:`settle`)."""

    __slots__ = ("stored", "ops", "_index", "_new")

    def __init__(self, index: KeyIndex, stored: dict[str, str], ops: list[Op], new: list[str]) -> None:
        self.stored = stored
        self.ops = ops
        self._index = index
        self._new = new

    def settle(self, results: list[Any]) -> None:
        """Record whether the index write went through."""
        if self.ops and results and results[0] is True:
            self._index.known.update(self._new)
        elif self.ops:
            # Lost a race or the server: read the index again next flush.
            self._index.fetched = -math.inf


class KeyIndex:
    """One counter's index and this process's cached copy of it.

    Only the flusher thread (one flush at a time) uses the cache.
    """

    def __init__(self, name: str, max_keys: int, ttl: int) -> None:
        self.name = name
        self.max_keys = max_keys
        self.ttl = ttl
        self.known: set[str] = set()
        self.full = False
        self.fetched = -math.inf
        # The store itself, not its id(): a store freed after a reconfigure
        # can leave its address, and so its id, to the next one, whose index
        # this cache knows nothing of.
        self._store: object = None
        self._prefix = ""

    def key(self, ctx: Context) -> str:
        return ctx.space.key(self.name, "index")

    def _fresh(self, ctx: Context) -> bool:
        if ctx.store is not self._store or ctx.space.prefix != self._prefix:
            self._store, self._prefix = ctx.store, ctx.space.prefix
            self.known, self.full, self.fetched = set(), False, -math.inf
            return False
        return self.fetched <= ctx.now < self.fetched + REFRESH

    def admit(self, keys: list[str], ctx: Context) -> Generator[list[Op], list[Any], Admission]:
        """Decide where ``keys`` are counted; yields one round (a ``gets`` of
        the index) unless the cached copy already answers."""
        if self._fresh(ctx):
            unknown = [key for key in keys if key not in self.known]
            if not unknown:
                return Admission(self, {key: key for key in keys}, [], [])
            if self.full and OTHER in self.known:
                return Admission(self, {key: key if key in self.known else OTHER for key in keys}, [], [])
        index_key = self.key(ctx)
        (result,) = yield [gets(index_key)]
        if isinstance(result, tuple):
            listed = decode_index(result[0])
            token: int | None = result[1]
        elif result is None:
            listed, token = [], None
        else:  # unreachable: admit what we can without touching the index
            listed, token = sorted(self.known), None
        self.known = set(listed)
        self.fetched = ctx.now
        room = self.max_keys - sum(1 for key in listed if key != OTHER)
        size = len(encode_index([*listed, OTHER]))
        stored: dict[str, str] = {}
        new: list[str] = []
        for key in keys:
            if key in self.known or key in stored:
                stored.setdefault(key, key)
                continue
            if room > 0 and key != OTHER:
                size += len(encode_index([key]))  # its JSON string and a comma, at most
                if size <= MAX_INDEX_BYTES:
                    stored[key] = key
                    new.append(key)
                    room -= 1
                    continue
                room = 0  # full by bytes: this key and the next new ones are (other)
            stored[key] = OTHER
            if OTHER not in self.known and OTHER not in new:
                new.append(OTHER)
        self.full = room <= 0
        if not new or (result is not None and not isinstance(result, tuple)):
            return Admission(self, stored, [], [])
        value = encode_index(listed + new)
        op = add(index_key, value, self.ttl) if token is None else cas(index_key, value, token, self.ttl)
        return Admission(self, stored, [op], new)

    def read(self, ctx: Context) -> list[str]:
        """The listed keys (``[]`` when the index is missing or unreachable)."""
        results, _ = ctx.store.execute([get(self.key(ctx))])
        return decode_index(results[0])

"""Records that processes keep in the store under a TTL (worker heartbeats,
published metric definitions), and the listing that lets a reader find
them.

A record is ``<prefix>:<name>:<id>`` (``id`` alphanumeric, so user text
never reaches a key), a version byte then JSON. The listing is
``<prefix>:<name>``: ``{id: the time its record expires}``. A writer sends
its records and merges their ids into the listing in two flush rounds
(``gets``, then ``cas``, or ``add`` when missing), dropping expired ids
and keeping at most the newest ``most``; a lost ``cas`` only delays the
listing to the writer's next try. Readers trust nothing another process
wrote: what does not parse reads as nothing.
"""

from __future__ import annotations

import json
import math
from typing import Any, Generator

from .flush import Context
from .store.base import Op, add, cas, get, gets, set_
from .store.keys import FORMAT_VERSION

__all__ = ["decode", "encode", "publish", "read"]

_VERSION = bytes([FORMAT_VERSION])


def encode(data: Any) -> bytes:
    return _VERSION + json.dumps(data, separators=(",", ":")).encode()


def decode(raw: object) -> Any:
    """The JSON of a value we wrote; ``None`` for anything else."""
    if not isinstance(raw, bytes) or raw[:1] != _VERSION:
        return None
    try:
        return json.loads(raw[1:])
    except ValueError:
        return None


def live(listing: object, now: float) -> dict[str, float]:
    """The unexpired ids of a decoded listing."""
    if not isinstance(listing, dict):
        return {}
    return {
        id_: until
        for id_, until in listing.items()
        if isinstance(id_, str) and id_.isalnum() and isinstance(until, (int, float)) and until > now
    }


def publish(
    ctx: Context, name: str, records: dict[str, tuple[bytes, int]], most: int
) -> Generator[list[Op], list[Any], bool]:
    """Write ``records`` (``{id: (value, ttl)}``) and list them (two
    rounds); returns whether the listing took them."""
    key = ctx.space.key(name)
    writes = [set_(ctx.space.key(name, id_), value, ttl) for id_, (value, ttl) in records.items()]
    results = yield [gets(key), *writes]
    listed = results[0]
    ids = live(decode(listed[0]) if isinstance(listed, tuple) else None, ctx.now)
    for id_, (_, ttl) in records.items():
        ids[id_] = max(ids.get(id_, 0), ctx.now + ttl)
    if len(ids) > most:
        ids = dict(sorted(ids.items(), key=lambda item: -item[1])[:most])
    ttl = math.ceil(max(ids.values()) - ctx.now)
    if isinstance(listed, tuple):
        merged = yield [cas(key, encode(ids), listed[1], ttl)]
    elif listed is None:
        merged = yield [add(key, encode(ids), ttl)]
    else:  # the store failed: try again next time
        return False
    return merged[0] is True


def read(ctx: Context, name: str) -> list[tuple[bytes, Any]]:
    """The live records of the listing ``name``, newest first: each as
    stored, and decoded."""
    (listed,), _ = ctx.store.execute([get(ctx.space.key(name))])
    ids = [id_ for id_, _ in sorted(live(decode(listed), ctx.now).items(), key=lambda item: -item[1])]
    if not ids:
        return []
    results, _ = ctx.store.execute([get(ctx.space.key(name, id_)) for id_ in ids])
    return [(raw, decode(raw)) for raw in results if isinstance(raw, bytes)]  # expired meanwhile: gone

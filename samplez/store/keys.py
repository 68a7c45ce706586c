"""Store key names, and the format version every stored value carries.

Every key is ``<prefix>:<metric name>:<parts>``: ASCII, no spaces, well
under memcached's 250 bytes. User text never appears in a key: it is hashed
(:func:`digest`), so no key can inject protocol.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "FORMAT_VERSION",
    "MAX_COUNT",
    "KeySpace",
    "count_of",
    "digest",
]

FORMAT_VERSION = 1
_VERSION_BYTE = bytes([FORMAT_VERSION])


def digest(text: str) -> str:
    """A 26-character ASCII name for any user text (128-bit BLAKE2b)."""
    raw = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return raw[:26]


class KeySpace:
    """Builds the memcache keys of every metric under one prefix."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix  # checked by samplez.configure

    def key(self, name: str, *parts: object) -> str:
        return ":".join((self.prefix, name, *map(str, parts)))


#: More than any counter reaches (2**53, exact as a float): a stored number
#: above it is someone else's (garbage), or one that wrapped, not a count.
MAX_COUNT = 2**53


def count_of(raw: object) -> int:
    """A memcache counter's value (plain ASCII digits, as ``incr`` keeps
    them, without a version byte); 0 for a missing or foreign value."""
    if isinstance(raw, bytes):
        digits = raw.strip()
        if digits.isdigit() and len(digits) < 20 and int(digits) <= MAX_COUNT:
            return int(digits)
    return 0

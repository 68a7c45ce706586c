"""Memcache key names and the versioned encoding of stored values.

Every key is ``<prefix>:<metric name>:<parts>``: ASCII, no spaces, well
under memcached's 250 bytes. User text never appears in a key: it is hashed
(:func:`digest`), so no key can inject protocol.
"""

from __future__ import annotations

import hashlib
import re
import struct

from .errors import ConfigError

__all__ = [
    "FORMAT_VERSION",
    "MAX_COUNT",
    "KeySpace",
    "check_prefix",
    "count_of",
    "decode_sample",
    "digest",
    "encode_sample",
]

FORMAT_VERSION = 1
_VERSION_BYTE = bytes([FORMAT_VERSION])
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_SAMPLE = struct.Struct("<dd")


def check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise ConfigError(f"prefix must be 1-64 characters of [A-Za-z0-9_.-], got {prefix!r}")
    return prefix


def digest(text: str) -> str:
    """A 26-character ASCII name for any user text (128-bit BLAKE2b)."""
    raw = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return raw[:26]


class KeySpace:
    """Builds the memcache keys of every metric under one prefix."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = check_prefix(prefix)

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


def encode_sample(key: str, when: float, value: float) -> bytes:
    """A reservoir slot: version byte, time, value, then the key in UTF-8."""
    # A lone surrogate (from a bad decode upstream) becomes "?": the slot
    # must decode as UTF-8 or the sample would be skipped when read.
    return _VERSION_BYTE + _SAMPLE.pack(when, value) + key.encode("utf-8", "replace")


def decode_sample(raw: bytes) -> tuple[str, float, float] | None:
    """``(key, when, value)``, or ``None`` for anything we did not write."""
    if len(raw) < 1 + _SAMPLE.size or raw[0] != FORMAT_VERSION:
        return None
    try:
        when, value = _SAMPLE.unpack_from(raw, 1)
        key = raw[1 + _SAMPLE.size :].decode("utf-8")
    except (struct.error, UnicodeDecodeError):
        return None
    if when != when or value != value or value in (float("inf"), float("-inf")):
        return None
    return key, when, value

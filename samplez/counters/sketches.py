"""Stepped counters whose step value is a mergeable structure rather than
an integer: :class:`HyperLogLogCounter` (Apache DataSketches HLL) and
:class:`BitmapCounter` (chunked bitmaps).

Both merge into memcache the same way: ``gets`` the stored value, merge
this flush's items into it locally, then ``cas`` it back (``add`` when it
is missing). A writer that loses the race puts its events back for the
next flush; both structures are idempotent, so a retried event never
counts twice. Foreign bytes under a key are read as empty and overwritten
by the ``cas``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..checks import check_bit, check_item, config_error
from ..flush import Context, Event, Outcome, Plan
from ..store.base import Op, add, cas, get, gets
from ..store.keys import FORMAT_VERSION
from .stepped import Stepped, StepReading

__all__ = ["BitmapCounter", "BitmapReading", "HyperLogLogCounter"]

_VERSION = bytes([FORMAT_VERSION])
#: Bits per bitmap chunk (one memcache value of 8 KiB before compression).
CHUNK_BITS = 1 << 16
_CHUNK_BYTES = CHUNK_BITS // 8


def _merge_plan(
    groups: list[tuple[str, Any, list[Event]]], results: list[Any], merge: Any, encode: Any, ttl: int, outcome: Outcome
) -> tuple[list[Op], list[list[Event]]]:
    """The ``cas``/``add`` writes merging each group's local value into
    what ``gets`` found; groups whose stored value already holds theirs
    are applied without a write."""
    writes: list[Op] = []
    pending: list[list[Event]] = []
    for (key, local, batch), found in zip(groups, results):
        if isinstance(found, tuple):
            merged = merge(found[0], local)
            if merged is None:
                outcome.applied += len(batch)
                continue
            writes.append(cas(key, encode(merged), found[1], ttl))
        elif found is None:
            writes.append(add(key, encode(local), ttl))
        else:
            outcome.failed += len(batch)
            continue
        pending.append(batch)
    return writes, pending


def _settle_merges(pending: list[list[Event]], results: list[Any], outcome: Outcome) -> None:
    for batch, result in zip(pending, results):
        if result is True:
            outcome.applied += len(batch)
        elif result is False:  # lost a compare-and-swap race: next flush
            outcome.retry.extend(batch)
        else:
            outcome.failed += len(batch)


def _datasketches() -> Any:
    """The DataSketches module, imported when the first HyperLogLog counter
    is defined: it loads numpy (~50 ms, and a BLAS thread pool per
    process), which an app without a HyperLogLog counter never needs."""
    import datasketches

    return datasketches


def _hll_item(item: str | int) -> str | int:
    """DataSketches hashes ints as 64-bit; a bigger one goes in as text."""
    if isinstance(item, int) and not -(2**63) <= item < 2**63:
        return f"int:{item}"
    return item


class HyperLogLogCounter(Stepped):
    """Estimates distinct items per key per step with a HyperLogLog sketch
    (Apache DataSketches), merged into memcache with compare-and-swap.

    :param precision: log2 of the sketch's registers (4-20); 14 gives about
        0.8 % standard error in about 8 KiB per key and step.

    Other parameters as :class:`~samplez.counters.stepped.Stepped`.

    >>> USERS = HyperLogLogCounter('users_1d', step=SECONDS_1_DAY, precision=14)
    >>> samplez.set(USERS, 'site', user_id)
    """

    kind = "hll"
    check_value = staticmethod(check_item)

    def __init__(
        self,
        name: str,
        step: int,
        keep: int = 12,
        precision: int = 14,
        start_time: float | None = None,
        roll: bool = True,
        max_keys: int = 100,
        title: str | None = None,
    ) -> None:
        # A dense precision-21 sketch serializes to just over 1 MB, past
        # memcached's item limit: it could never be stored.
        if type(precision) is not int or not 4 <= precision <= 20:
            raise config_error("precision", "must be an int in [4, 20]", precision)
        self.precision = precision
        super().__init__(name, step, keep, start_time, roll, max_keys, title)
        # Imported now, on the defining thread: imported by the flusher, a
        # fork() during the import would leave the child's flush (and its
        # exit) waiting for ever on the import lock the flusher held.
        _datasketches()

    def _decode(self, raw: object) -> Any:
        if not isinstance(raw, bytes) or raw[:1] != _VERSION:
            return None
        try:
            return _datasketches().hll_sketch.deserialize(raw[1:])
        except Exception:  # foreign bytes: DataSketches raises ValueError/RuntimeError
            return None

    @staticmethod
    def _encode(sketch: Any) -> bytes:
        return _VERSION + sketch.serialize_compact()

    def _merge(self, raw: bytes, local: Any) -> Any:
        stored = self._decode(raw)
        if stored is None:
            return local
        ds = _datasketches()
        union = ds.hll_union(self.precision)
        union.update(stored)
        union.update(local)
        merged = union.get_result(ds.tgt_hll_type.HLL_4)
        return None if merged.get_estimate() == stored.get_estimate() else merged

    def apply(self, events: Sequence[Event], ctx: Context) -> Plan:
        admission = yield from self.admit(events, ctx)
        outcome = Outcome()
        groups = []
        ds = _datasketches()
        for (key, index), batch in self._group(events, admission.stored, outcome).items():
            sketch = ds.hll_sketch(self.precision, ds.tgt_hll_type.HLL_4)
            for event in batch:
                sketch.update(_hll_item(event[2]))
            groups.append((self.count_key(ctx, key, index), sketch, batch))
        results = yield admission.ops + [gets(key) for key, _, _ in groups]
        admission.settle(results[: len(admission.ops)])
        writes, pending = _merge_plan(
            groups, results[len(admission.ops) :], self._merge, self._encode, self.ttl, outcome
        )
        if writes:
            _settle_merges(pending, (yield writes), outcome)
        return outcome

    def step_values(self, keys: list[str], steps: list[int], ctx: Context) -> dict[str, list[Any]]:
        results = self.read_steps(keys, steps, ctx)
        width = len(steps)
        values: dict[str, list[Any]] = {}
        for i, key in enumerate(keys):
            sketches = [self._decode(raw) for raw in results[i * width : (i + 1) * width]]
            values[key] = [None if s is None else int(round(s.get_estimate())) for s in sketches]
        return values

    count_suffix = ":hll"


@dataclass
class BitmapReading(StepReading):
    """A :class:`StepReading` whose ``value`` is the number of bits set in
    the current step; ``contains(i)`` tells whether bit ``i`` is set."""

    chunks: dict[int, int] = field(default_factory=dict, repr=False)

    def contains(self, bit: int) -> bool:
        return bool(self.chunks.get(bit // CHUNK_BITS, 0) >> (bit % CHUNK_BITS) & 1)

    def __contains__(self, bit: int) -> bool:
        return self.contains(bit)

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        del data["chunks"]
        return data


def _decode_chunk(raw: object) -> int | None:
    if not isinstance(raw, bytes) or raw[:1] != _VERSION:
        return None
    try:  # bounded: foreign bytes must not inflate past one chunk
        data = zlib.decompressobj().decompress(raw[1:], _CHUNK_BYTES + 1)
    except zlib.error:
        return None
    return int.from_bytes(data, "little") if len(data) == _CHUNK_BYTES else None


def _encode_chunk(bits: int) -> bytes:
    return _VERSION + zlib.compress(bits.to_bytes(_CHUNK_BYTES, "little"))


def _decode_directory(raw: object) -> set[int]:
    if not isinstance(raw, bytes) or raw[:1] != _VERSION or (len(raw) - 1) % 4:
        return set()
    return set(struct.unpack(f"<{(len(raw) - 1) // 4}I", raw[1:]))


def _encode_directory(chunks: set[int]) -> bytes:
    return _VERSION + struct.pack(f"<{len(chunks)}I", *sorted(chunks))


class BitmapCounter(Stepped):
    """Sets bit number ``value`` per key per step; reads the number of bits
    set and ``contains(i)`` (StatsCollector's BitMapCounter).

    Bits live in chunks of 65,536 (one compressed memcache value each),
    plus a directory of the chunks in use, all merged with compare-and-swap.
    Parameters as :class:`~samplez.counters.stepped.Stepped`; values are
    ints in ``[0, 2**32)``.

    >>> ACTIVE = BitmapCounter('active_users_1d', step=SECONDS_1_DAY)
    >>> samplez.set(ACTIVE, 'site', user_number)
    >>> samplez.get(ACTIVE)['site'].contains(user_number)
    """

    kind = "bitmap"
    check_value = staticmethod(check_bit)

    def apply(self, events: Sequence[Event], ctx: Context) -> Plan:
        admission = yield from self.admit(events, ctx)
        outcome = Outcome()
        chunks: list[tuple[str, int, list[Event]]] = []
        directories: list[tuple[str, set[int], list[Event]]] = []
        for (key, index), batch in self._group(events, admission.stored, outcome).items():
            local: dict[int, tuple[int, list[Event]]] = {}
            for event in batch:
                bits, same = local.get(event[2] // CHUNK_BITS, (0, []))
                same.append(event)
                local[event[2] // CHUNK_BITS] = (bits | 1 << (event[2] % CHUNK_BITS), same)
            for number, (bits, same) in local.items():
                chunks.append((self.data_key(ctx, key, index, "c", number), bits, same))
            # The directory write carries no events of its own: a lost race
            # retries the group (setting a bit twice is harmless).
            directories.append((self.data_key(ctx, key, index, "d"), set(local), batch))
        ops = admission.ops + [gets(key) for key, _, _ in chunks] + [gets(key) for key, _, _ in directories]
        results = yield ops
        admission.settle(results[: len(admission.ops)])
        results = results[len(admission.ops) :]
        chunk_results, directory_results = results[: len(chunks)], results[len(chunks) :]
        writes, pending = _merge_plan(chunks, chunk_results, self._merge_chunk, _encode_chunk, self.ttl, outcome)
        directory_outcome = Outcome()
        more, directory_pending = _merge_plan(
            directories, directory_results, _merge_directory, _encode_directory, self.ttl, directory_outcome
        )
        if writes or more:
            results = yield writes + more
            _settle_merges(pending, results[: len(writes)], outcome)
            _settle_merges(directory_pending, results[len(writes) :], directory_outcome)
        if directory_outcome.retry:
            # The chunks hold the bits but the directory does not name them:
            # set them again next flush, unless already being retried.
            retried = {id(event) for event in outcome.retry}
            again = [event for event in directory_outcome.retry if id(event) not in retried]
            outcome.retry.extend(again)
            outcome.applied -= len(again)
        return outcome

    @staticmethod
    def _merge_chunk(raw: bytes, bits: int) -> int | None:
        stored = _decode_chunk(raw)
        if stored is None:
            return bits
        merged = stored | bits
        return None if merged == stored else merged

    def _bitmaps(self, keys: list[str], steps: list[int], ctx: Context) -> dict[tuple[str, int], dict[int, int]]:
        """Per (key, step) that has data, its chunks: two round trips (the
        directories, then the chunks they name)."""
        prefixes = {key: self.data_prefix(ctx, key) for key in keys}  # each key hashed once
        pairs = [(key, index) for key in keys for index in steps]
        results, _ = ctx.store.execute([get(f"{prefixes[key]}:{index}:d") for key, index in pairs])
        wanted = [(pair, number) for pair, raw in zip(pairs, results) for number in sorted(_decode_directory(raw))]
        ops = [get(f"{prefixes[key]}:{index}:c:{number}") for (key, index), number in wanted]
        found, _ = ctx.store.execute(ops)
        bitmaps: dict[tuple[str, int], dict[int, int]] = {}
        for ((key, index), number), raw in zip(wanted, found):
            bits = _decode_chunk(raw)
            if bits is not None:
                bitmaps.setdefault((key, index), {})[number] = bits
        return bitmaps

    def _load(self, keys: list[str], steps: list[int], ctx: Context) -> dict[str, Any]:
        bitmaps = self._bitmaps(keys, steps, ctx)
        readings = {}
        for key in keys:
            values = [
                sum(map(int.bit_count, bitmaps[(key, index)].values())) if (key, index) in bitmaps else None
                for index in steps
            ]
            plain = self.reading(steps, values)
            chunks = bitmaps.get((key, steps[0]), {})
            readings[key] = BitmapReading(plain.value, plain.history, plain.step_start, chunks)
        return readings


def _merge_directory(raw: bytes, local: set[int]) -> set[int] | None:
    stored = _decode_directory(raw)
    merged = stored | local
    return None if merged == stored else merged

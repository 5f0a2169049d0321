"""The WAL's on-disk format: segment headers, record frames, operation batches. Pure.

Everything here turns bytes into values and back; nothing opens a file.

Segment file ``<dir>/<first LSN as 16 lower-case hex digits>.wal``, so that lexical order is
LSN order. It starts with a 24-byte header:

    offset  size  field
    0       8     magic ``b"DICTDBWL"``
    8       4     format version, unsigned big-endian (2)
    12      8     LSN of the first operation the segment holds, unsigned big-endian,
                  at most `MAX_LSN` (2**63 - 1, as snapshots take LSNs)
    20      4     CRC-32C of bytes 0..19, unsigned big-endian

then frames, back to back, to the end of the file. A frame:

    offset  size  field
    0       4     payload length N, unsigned big-endian; 1 <= N <= MAX_PAYLOAD
    4       1     flags: bit 0 set = payload is one zstandard frame (stating its content
                  size, at most MAX_PAYLOAD too); other bits 0
    5       4     CRC-32C of the flags byte and the payload, unsigned big-endian
    9       N     payload

A length of 0 never occurs in a written frame: a zero-filled tail (preallocated or never
written) reads as length 0 and is *torn*, as is a frame whose header or payload runs past the
end of the bytes. A complete frame whose CRC does not match is *corrupt*.

Payload: one *batch* of operations (whole statements: one, or those that writers and a
flush encoded together), consecutive LSNs, as one flat JSON array of 8 values per operation,
``[lsn, ts, kind, table, key, after, before, meta, lsn, ts, ...]``, values as plain trees
(`wal.tags`: tags for non-JSON values); ``lsn`` in 1..`MAX_LSN`, ``ts`` epoch seconds in
[0, `MAX_TS`) (before the year 10000). Flat, not one array per operation, because the log
keeps pending operations as one flat list (see `wal.durable`) and dumps it as it is: a
tracked object per pending operation made the garbage collector cost ~0.8 µs per insert.
(Version 1 had one array per operation; it is not read.)
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection, Iterator, Sequence
from functools import partial
from itertools import chain, pairwise
from typing import Any, Final

import crc32c as _crc32c
import orjson

from wal.errors import WALError, brief
from wal.operation import Operation, OpTuple
from wal.tags import from_plain, to_plain
from wal.zstd import compress, decompress

MAGIC: Final = b"DICTDBWL"
VERSION: Final = 2
#: Values per operation in a payload.
WIDTH: Final = 8
HEADER_SIZE: Final = 24
FRAME_HEADER_SIZE: Final = 9
MAX_PAYLOAD: Final = 1 << 28  # 256 MiB: larger lengths are damage, not data
#: The largest LSN (64-bit signed, as snapshots and the durable log's readers take it).
MAX_LSN: Final = 2**63 - 1
#: Operation times are epoch seconds before the year 10000 (what `datetime` can show).
MAX_TS: Final = 253_402_300_800
FLAG_ZSTD: Final = 0x01
SEGMENT_SUFFIX: Final = ".wal"

_HEADER = struct.Struct(">8sIQI")
_FRAME = struct.Struct(">IBI")
_crc = _crc32c.crc32c
#: The CRC-32C of each flags byte alone: a frame's CRC continues from it over the payload.
_FLAG_CRCS: Final = tuple(_crc(bytes((flags,))) for flags in range(256))


class FrameError(WALError):
    """Bytes that are not a valid frame or header.

    Attributes:
        offset: where the bad frame starts.
        reason: what is wrong.
        torn: True when the bytes end inside the frame (an interrupted write), False when the
            frame is complete but wrong (damage).
    """

    def __init__(self, offset: int, reason: str, *, torn: bool) -> None:
        super().__init__(f"offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason
        self.torn = torn


def segment_name(first_lsn: int) -> str:
    """The file name of the segment whose first operation is *first_lsn*.

    Raises:
        WALError: *first_lsn* outside 1..`MAX_LSN` (16 hex digits keep names in LSN order).
    """
    if not 1 <= first_lsn <= MAX_LSN:
        raise WALError(f"LSN {first_lsn} is outside 1..{MAX_LSN}")
    return f"{first_lsn:016x}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """The first LSN a segment file name encodes, or None if it is not a segment name."""
    stem = name[: -len(SEGMENT_SUFFIX)]
    if not name.endswith(SEGMENT_SUFFIX) or len(stem) != 16:
        return None
    try:
        return int(stem, 16)
    except ValueError:
        return None


def encode_header(first_lsn: int) -> bytes:
    """A segment header for a segment starting at *first_lsn*."""
    head = _HEADER.pack(MAGIC, VERSION, first_lsn, 0)[:20]
    return head + struct.pack(">I", _crc(head))


def decode_header(data: bytes) -> int:
    """The first LSN of a segment, from its first bytes.

    Raises:
        FrameError: short, wrong magic, unknown version, or bad CRC (offset 0).
    """
    if len(data) < HEADER_SIZE:
        raise FrameError(0, "segment header is truncated", torn=True)
    magic, version, first_lsn, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise FrameError(0, "not a dictdb WAL segment (bad magic)", torn=False)
    if crc != _crc(data[:20]):
        raise FrameError(0, "segment header checksum mismatch", torn=False)
    if version != VERSION:
        raise FrameError(0, f"unknown WAL format version {version}", torn=False)
    if not 1 <= first_lsn <= MAX_LSN:
        raise FrameError(0, f"segment header names LSN {first_lsn}", torn=False)
    return int(first_lsn)


def encode_frame(payload: bytes, *, zstd: bool = False) -> bytes:
    """Frame a payload (compressing it first when *zstd*)."""
    return b"".join(frame_parts(payload, zstd=zstd))


def frame_parts(
    payload: bytes | bytearray | memoryview, *, zstd: bool = False
) -> tuple[bytes, bytes | bytearray | memoryview]:
    """`encode_frame` as its header and its (possibly compressed) payload, to be written one
    after the other (a large payload is not copied behind its header)."""
    flags = 0
    if not 0 < len(payload) <= MAX_PAYLOAD:  # compressed or not: readers decompress no more
        raise WALError(f"payload of {len(payload)} bytes cannot be framed")
    if zstd:
        payload = compress(payload)
        flags = FLAG_ZSTD
    crc = _crc(payload, _crc(bytes((flags,))))  # of the flags byte and the payload, uncopied
    return _FRAME.pack(len(payload), flags, crc), payload


def iter_frames(data: bytes, offset: int) -> Iterator[tuple[int, int, bytes | bytearray]]:
    """Yield ``(frame_offset, next_offset, payload)`` for each frame from *offset* on.

    Payloads are returned decompressed.

    Raises:
        FrameError: at the first frame that is torn or corrupt (iteration stops there).
    """
    end = len(data)
    while offset < end:
        if end - offset < FRAME_HEADER_SIZE:
            raise FrameError(offset, "frame header runs past the end", torn=True)
        length, flags, crc = _FRAME.unpack_from(data, offset)
        if length == 0:
            zero_tail = not any(data[offset:])
            raise FrameError(
                offset,
                "zero-filled tail" if zero_tail else "frame length 0",
                torn=zero_tail,
            )
        if length > MAX_PAYLOAD:
            raise FrameError(offset, f"frame length {length} is impossible", torn=False)
        start = offset + FRAME_HEADER_SIZE
        stop = start + length
        if stop > end:
            raise FrameError(offset, "frame runs past the end", torn=True)
        payload: bytes | bytearray = data[start:stop]  # one copy, checked as it is
        if _crc(payload, _FLAG_CRCS[flags]) != crc:
            raise FrameError(offset, "frame checksum mismatch", torn=stop == end)
        if flags & ~FLAG_ZSTD:
            raise FrameError(offset, f"unknown frame flags {flags:#x}", torn=False)
        if flags & FLAG_ZSTD:
            try:
                payload = decompress(payload, MAX_PAYLOAD)
            except WALError as exc:
                raise FrameError(offset, f"bad compressed payload: {exc}", torn=False) from None
        yield offset, stop, payload
        offset = stop


def encode_batch(ops: Sequence[OpTuple | Operation], plain: Sequence[bool]) -> bytes:
    """The payload for a batch of operations.

    Args:
        ops: the operations, consecutive LSNs.
        plain: per operation, True when its after- and before-images and its meta need no
            tags (the write path knows); see `encode_flat`.
    """
    return encode_flat(
        [field for op in ops for field in op], [i for i, p in enumerate(plain) if not p]
    )


def encode_flat(flat: list[Any], tagged: Collection[int]) -> bytes:
    """`encode_batch` for operations given flat, `WIDTH` fields each, one after the other.

    *tagged* holds the positions (0 = the first operation of *flat*) of the operations whose
    after-image, before-image or meta may need tags (the owner knows: a create's definition,
    say). The rest are dumped as they are, at C speed, unless their key asks otherwise:
    keys are checked here, by type column-wise; an int key past what JSON numbers carry
    makes the fast dump fail, and then every operation is written tagged.
    """
    need = set(tagged)
    keys = flat[4::WIDTH]
    if not _UNTAGGED_KEYS.issuperset(map(type, keys)):
        need.update(i for i, key in enumerate(keys) if type(key) not in _UNTAGGED_KEYS)
    try:
        return orjson.dumps(_tag(flat, need) if need else flat)
    except orjson.JSONEncodeError:  # an int key beyond 64 bits
        return orjson.dumps(_tag(flat, range(len(keys))))


def _tag(flat: list[Any], need: Collection[int]) -> list[Any]:
    # *flat* with the operations at positions *need* in tagged form.
    out: list[Any] = []
    for i in range(len(flat) // WIDTH):
        fields = flat[i * WIDTH : (i + 1) * WIDTH]
        if i in need:
            lsn, ts, kind, table, key, after, before, meta = fields
            out += (lsn, ts, kind, table, to_plain(key), to_plain(after), to_plain(before))
            out.append(to_plain(meta))
        else:
            out.extend(fields)
    return out


# Key types JSON carries as they are (None: create and drop records have no key). An int
# between 2**63 and 2**64 is written as a number and read back exactly by orjson.
_UNTAGGED_KEYS: Final = frozenset({str, int, type(None)})


def decode_batch(payload: bytes | bytearray) -> list[Operation]:
    """The operations of a payload.

    Raises:
        WALError: malformed payload (any shape error).
    """
    return decode_columns(payload).operations()


class Batch:
    """The operations of one payload, decoded column by column (`decode_columns`).

    Each column holds one field of every operation, in LSN order: the operations are
    ``zip(lsns, ts, kinds, tables, keys, afters, befores, metas)``. Values are structured
    (tags read back); ``ts`` are floats.

    Attributes:
        first, last: the first and last LSN (consecutive in between).
        kind_set, table_set: the kinds and the table names the batch holds.
        key_types: the types of its keys.
        plain: True when no value needed a tag and every key, image and meta is what
            `wal.tags.to_plain` would write unchanged: keys str or int, images and metas
            None or flat dicts of str, bool, None, 64-bit int and finite float values (not a
            one-key dict whose key starts with ``$``). A reader may then take the images as
            they are: they are fresh objects nobody else holds. False is always safe.
    """

    __slots__ = (
        "afters",
        "befores",
        "first",
        "key_types",
        "keys",
        "kind_set",
        "kinds",
        "last",
        "lsns",
        "metas",
        "plain",
        "table_set",
        "tables",
        "ts",
    )

    def __init__(
        self,
        columns: Sequence[list[Any]],
        plain: bool,
        sets: tuple[set[str], set[str], set[type]] | None = None,
    ) -> None:
        (
            self.lsns,
            self.ts,
            self.kinds,
            self.tables,
            self.keys,
            self.afters,
            self.befores,
            self.metas,
        ) = columns
        self.first: int = self.lsns[0]
        self.last: int = self.lsns[-1]
        self.plain = plain
        if sets is None:
            sets = set(self.kinds), set(self.tables), set(map(type, self.keys))
        self.kind_set, self.table_set, self.key_types = sets

    def __len__(self) -> int:
        return len(self.lsns)

    def tuples(self) -> Iterator[OpTuple]:
        """The operations as plain tuples (`OpTuple`), built as they are iterated."""
        return zip(
            self.lsns,
            self.ts,
            self.kinds,
            self.tables,
            self.keys,
            self.afters,
            self.befores,
            self.metas,
            strict=True,
        )

    def operations(self) -> list[Operation]:
        """The operations as `Operation` records."""
        return list(map(_new_operation, self.tuples()))

    def after(self, lsn: int) -> Batch | None:
        """The operations after *lsn* (this batch when all are; None when none is)."""
        if lsn < self.first:
            return self
        if lsn >= self.last:
            return None
        cut = lsn + 1 - self.first
        columns = [column[cut:] for column in self.columns()]
        return Batch(columns, self.plain)

    def until(self, lsn: int) -> Batch | None:
        """The operations up to *lsn* (this batch when all are; None when none is)."""
        if lsn >= self.last:
            return self
        if lsn < self.first:
            return None
        keep = lsn + 1 - self.first
        return Batch([column[:keep] for column in self.columns()], self.plain)

    def columns(self) -> list[list[Any]]:
        """The eight columns, in `Operation` field order."""
        return [
            self.lsns,
            self.ts,
            self.kinds,
            self.tables,
            self.keys,
            self.afters,
            self.befores,
            self.metas,
        ]


#: An `Operation` of an `OpTuple`, without `Operation`'s Python-level constructor.
_new_operation: Callable[[OpTuple], Operation] = partial(tuple.__new__, Operation)


_chain = chain.from_iterable
#: Types of a flat dict's values that need no tag (ints and floats: see `_DIGIT_RUN`).
_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
_INT_ONLY: Final = frozenset({int})
_NUMBERS: Final = frozenset({int, float})
_STR_ONLY: Final = frozenset({str})
_KEYS_AS_IS: Final = frozenset({str, int, type(None)})
_IMAGES_AS_IS: Final = frozenset({dict, type(None)})
_FLOAT_ONLY: Final = frozenset({float})
#: Maps ASCII digits to "0", every other byte to " ": an int beyond 64 bits (which JSON
#: readers take as an int up to 2**64 - 1) is a run of at least 19 digits.
_DIGITS: Final = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_DIGIT_RUN: Final = b"0" * 19


def decode_columns(payload: bytes | bytearray) -> Batch:
    """The operations of a payload, as columns (see `Batch`).

    Checked column by column, at C speed, in the common case (values without tags); any
    doubt takes the per-operation path, whose errors it raises.

    Raises:
        WALError: malformed payload (any shape error).
    """
    try:
        items = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise WALError(f"payload is not JSON: {exc}") from None
    if type(items) is not list or not items:
        raise WALError("payload must be a non-empty array of operations")
    if len(items) % WIDTH:
        raise WALError(f"payload holds {len(items)} values, not a multiple of {WIDTH}")
    columns = [items[i::WIDTH] for i in range(WIDTH)]
    lsns, ts, kinds, tables, keys, afters, befores, metas = columns
    first = lsns[0]
    count = len(lsns)
    try:
        kind_set, table_set = _distinct(kinds), _distinct(tables)
    except TypeError:  # an unhashable kind or table
        return decode_each(items)
    if not (
        type(first) is int
        and 1 <= first <= MAX_LSN - count + 1
        and _INT_ONLY.issuperset(map(type, lsns))
        and lsns == list(range(first, first + count))
        and _STR_ONLY.issuperset(map(type, kind_set))
        and _STR_ONLY.issuperset(map(type, table_set))
    ):
        return decode_each(items)
    if not _FLOAT_ONLY.issuperset(map(type, ts)):
        if not _NUMBERS.issuperset(map(type, ts)):
            return decode_each(items)
        columns[1] = ts = list(map(float, ts))
    if not (min(ts) >= 0 and max(ts) < MAX_TS):
        return decode_each(items)
    key_types = set(map(type, keys))
    sets = kind_set, table_set, key_types
    if (
        _KEYS_AS_IS.issuperset(key_types)
        and _IMAGES_AS_IS.issuperset(map(type, afters))
        and (befores.count(None) == count or _IMAGES_AS_IS.issuperset(map(type, befores)))
        and (metas.count(None) == count or _IMAGES_AS_IS.issuperset(map(type, metas)))
    ):
        images = [*filter(None, afters), *filter(None, befores), *filter(None, metas)]
        if _SCALARS.issuperset(map(type, _chain(map(dict.values, images)))) and (
            1 not in set(map(len, images)) or not any(map(_looks_tagged, images))
        ):
            # Nothing to read back: each value is its own structured form. Plain unless an
            # int may lie beyond 64 bits (exactness then needs a tag: see `Batch.plain`).
            return Batch(columns, payload.translate(_DIGITS).find(_DIGIT_RUN) < 0, sets)
    try:
        values = [[from_plain(v) for v in column] for column in columns[4:]]
    except WALError:
        return decode_each(items)  # the error of the first operation at fault
    return Batch([*columns[:4], *values], False)


def _distinct(values: list[Any]) -> set[Any]:
    # The set of *values*, without hashing each when they are all equal (a kind or a table
    # name is a fresh str per operation: comparing it to the first is cheaper).
    if values.count(values[0]) == len(values):
        return {values[0]}
    return set(values)


def _looks_tagged(image: dict[str, Any]) -> bool:
    # A one-key dict whose key starts with "$": a tag (or an escaped user dict).
    return len(image) == 1 and next(iter(image)).startswith("$")


def decode_each(items: list[Any]) -> Batch:
    """A decoded payload's values (*items*) checked and read back operation by operation:
    what `decode_columns` falls back to when its column checks doubt, and so the error
    naming the first bad operation (or the batch, when the doubt was needless).

    Raises:
        WALError: malformed operations.
    """
    out: list[OpTuple] = []
    for start in range(0, len(items), WIDTH):
        item = items[start : start + WIDTH]
        lsn, ts, kind, table = item[:4]
        if (
            type(lsn) is not int
            or not 1 <= lsn <= MAX_LSN
            or type(ts) not in (int, float)
            or not 0 <= ts < MAX_TS
            or type(kind) is not str
        ):
            shown = ", ".join(map(brief, item[:4]))
            raise WALError(f"malformed operation header [{shown}]")
        if type(table) is not str:
            raise WALError(f"operation {lsn}: table must be a str")
        out.append(
            (
                lsn,
                float(ts),
                kind,
                table,
                from_plain(item[4]),
                from_plain(item[5]),
                from_plain(item[6]),
                from_plain(item[7]),
            )
        )
    for a, b in pairwise(out):
        if b[0] != a[0] + 1:
            raise WALError(f"operations {a[0]} and {b[0]} in one batch are not consecutive")
    return Batch([list(c) for c in zip(*out, strict=True)], False)

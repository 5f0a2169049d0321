"""Key indexes of log segments: which frames of a segment hold a given item or collection.

A reader that wants one item's operations (an audit of one record) need not decode a whole
log: beside a segment ``<first LSN>.wal`` may lie ``<first LSN>.wal.keys``, which maps a
32-bit *token* of each (collection, key) to the frames that hold it. It is a cache, never a
source of truth:

- it is written on request, by `index_segments` (a whole log: a cron job, in its own
  process) or `key_operations(build=True)`, atomically (temporary name, then rename); a
  plain read never writes;
- it covers a *prefix* of its segment, whose last frame it names by offset, length and CRC:
  frames appended later are scanned, and a segment whose prefix changed (a torn tail cut and
  rewritten after a power loss) no longer matches;
- it is checksummed (CRC-32C of its header and of its body). A damaged, stale or mismatched
  index is reported with a `KeyIndexWarning` and the segment is scanned as if it had none:
  the answer never depends on the index being right, only the time does;
- tokens collide (equal keys always share one; distinct keys rarely do): every frame read
  through the index is decoded and its operations filtered by the exact key.

File layout (integers little-endian)::

    offset  size  field
    0       8     magic ``b"DICTDBKX"``
    8       4     format version (1)
    12      8     the segment's first LSN
    20      8     covered: bytes of the segment the index covers (a whole number of frames)
    28      8     the last LSN of the covered frames
    36      4     the CRC field of the last covered frame's header
    40      4     F: frames covered
    44      4     E: entries
    48      4     CRC-32C of bytes 0..47
    52      16*F  each frame: offset (8), first LSN (8)
    ..      4*E   tokens, ascending
    ..      4*E   for each token, the number of a frame (0..F-1) that holds it
    ..      4     CRC-32C of every byte from offset 52 up to here

The index names only what is in the frames: keys are not stored, only tokens, so an index
leaks no more than the log's own size and structure.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as _dt
import decimal
import os
import struct
import sys
import uuid
import warnings
from array import array
from collections.abc import Iterator
from functools import partial
from itertools import pairwise, repeat
from pathlib import Path
from typing import Any, Final

import crc32c as _crc32c

from wal.directory import open_regular, read_regular
from wal.errors import NotRegularFileError, WALError
from wal.framing import FRAME_HEADER_SIZE, HEADER_SIZE, Batch, FrameError, decode_columns
from wal.framing import iter_frames as _iter_frames
from wal.operation import ITEM_KINDS, Operation
from wal.recovery import (
    RecoveryError,
    check_follows,
    check_header,
    header_never_written,
    list_segments,
    segment_frames,
)

MAGIC: Final = b"DICTDBKX"
VERSION: Final = 1
SUFFIX: Final = ".keys"
_HEAD = struct.Struct("<8sIQQQIIII")
_FRAME_HEAD = struct.Struct(">IBI")
_crc = _crc32c.crc32c
#: A key of no known type: every such key shares this canonical form (correct, only coarse).
_OTHER: Final = b"?"
#: The canonical form of "the collection itself" (create and drop operations).
_COLLECTION: Final = b"T"


class KeyIndexWarning(UserWarning):
    """A key index was damaged, stale or did not match its segment: it was not used (the
    segment was scanned instead, and the answer is complete)."""


def _canonical(key: Any) -> bytes:
    # Equal keys give equal bytes (1 == 1.0 == True == Decimal(1); aware datetimes equal at
    # the same instant, whatever their offsets; fold does not count). Distinct keys may
    # share bytes: that only costs frames read for nothing.
    if isinstance(key, str):
        return b"s" + key.encode("utf-8", "surrogatepass")
    if isinstance(key, int):  # bool too: True == 1
        return b"i%d" % key
    if isinstance(key, bytes):
        return b"b" + key
    if isinstance(key, uuid.UUID):
        return b"u" + key.bytes
    if isinstance(key, _dt.datetime):
        offset = key.utcoffset()
        if offset is None:
            return b"n" + key.replace(fold=0).isoformat().encode()
        try:
            return b"a" + (key.replace(tzinfo=None, fold=0) - offset).isoformat().encode()
        except OverflowError:  # the instant lies outside datetime's range in UTC
            return b"a"
    if isinstance(key, _dt.date):
        return b"d" + key.isoformat().encode()
    if isinstance(key, float | decimal.Decimal):
        return _number(key)
    return _OTHER


def _number(key: float | decimal.Decimal) -> bytes:
    # A float or Decimal equal to an int shares the int's form; otherwise equal values share
    # the float's repr (a Decimal equal to no float gets its own, normalized).
    try:
        if key == int(key):
            return b"i%d" % int(key)
    except (OverflowError, ValueError, decimal.InvalidOperation):  # inf, NaN
        return b"f" + repr(float(key)).encode()
    as_float = float(key)
    if isinstance(key, float) or decimal.Decimal(as_float) == key:
        return b"f" + repr(as_float).encode()
    return b"D" + str(key.normalize()).encode()


def token(collection: str, key: Any) -> int:
    """The 32-bit token of an item (equal keys, of any types, share one)."""
    seed = _crc(collection.encode("utf-8", "surrogatepass") + b"\0")
    return _crc(_canonical(key), seed)


def collection_token(collection: str) -> int:
    """The token under which a collection's own operations (create, drop) are indexed."""
    return _crc(_COLLECTION, _crc(collection.encode("utf-8", "surrogatepass") + b"\0"))


def tokens(collection: str, keys: list[Any]) -> list[int]:
    """`token` of each of *keys* (items of *collection*), at C speed when they are all str or
    all int."""
    seed = _crc(collection.encode("utf-8", "surrogatepass") + b"\0")
    types = set(map(type, keys))
    if types == _STR_ONLY:
        return list(map(_crc, map(b"s".__add__, map(_utf8, keys)), repeat(seed)))
    if types == _INT_ONLY:
        return list(map(_crc, map(b"i%d".__mod__, keys), repeat(seed)))
    return [_crc(_canonical(key), seed) for key in keys]


def batch_tokens(batch: Batch) -> set[int]:
    """The tokens of every operation of *batch*."""
    if len(batch.table_set) == 1 and ITEM_KINDS.issuperset(batch.kind_set):
        (table,) = batch.table_set
        return set(tokens(table, list(set(batch.keys))))  # a key written twice counts once
    found = set()
    for kind, table, key in zip(batch.kinds, batch.tables, batch.keys, strict=True):
        if kind in ITEM_KINDS:
            found.add(token(table, key))
        else:
            found.add(collection_token(table))
    return found


_HIGH: Final = 32
_STR_ONLY: Final = frozenset({str})
_INT_ONLY: Final = frozenset({int})
_utf8 = partial(str.encode, encoding="utf-8", errors="surrogatepass")


def index_path(segment: Path) -> Path:
    """Where the key index of *segment* lies."""
    return segment.with_name(segment.name + SUFFIX)


class KeyIndex:
    """A segment's key index, read and checked (`read_key_index`).

    Attributes:
        first_lsn: the segment's first LSN.
        covered: the bytes of the segment it covers.
        last_lsn: the last LSN of the covered frames.
        last_crc: the CRC field of the last covered frame.
        offsets: each covered frame's offset, in order.
        firsts: each covered frame's first LSN.
    """

    __slots__ = (
        "covered",
        "first_lsn",
        "firsts",
        "frames_of",
        "last_crc",
        "last_lsn",
        "offsets",
        "tokens",
    )

    def __init__(
        self,
        first_lsn: int,
        covered: int,
        last_lsn: int,
        last_crc: int,
        offsets: list[int],
        firsts: list[int],
        tokens: array[int],
        frames_of: array[int],
    ) -> None:
        self.first_lsn = first_lsn
        self.covered = covered
        self.last_lsn = last_lsn
        self.last_crc = last_crc
        self.offsets = offsets
        self.firsts = firsts
        self.tokens = tokens  # ascending
        self.frames_of = frames_of  # the frame number of each token

    @classmethod
    def of_entries(
        cls,
        first_lsn: int,
        covered: int,
        last_lsn: int,
        last_crc: int,
        frames: list[tuple[int, int]],
        entries: list[int],
    ) -> KeyIndex:
        """An index of *frames* ((offset, first LSN) each) and *entries* (``token << 32 |
        frame number`` each, in any order)."""
        # Each entry one 64-bit int, token high, frame number low: sorted at C speed.
        pairs = array("I")
        pairs.frombytes(array("Q", sorted(entries)).tobytes())
        low, high = (0, 1) if sys.byteorder == "little" else (1, 0)
        offsets = [offset for offset, _ in frames]
        firsts = [first for _, first in frames]
        return cls(
            first_lsn, covered, last_lsn, last_crc, offsets, firsts, pairs[high::2], pairs[low::2]
        )

    def frames(self, tokens: set[int]) -> list[int]:
        """The numbers of the frames that may hold an operation with one of *tokens*."""
        found: set[int] = set()
        for t in tokens:
            lo = bisect.bisect_left(self.tokens, t)
            hi = bisect.bisect_right(self.tokens, t, lo)
            found.update(self.frames_of[lo:hi])
        return sorted(found)

    def entries(self) -> list[int]:
        """The index's content: ``token << 32 | frame number`` for each entry."""
        return [t << 32 | f for t, f in zip(self.tokens, self.frames_of, strict=True)]


def to_little_endian(values: array[int]) -> bytes:
    """The bytes of an array of integers, little-endian whatever this machine's order."""
    if sys.byteorder == "big":  # pragma: no cover - little-endian machines here
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def from_little_endian(typecode: str, data: bytes) -> array[int]:
    """An array of integers (*typecode*) from its little-endian bytes."""
    values = array(typecode)
    values.frombytes(data)
    if sys.byteorder == "big":  # pragma: no cover
        values.byteswap()
    return values


def encode_key_index(index: KeyIndex) -> bytes:
    """The bytes of *index*'s file."""
    frames = array("Q", [0]) * (2 * len(index.offsets))
    frames[0::2] = array("Q", index.offsets)
    frames[1::2] = array("Q", index.firsts)
    body = (
        to_little_endian(frames)
        + to_little_endian(index.tokens)
        + to_little_endian(index.frames_of)
    )
    head = _HEAD.pack(
        MAGIC,
        VERSION,
        index.first_lsn,
        index.covered,
        index.last_lsn,
        index.last_crc,
        len(index.offsets),
        len(index.tokens),
        0,
    )[:-4]
    head += struct.pack("<I", _crc(head))
    return head + body + struct.pack("<I", _crc(body))


def decode_key_index(data: bytes, first_lsn: int) -> KeyIndex:
    """Read a key index's bytes, checking them (for the segment starting at *first_lsn*).

    Raises:
        WALError: not an index, damaged, or not for that segment.
    """
    if len(data) < _HEAD.size + 4:
        raise WALError(f"{len(data)} bytes: shorter than a key index")
    magic, version, first, covered, last, last_crc, nframes, nentries, crc = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise WALError("not a key index (bad magic)")
    if crc != _crc(data[: _HEAD.size - 4]):
        raise WALError("key index header checksum mismatch")
    if version != VERSION:
        raise WALError(f"key index format version {version} (this reader knows {VERSION})")
    if first != first_lsn:
        raise WALError(f"key index of a segment starting at LSN {first}, not {first_lsn}")
    end = _HEAD.size + 16 * nframes + 8 * nentries
    if len(data) != end + 4:
        raise WALError(f"key index of {len(data)} bytes, its header says {end + 4}")
    body = data[_HEAD.size : end]
    if struct.unpack_from("<I", data, end)[0] != _crc(body):
        raise WALError("key index body checksum mismatch")
    pairs = from_little_endian("Q", body[: 16 * nframes])
    tokens = from_little_endian("I", body[16 * nframes : 16 * nframes + 4 * nentries])
    frames_of = from_little_endian("I", body[16 * nframes + 4 * nentries :])
    offsets, firsts = list(pairs[0::2]), list(pairs[1::2])
    if (
        not offsets
        or offsets[0] != HEADER_SIZE
        or firsts[0] != first
        or any(b <= a for a, b in pairwise(offsets))
        or any(b <= a for a, b in pairwise(firsts))
        or not offsets[-1] < covered
        or not firsts[-1] <= last
        or (frames_of and max(frames_of) >= nframes)
    ):
        # Token order is the writer's (sorted) and the body's CRC keeps it: checking it
        # would cost ~40 ms per million operations, the whole budget of a lookup.
        raise WALError("key index content is inconsistent")
    return KeyIndex(first, covered, last, last_crc, offsets, firsts, tokens, frames_of)


def read_key_index(segment: Path, first_lsn: int) -> KeyIndex | None:
    """The checked key index of *segment* (None when it has none).

    Raises:
        WALError: the index is damaged or is not the segment's.
    """
    path = index_path(segment)
    try:
        data = read_regular(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except (NotRegularFileError, OSError) as exc:
        raise WALError(f"unreadable key index: {exc}") from None
    return decode_key_index(data, first_lsn)


def write_key_index(segment: Path, index: KeyIndex) -> bool:
    """Write *index* beside *segment*, atomically; False when the directory is not writable
    (an index is a cache: a reader without write access goes on without it)."""
    path = index_path(segment)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{id(index):x}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(encode_key_index(index))
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()
        return False
    return True


def _frame_header(handle: Any, offset: int) -> tuple[bytes, int, int]:
    # The frame header at *offset*: its bytes, payload length and CRC field (WALError: none).
    handle.seek(offset)
    head = handle.read(FRAME_HEADER_SIZE)
    if len(head) != FRAME_HEADER_SIZE:
        raise WALError(f"no frame at offset {offset}")
    length, _, crc = _FRAME_HEAD.unpack(head)
    return head, length, crc


def _indexed_batches(segment: Path, index: KeyIndex, numbers: list[int]) -> list[Batch]:
    # The frames *numbers* of *segment*, read through its index and checked: the index must
    # still describe the segment (its last covered frame unchanged), and each frame must be
    # valid and start at the LSN the index says. WALError otherwise.
    batches = []
    with open_regular(segment, follow_symlinks=False) as handle:
        _, length, crc = _frame_header(handle, index.offsets[-1])
        if crc != index.last_crc or index.offsets[-1] + FRAME_HEADER_SIZE + length != index.covered:
            raise WALError("the segment's covered frames changed since it was indexed")
        for number in numbers:
            offset = index.offsets[number]
            head, length, _ = _frame_header(handle, offset)
            data = head + handle.read(length)
            try:
                _, _, payload = next(_iter_frames(data, 0))
                batch = decode_columns(payload)
            except (FrameError, StopIteration) as exc:
                raise WALError(f"no valid frame at offset {offset}: {exc}") from None
            if batch.first != index.firsts[number]:
                raise WALError(f"the frame at offset {offset} starts at LSN {batch.first}")
            batches.append(batch)
    return batches


def _matching(batches: list[Batch], collection: str, key: Any, after_lsn: int) -> list[Operation]:
    # The operations of *batches* after *after_lsn* on item *key* of *collection*, and the
    # collection's own operations.
    found = []
    for batch in batches:
        if batch.last <= after_lsn or collection not in batch.table_set:
            continue
        if ITEM_KINDS.issuperset(batch.kind_set) and key not in batch.keys:
            continue  # the common case, decided at C speed
        for op in batch.operations():
            if (
                op.lsn > after_lsn
                and op.table == collection
                and (op.kind not in ITEM_KINDS or op.key == key)
            ):
                found.append(op)
    return found


def key_operations(
    directory: str | Path,
    collection: str,
    key: Any,
    *,
    after_lsn: int = 0,
) -> Iterator[tuple[list[Operation], int]]:
    """The operations after *after_lsn* on item *key* of *collection*, and the collection's
    own (create, drop), segment by segment: ``(operations, segment size)``.

    Segments with a key index are read only where it points, then scanned past what it
    covers; segments without one are scanned whole. Nothing is written (`index_segments`
    writes the indexes). Gaps and overlaps between segments, and damage in what is read,
    raise as in `wal.iter_wal`; damage in frames an index lets this skip is `verify`'s to
    find.

    Raises:
        RecoveryError: damage in what is read, a gap or an overlap.
    """
    for ops, size, _ in _walk_keys(Path(directory), collection, key, after_lsn, build=False):
        yield ops, size


def index_segments(directory: str | Path) -> tuple[int, int]:
    """Bring the key index of every segment of a log up to date (for a cron job: the first
    audit of a key then reads no more than the later ones).

    Returns:
        (segments indexed or extended, segments already up to date).

    Raises:
        RecoveryError: damage in what is read, a gap or an overlap.
    """
    done = fresh = 0
    for _, _, scanned in _walk_keys(Path(directory), "", None, 0, build=True):
        if scanned:
            done += 1
        else:
            fresh += 1
    return done, fresh


def _walk_keys(
    directory: Path, collection: str, key: Any, after_lsn: int, *, build: bool
) -> Iterator[tuple[list[Operation], int, bool]]:
    # Each segment that matters: its matching operations, its size, whether it was scanned.
    listing = list_segments(directory)
    previous_last: int | None = None
    for number, (first, path) in enumerate(listing):
        is_last = number == len(listing) - 1
        check_follows(path, first, previous_last)
        if not is_last and listing[number + 1][0] - 1 <= after_lsn:
            previous_last = listing[number + 1][0] - 1
            continue
        ops, previous_last, size, scanned = _segment_operations(
            path, first, is_last, collection, key, after_lsn, build
        )
        yield ops, size, scanned


def _segment_operations(
    path: Path,
    first: int,
    is_last: bool,
    collection: str,
    key: Any,
    after_lsn: int,
    build: bool,
) -> tuple[list[Operation], int, int, bool]:
    # One segment's matching operations, its last LSN, its size, whether frames were scanned.
    if path.is_symlink():
        raise RecoveryError(path, 0, "a symlink, not a regular file")
    index: KeyIndex | None = None
    indexed: list[Batch] = []
    try:
        index = read_key_index(path, first)
        if index is not None:
            wanted = {token(collection, key), collection_token(collection)}
            indexed = _indexed_batches(path, index, index.frames(wanted))
    except (WALError, OSError) as exc:
        if isinstance(exc, FileNotFoundError) and not path.exists():
            raise  # the segment went away (retention): the caller reads again
        warnings.warn(
            f"{index_path(path)}: key index not used ({exc}); the segment is scanned",
            KeyIndexWarning,
            stacklevel=5,
        )
        index, indexed = None, []
    found = _matching(indexed, collection, key, after_lsn)
    if index is not None:
        size = path.stat().st_size
        if size == index.covered:  # nothing was appended since: the frames read are all
            return found, index.last_lsn, size, False
    try:
        data = read_regular(path, follow_symlinks=False)
    except NotRegularFileError:
        raise RecoveryError(path, 0, "not a regular file") from None
    if is_last and header_never_written(data, first):
        return [], first - 1, 0, False
    check_header(path, first, data)
    start, expected = (HEADER_SIZE, first) if index is None else (index.covered, index.last_lsn + 1)
    offsets: list[int] = []
    firsts: list[int] = []
    entries: list[int] = []
    shift = 0 if index is None else len(index.offsets)

    def take(batch: Batch) -> None:
        # Each batch as it is read, not kept: memory stays bounded by one frame.
        found.extend(_matching([batch], collection, key, after_lsn))
        if build:
            frame = shift + len(firsts)
            firsts.append(batch.first)
            entries.extend(map(frame.__or__, map(_HIGH.__rlshift__, batch_tokens(batch))))

    expected, valid, _ = segment_frames(
        path, data, start, expected, is_last=is_last, sink=take, batches=[], offsets=offsets
    )
    if build and offsets:  # (an index is extended by what was appended past it)
        crc = _FRAME_HEAD.unpack_from(data, offsets[-1])[2]
        frames = list(zip(offsets, firsts, strict=True))
        if index is not None:  # extended: the old frames keep their numbers
            frames = [*zip(index.offsets, index.firsts, strict=True), *frames]
            entries += index.entries()
        write_key_index(path, KeyIndex.of_entries(first, valid, expected - 1, crc, frames, entries))
    return found, expected - 1, len(data), bool(offsets)

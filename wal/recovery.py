"""Reading a WAL directory back: every segment, every frame, before any append.

Rules (ARCHITECTURE.md, failure model):

- Segments are read in LSN order. Each segment's first LSN (name and header agree) must
  follow the previous segment's last operation exactly; otherwise: a gap or an overlap,
  `RecoveryError` naming the segment.
- In the *last* segment, a torn last frame (bytes end inside it, zero-filled tail, or a bad
  CRC on a frame that ends exactly at the end of the file) is the trace of an interrupted
  write: with ``repair=True`` the segment is truncated at the frame's start, and the cut bytes
  are kept beside it as ``<segment>.torn-<offset>`` for inspection; with ``repair=False`` (a
  read-only reader) the tail is simply ignored.
- Anything else that is wrong (a corrupt frame before the tail, any bad frame in an earlier
  segment, a bad header, a malformed payload) is damage: `RecoveryError` with the segment
  and the offset.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import attrs

from wal.directory import fsync_directory, read_regular
from wal.errors import NotRegularFileError, WALError
from wal.framing import (
    HEADER_SIZE,
    Batch,
    FrameError,
    decode_batch,
    decode_columns,
    decode_header,
    encode_header,
    iter_frames,
    parse_segment_name,
)
from wal.operation import Operation
from wal.zstd import ZSTD_MAGIC


class RecoveryError(WALError):
    """A WAL directory that cannot be read back as one contiguous log.

    Attributes:
        segment: the segment file at fault.
        offset: the byte offset in it (0 for header or continuity problems).
        reason: what is wrong.
    """

    def __init__(
        self, segment: Path, offset: int, reason: str, before: tuple[Operation, ...] = ()
    ) -> None:
        super().__init__(f"{segment} at offset {offset}: {reason}")
        self.segment = str(segment)
        self.offset = offset
        self.reason = reason
        #: The operations of this segment read before the damage (see `read_until_damage`).
        self.before = before


@attrs.frozen
class SegmentInfo:
    """One segment as read: its file, first and last LSN, and its valid length in bytes."""

    path: Path
    first_lsn: int
    last_lsn: int  # first_lsn - 1 for a segment holding no operation yet
    valid_size: int


@attrs.frozen
class TornTail:
    """What a repair cut off the last segment."""

    segment: Path
    offset: int
    size: int
    reason: str
    saved_as: Path | None


_REMOVED = -1  # size reported for a segment the repair deleted


# Where a frame may start: its flags byte (offset 4) is 0 and its payload (offset 9) opens a
# JSON array whose first value is an LSN, or the flags byte is 1 and the payload opens a
# zstandard frame. JSON text never holds a NUL byte, so an uncompressed payload cannot fake
# the first form.
_FRAME_START = re.compile(rb"\x00.{4}\[[1-9]|\x01.{4}" + re.escape(ZSTD_MAGIC), re.DOTALL)


def _next_valid_frame(data: bytes, start: int) -> int | None:
    """The offset of the first frame at or after *start* whose header and CRC check out."""
    for match in _FRAME_START.finditer(data, start + 4):
        offset = match.start() - 4
        try:
            next(iter_frames(data, offset))
        except (FrameError, StopIteration):
            continue
        return offset
    return None


def header_never_written(data: bytes, first: int) -> bool:
    """Whether a segment's creation was torn: its header short, or zero-filled past a prefix
    of the header that would have been written, with nothing but zeros after it."""
    if len(data) < HEADER_SIZE:
        return True
    try:
        decode_header(data)
    except FrameError:
        written = data[:HEADER_SIZE].rstrip(b"\0")
        return written == encode_header(first)[: len(written)] and not any(data[HEADER_SIZE:])
    return False


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """``(first_lsn, path)`` of every segment file in *directory*, in LSN order."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        first = parse_segment_name(name)
        if first is not None:
            found.append((first, directory / name))
    found.sort()
    return found


def check_header(path: Path, expected_first: int, data: bytes) -> int:
    try:
        first = decode_header(data)
    except FrameError as exc:
        raise RecoveryError(path, 0, exc.reason) from None
    if first != expected_first:
        raise RecoveryError(path, 0, f"header says LSN {first}, the name says {expected_first}")
    return first


@attrs.frozen
class SegmentReport:
    """One segment file read on its own (`read_segment`).

    Attributes:
        path: the file.
        first_lsn: its first LSN (from its name and header).
        ops: the operations of its readable frames, in order.
        frames: how many frames were read.
        valid_size: bytes up to the end of the last readable frame.
        size: bytes in the file.
        problem: what stopped the reading before the end (a torn or damaged frame, at
            `valid_size`), or None.
    """

    path: Path
    first_lsn: int
    ops: tuple[Operation, ...]
    frames: int
    valid_size: int
    size: int
    problem: str | None


def read_segment(path: str | Path) -> SegmentReport:
    """Read one segment file, read-only, as far as its frames are readable (for inspection and
    for a log's last LSN; continuity with other segments is `read_wal`'s business).

    Raises:
        RecoveryError: not named like a segment, not a regular file, or a bad header.
    """
    path = Path(path)
    first = parse_segment_name(path.name)
    if first is None:
        raise RecoveryError(path, 0, "not named like a log segment (<16 hex digits>.wal)")
    try:
        data = read_regular(path, follow_symlinks=False)
    except NotRegularFileError:
        raise RecoveryError(path, 0, "not a regular file") from None
    check_header(path, first, data)
    ops: list[Operation] = []
    frames = 0
    valid = HEADER_SIZE
    problem = None
    try:
        for offset, nxt, payload in iter_frames(data, HEADER_SIZE):
            try:
                batch = decode_batch(payload)
            except WALError as exc:
                problem = f"offset {offset}: malformed payload: {exc}"
                break
            ops.extend(batch)
            frames += 1
            valid = nxt
    except FrameError as exc:
        problem = f"offset {exc.offset}: {exc.reason}"
    return SegmentReport(path, first, tuple(ops), frames, valid, len(data), problem)


def last_operation(directory: str | Path) -> Operation | None:
    """The log's last readable operation, reading only its last segments (None: none, or
    the last segment is unreadable; `read_wal` and `verify` say why)."""
    for _, path in reversed(list_segments(Path(directory))):
        try:
            report = read_segment(path)
        except (RecoveryError, OSError):
            return None
        if report.ops:
            return report.ops[-1]
    return None


def read_wal(
    directory: str | Path, *, repair: bool = False, after_lsn: int = 0
) -> tuple[list[Operation], list[SegmentInfo], TornTail | None]:
    """Read every operation of a WAL directory.

    Args:
        directory: the WAL directory.
        repair: truncate a torn tail of the last segment (an opener that will append).
        after_lsn: skip operations up to this LSN (and do not decode whole segments that end
            before it); continuity is still checked from the first segment that matters.

    Returns:
        The operations (LSN > after_lsn, in order), the segments, and the torn tail cut or
        ignored (None if none).

    Raises:
        RecoveryError: damage before the tail, a gap or an overlap between segments.
    """
    ops: list[Operation] = []
    segments: list[SegmentInfo] = []
    torn: TornTail | None = None
    for _, path, first, last, size, batches, seg_torn in _walk(Path(directory), repair, after_lsn):
        if size != _REMOVED:
            segments.append(SegmentInfo(path, first, last, size))
        ops += _operations(batches, after_lsn)
        torn = seg_torn or torn
    return ops, segments, torn


def replay_wal(
    directory: str | Path,
    replay: Callable[[Batch], object],
    *,
    repair: bool = False,
    after_lsn: int = 0,
) -> tuple[int, list[SegmentInfo], TornTail | None]:
    """`read_wal`, handing the operations to *replay* one decoded payload at a time (a
    `wal.framing.Batch` of columns), as each segment is read: the log is never held whole,
    nor made into one record per operation.

    *replay* gets the batches after *after_lsn* in LSN order; the first one starts at
    ``after_lsn + 1`` (else `WALError`, before any is handed over). What it raises stops the
    reading and propagates.

    Returns:
        How many operations were handed over, the segments, and the torn tail (as
        `read_wal`).

    Raises:
        RecoveryError: damage before the tail, a gap or an overlap between segments.
        WALError: the log resumes after *after_lsn* + 1.
    """
    segments: list[SegmentInfo] = []
    torn: TornTail | None = None
    count = 0

    def hand_over(whole: Batch) -> None:
        nonlocal count
        batch = whole.after(after_lsn)
        if batch is None:
            return
        if not count and batch.first != after_lsn + 1:
            raise WALError(
                f"the log resumes at LSN {batch.first} but the state is at {after_lsn}: "
                "operations in between are missing"
            )
        count += len(batch)
        replay(batch)

    # Each batch is handed over as soon as its frame is decoded and found to follow the one
    # before, while its objects are still in the CPU cache (replaying a segment's batches
    # once it was all read cost ~0.1 µs more per operation).
    walk = _walk(Path(directory), repair, after_lsn, hand_over)
    for _, path, first, last, size, _, seg_torn in walk:
        if size != _REMOVED:
            segments.append(SegmentInfo(path, first, last, size))
        torn = seg_torn or torn
    return count, segments, torn


def _operations(batches: Iterable[Batch], after_lsn: int) -> list[Operation]:
    # The operations of *batches* after *after_lsn*.
    ops: list[Operation] = []
    for whole in batches:
        batch = whole.after(after_lsn)
        if batch is not None:
            ops += batch.operations()
    return ops


def iter_wal(
    directory: str | Path, *, after_lsn: int = 0
) -> Iterator[tuple[SegmentInfo, list[Operation], TornTail | None]]:
    """Read a WAL directory one segment at a time, read-only (a torn tail is reported, not
    cut): memory stays bounded by one segment, whatever the log's length.

    Yields:
        Each segment, its operations after *after_lsn*, and its torn tail (last one only).

    Raises:
        RecoveryError: damage before the tail, a gap or an overlap.
    """
    for _, path, first, last, size, batches, torn in _walk(Path(directory), False, after_lsn):
        yield SegmentInfo(path, first, last, size), _operations(batches, after_lsn), torn


def read_until_gap(
    directory: str | Path, *, after_lsn: int = 0
) -> tuple[list[Operation], RecoveryError | None]:
    """Read operations after *after_lsn* up to the first gap between segments (read-only).

    For a reader that may not need what lies past a hole (e.g. a restore to an earlier
    point): the operations before the gap, and the gap's error (None if there is none).
    Damage other than a gap still raises.

    Raises:
        RecoveryError: damage before the tail (not a gap).
    """
    ops: list[Operation] = []
    try:
        for _, _, _, _, _, batches, _ in _walk(Path(directory), False, after_lsn):
            ops += _operations(batches, after_lsn)
    except RecoveryError as exc:
        if exc.offset != 0 or not exc.reason.startswith(("a gap", "an overlap")):
            raise
        return ops, exc
    return ops, None


def read_until_damage(
    directory: str | Path, *, after_lsn: int = 0
) -> tuple[list[Operation], RecoveryError | None]:
    """Read operations after *after_lsn* up to the first gap or damage (read-only).

    For a reader that may not need what lies past it (a restore to an earlier point): every
    operation that can be read before the hole or the damage, and its error (None if the log
    reads to its end; a torn tail is no damage: it ends the log).
    """
    ops: list[Operation] = []
    try:
        for _, _, _, _, _, batches, _ in _walk(Path(directory), False, after_lsn):
            ops += _operations(batches, after_lsn)
    except RecoveryError as exc:
        ops.extend(op for op in exc.before if op.lsn > after_lsn)
        return ops, exc
    return ops, None


def check_follows(path: Path, first: int, previous_last: int | None) -> None:
    """Refuse a segment starting at LSN *first* that does not follow the previous segment's
    last operation (*previous_last*; None: it is the first).

    Raises:
        RecoveryError: a gap or an overlap.
    """
    if previous_last is not None and first != previous_last + 1:
        problem = "a gap" if first > previous_last + 1 else "an overlap"
        raise RecoveryError(
            path, 0, f"{problem}: starts at LSN {first}, previous segment ends at {previous_last}"
        )


def stream_until_damage(
    directory: str | Path, sink: Callable[[Batch], object], *, after_lsn: int = 0
) -> RecoveryError | None:
    """`read_until_damage`, handing the operations after *after_lsn* to *sink* one decoded
    payload at a time (a `Batch`), as they are read: memory stays bounded by one segment,
    whatever the log's length. What *sink* raises stops the reading and propagates.

    Returns:
        The gap or damage that ended the log (None if it reads to its end; a torn tail is no
        damage). Everything readable before it was handed over.
    """

    def hand_over(whole: Batch) -> None:
        batch = whole.after(after_lsn)
        if batch is not None:
            sink(batch)

    try:
        for _ in _walk(Path(directory), False, after_lsn, hand_over):
            pass
    except RecoveryError as exc:
        return exc
    return None


def _walk(
    directory: Path, repair: bool, after_lsn: int, sink: Callable[[Batch], None] | None = None
) -> Iterator[tuple[int, Path, int, int, int, list[Batch], TornTail | None]]:
    # Each segment: its index, path, first and last LSN, valid size, batches and torn tail.
    # With a *sink*, each batch goes to it as soon as it is read, not into the list.
    kept: list[Batch] = []
    for item in _walk_items(directory, repair, after_lsn, None if sink else kept):
        if isinstance(item, _SegmentRead):
            yield (*item[:5], kept[:], item.torn)
            kept.clear()  # (the list `_walk_items` keeps the next segment's batches in)
        elif sink is not None:
            sink(item[1])


class _SegmentRead(NamedTuple):
    """A segment `_walk_items` has read."""

    number: int
    path: Path
    first: int
    last: int
    size: int
    torn: TornTail | None


def _walk_items(
    directory: Path, repair: bool, after_lsn: int, kept: list[Batch] | None
) -> Iterator[tuple[Path, Batch] | _SegmentRead]:
    # Each decoded frame as it is read, then its segment once read whole. *kept*: where the
    # batches of the segment being read are kept (for `RecoveryError.before`), if anywhere;
    # the caller empties it between segments.
    listing = list_segments(directory)
    previous_last: int | None = None
    for index, (first, path) in enumerate(listing):
        is_last = index == len(listing) - 1
        check_follows(path, first, previous_last)
        if path.is_symlink():  # it could lead out of the log's directory
            raise RecoveryError(path, 0, "a symlink, not a regular file")
        try:
            data = read_regular(path, follow_symlinks=False)
        except NotRegularFileError:  # a FIFO would block, a device read forever
            raise RecoveryError(path, 0, "not a regular file") from None
        if is_last and header_never_written(data, first):
            # Created but never completed: the file appeared (its size even reached the disk)
            # but its header did not, and no record follows it.
            cut = _cut(path, data, 0, "segment header never reached the disk", repair)
            if repair:
                path.unlink()
                with contextlib.suppress(OSError):
                    fsync_directory(path.parent)
            yield _SegmentRead(index, path, first, first - 1, _REMOVED if repair else 0, cut)
            continue
        check_header(path, first, data)
        next_segment_first = listing[index + 1][0] if not is_last else None
        if next_segment_first is not None and next_segment_first - 1 <= after_lsn:
            # Entirely before what the caller needs: its range is known from the names.
            previous_last = next_segment_first - 1
            yield _SegmentRead(index, path, first, previous_last, len(data), None)
            continue
        reading = _segment_batches(path, data, HEADER_SIZE, first, is_last, repair, kept, None)
        while True:
            try:
                yield path, next(reading)
            except StopIteration as done:
                expected, valid, torn = done.value
                break
        previous_last = expected - 1
        yield _SegmentRead(index, path, first, previous_last, valid, torn)


def iter_batches(
    directory: str | Path, *, after_lsn: int = 0
) -> Iterator[tuple[Path, Batch | None, int]]:
    """Read a WAL directory a decoded frame at a time, read-only: memory stays bounded by
    one segment's bytes and one frame's operations, whatever the log's length.

    Yields:
        ``(segment, batch, 0)`` for each frame's operations after *after_lsn* (a `Batch`),
        then ``(segment, None, its valid size)`` once a segment is read.

    Raises:
        RecoveryError: damage before the tail, a gap or an overlap.
    """
    for item in _walk_items(Path(directory), False, after_lsn, None):
        if isinstance(item, _SegmentRead):
            yield item.path, None, item.size
        elif (batch := item[1].after(after_lsn)) is not None:
            yield item[0], batch, 0


def segment_frames(
    path: Path,
    data: bytes,
    start: int,
    expected: int,
    *,
    is_last: bool,
    repair: bool = False,
    sink: Callable[[Batch], object] | None = None,
    batches: list[Batch],
    offsets: list[int] | None = None,
) -> tuple[int, int, TornTail | None]:
    """Read a segment's frames from offset *start* on (the first one starting at LSN *expected*),
    by the module's rules: a bad frame is a torn tail only in the last segment and with no
    valid frame after it. Each decoded batch goes to *sink* if given (and is not kept), else
    into *batches*; each frame's offset into *offsets*.

    Returns:
        The LSN the next frame would start at, the offset past the last good frame, and the
        torn tail (None if none).

    Raises:
        RecoveryError: damage (naming the segment and the offset).
    """
    reading = _segment_batches(
        path, data, start, expected, is_last, repair, None if sink else batches, offsets
    )
    while True:
        try:
            batch = next(reading)
        except StopIteration as done:
            result: tuple[int, int, TornTail | None] = done.value
            return result
        if sink is not None:
            sink(batch)


def _segment_batches(
    path: Path,
    data: bytes,
    start: int,
    expected: int,
    is_last: bool,
    repair: bool,
    kept: list[Batch] | None,
    offsets: list[int] | None,
) -> Generator[Batch, None, tuple[int, int, TornTail | None]]:
    # `segment_frames`' reading, yielding each batch as it is decoded (and keeping it in
    # *kept*, if given).
    valid = start
    torn: TornTail | None = None
    before = [] if kept is None else kept
    try:
        for offset, nxt, payload in iter_frames(data, start):
            try:
                batch = decode_columns(payload)
            except WALError as exc:
                raise RecoveryError(
                    path, offset, f"malformed payload: {exc}", _read(before)
                ) from None
            if batch.first != expected:
                raise RecoveryError(
                    path,
                    offset,
                    f"frame starts at LSN {batch.first}, expected {expected}",
                    _read(before),
                )
            expected = batch.last + 1
            if kept is not None:
                kept.append(batch)
            if offsets is not None:
                offsets.append(offset)
            valid = nxt
            yield batch
    except FrameError as exc:
        # Only the last record may be bad: a valid frame further on means the bad one
        # is not the tail but damage before it (whatever its length field says).
        if not is_last:
            raise RecoveryError(path, exc.offset, exc.reason, _read(before)) from None
        later = _next_valid_frame(data, exc.offset + 1)
        if later is not None:
            raise RecoveryError(
                path,
                exc.offset,
                f"{exc.reason}, and a valid record follows at offset {later}: damage "
                "before the tail",
                _read(before),
            ) from None
        torn = _cut(path, data, exc.offset, exc.reason, repair)
    return expected, valid, torn


def _read(batches: list[Batch]) -> tuple[Operation, ...]:
    # The operations of a segment read before damage (`RecoveryError.before`).
    return tuple(_operations(batches, 0))


def _cut(path: Path, data: bytes, offset: int, reason: str, repair: bool) -> TornTail:
    saved: Path | None = None
    if repair:
        # Never overwrite an earlier cut kept at the same offset: number the copies.
        saved = path.with_name(f"{path.name}.torn-{offset}")
        n = 1
        while saved.exists():
            n += 1
            saved = path.with_name(f"{path.name}.torn-{offset}-{n}")
    if repair and offset == 0:
        assert saved is not None
        saved.write_bytes(data)
    elif repair:
        assert saved is not None
        with open(saved, "wb") as handle:
            handle.write(data[offset:])
            handle.flush()
            os.fsync(handle.fileno())
        with open(path, "r+b") as handle:
            handle.truncate(offset)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(OSError):
            fsync_directory(path.parent)
    return TornTail(path, offset, len(data) - offset, reason, saved)

"""Following a log as it grows: the frames appended since a point, as archive pieces.

A *piece* is a standalone segment (`wal.framing`'s header stating its first LSN, then
frames): the frames a `LogTail` read since the last piece, byte for byte, or re-encoded when
the first one straddles the point the tail starts after. Pieces of consecutive LSN ranges,
named like segments (`segment_name` of their first LSN), read back as one log with
`wal.recovery` (a shipped log is a directory of such pieces).

A tail reads each segment from where it stopped (time in proportion to what was appended),
only whole, checksummed frames whose operations are all at or below the bound it is given
(what the log has made durable), and never touches the segments: it opens them read-only.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import orjson

from wal.errors import WALError
from wal.framing import (
    HEADER_SIZE,
    WIDTH,
    FrameError,
    decode_batch,
    encode_batch,
    encode_header,
    frame_parts,
    iter_frames,
)
from wal.recovery import list_segments


@attrs.frozen
class Piece:
    """Frames of consecutive operations, ready to be stored as a standalone segment.

    Attributes:
        first_lsn: the first operation's LSN (the segment header's, and its name's).
        last_lsn: the last operation's LSN.
        data: the segment's bytes: header, then frames.
    """

    first_lsn: int
    last_lsn: int
    data: bytes


def _lsn_range(payload: bytes | bytearray) -> tuple[int, int]:
    items = orjson.loads(payload)
    if type(items) is not list or not items or len(items) % WIDTH:
        raise WALError("malformed payload")
    first, last = items[0], items[-WIDTH]
    if type(first) is not int or type(last) is not int or last < first:
        raise WALError("malformed payload LSNs")
    return first, last


class LogTail:
    """Reads what a log directory gained after LSN `position`.

    Args:
        directory: the log's directory (segments named by their first LSN).
        after_lsn: operations up to this one are not wanted.
    """

    def __init__(self, directory: Path, after_lsn: int) -> None:
        self.directory = directory
        self.position = after_lsn
        self._segment: Path | None = None
        self._segment_first = 0  # the first LSN of _segment (from its name)
        self._offset = 0

    def read(self, up_to_lsn: int, max_bytes: int = 64 << 20) -> Piece | None:
        """The frames after `position` whose operations are all at or below *up_to_lsn*
        (about *max_bytes* at most), as one piece; None when there is none yet.

        Raises:
            WALError: the log lacks operations after `position` (trimmed, or a gap), or a
                segment is damaged before its end.
        """
        frames: list[bytes] = []
        first = last = None
        size = 0
        # All or nothing: a read that fails after some frames leaves the tail where it was,
        # or the frames it had read would be skipped by the next read (a hole in the pieces).
        saved = self.position, self._segment, self._segment_first, self._offset
        while size < max_bytes:
            try:
                got = self._next_frame(up_to_lsn)
            except BaseException:
                self.position, self._segment, self._segment_first, self._offset = saved
                raise
            if got is None:
                break
            lo, hi, frame = got
            if first is None:
                first = lo
            last = hi
            frames.append(frame)
            size += len(frame)
        if first is None or last is None:
            return None
        self.position = last
        return Piece(first, last, encode_header(first) + b"".join(frames))

    def _locate(self) -> bool:
        # The segment holding operation position + 1 (from the listing), read from its start.
        want = self.position + 1
        segments = list_segments(self.directory)
        holder = None
        for first, path in segments:
            if first <= want:
                holder = first, path
        if holder is None:
            if segments and segments[0][0] > want:
                raise WALError(
                    f"the log starts at LSN {segments[0][0]}: operations from {want} are gone"
                )
            return False
        self._segment_first, self._segment = holder
        self._offset = HEADER_SIZE
        return True

    def _next_frame(self, up_to_lsn: int) -> tuple[int, int, bytes] | None:
        if self._segment is None and not self._locate():
            return None
        assert self._segment is not None
        try:
            with open(self._segment, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()  # a segment is bounded by the log's segment size
        except FileNotFoundError:
            self._segment = None  # rotated away and trimmed: find the next one
            return self._next_frame(up_to_lsn) if self._locate() else None
        try:
            for start, stop, payload in iter_frames(data, 0):
                lo, hi = _lsn_range(payload)
                if hi <= self.position:
                    self._offset += stop - start
                    continue
                if hi > up_to_lsn:
                    return None  # not durable yet
                frame = bytes(data[start:stop])
                self._offset += stop - start
                if lo <= self.position:  # straddles the start: keep the wanted operations
                    ops = [op for op in decode_batch(payload) if op.lsn > self.position]
                    frame = b"".join(frame_parts(encode_batch(ops, [False] * len(ops))))
                    lo = ops[0].lsn
                self.position = hi
                return lo, hi, frame
        except FrameError as exc:
            if not exc.torn:
                raise WALError(f"{self._segment}: offset {self._offset}: {exc}") from None
        # The end of what is written here: move on once the log rotated past this segment (a
        # segment starting after this one's first LSN exists; this one may be the newest,
        # created a moment ago with no frame yet).
        following = [p for first, p in list_segments(self.directory) if first > self._segment_first]
        if following and self._segment_done():
            done = self._segment
            if not self._locate() or self._segment == done:
                raise WALError(
                    f"{self.directory}: no segment starts at LSN {self.position + 1} after "
                    f"{done.name}: a gap in the log"
                )
            return self._next_frame(up_to_lsn)
        return None

    def _segment_done(self) -> bool:
        # A segment is complete once a later one exists (the log rotated past it) and we read
        # to its end.
        assert self._segment is not None
        try:
            return self._offset >= os.path.getsize(self._segment)
        except FileNotFoundError:
            return True

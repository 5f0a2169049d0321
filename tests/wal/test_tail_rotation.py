"""A log tail at the instants that raced: a segment just created, a read that fails midway.

Both were found by a flaky archive test (a shipped log with a hole at one LSN). Here the log
directory is laid out byte by byte at the racing instant, so each case runs every time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wal import LogTail, WALError
from wal.framing import encode_batch, encode_frame, encode_header, segment_name
from wal.recovery import read_wal


def frame(lsn: int) -> bytes:
    op = (lsn, float(lsn), "insert", "t", lsn, {"id": lsn}, None, None)
    return encode_frame(encode_batch([op], [True]))


def segment(directory: Path, first: int, lsns: range, tail: bytes = b"") -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / segment_name(first)
    path.write_bytes(encode_header(first) + b"".join(frame(n) for n in lsns) + tail)
    return path


def test_a_segment_created_a_moment_ago_with_no_frame_yet_is_waited_for(tmp_path: Path) -> None:
    log = tmp_path / "log"
    segment(log, 1, range(1, 34))
    newest = segment(log, 34, range(0))  # rotated: header written, first frame not yet
    tail = LogTail(log, 0)
    first = tail.read(100)
    assert first is not None
    assert (first.first_lsn, first.last_lsn) == (1, 33)
    assert tail.read(100) is None  # not "a gap in the log": the frame is on its way
    newest.write_bytes(newest.read_bytes() + frame(34) + frame(35))
    second = tail.read(100)
    assert second is not None
    assert (second.first_lsn, second.last_lsn) == (34, 35)


def test_a_read_that_fails_midway_leaves_the_tail_where_it_was(tmp_path: Path) -> None:
    log = tmp_path / "log"
    bad = bytearray(frame(6))
    bad[-3] ^= 0xFF  # a checksum mismatch with whole frames after it: damage, not a torn end
    segment(log, 1, range(1, 6), tail=bytes(bad) + frame(7))
    segment(log, 8, range(8, 9))
    tail = LogTail(log, 0)
    with pytest.raises(WALError):
        tail.read(100)
    assert tail.position == 0  # frames 1..5 were not handed out: the next read starts at 1
    with pytest.raises(WALError):
        tail.read(100)
    assert tail.position == 0


def test_pieces_read_back_as_one_log_across_a_fresh_rotation(tmp_path: Path) -> None:
    log, pieces = tmp_path / "log", tmp_path / "pieces"
    segment(log, 1, range(1, 34))
    newest = segment(log, 34, range(0))
    tail = LogTail(log, 0)
    pieces.mkdir()
    for _ in range(3):
        piece = tail.read(100)
        if piece is not None:
            (pieces / segment_name(piece.first_lsn)).write_bytes(piece.data)
        newest.write_bytes(newest.read_bytes() + frame(tail.position + 1))
    ops, _, _ = read_wal(pieces, repair=False)
    assert [o.lsn for o in ops] == list(range(1, tail.position + 1))

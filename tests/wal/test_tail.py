"""A log tail: pieces of consecutive operations that read back as one log."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.wal.test_durable import op
from wal import LogTail, WALError
from wal.durable import DurableLog
from wal.framing import segment_name
from wal.recovery import read_wal


def write(log: DurableLog, lock: threading.RLock, lsns: range, pad: int = 0) -> None:
    for lsn in lsns:
        with lock:
            log.submit_one(op(lsn, pad=pad), True)
        log.flush()


def open_log(directory: Path) -> tuple[DurableLog, threading.RLock]:
    lock = threading.RLock()
    log, _, _ = DurableLog.open(directory, fsync="always", lock=lock, segment_size=4096)
    return log, lock


def store(pieces_dir: Path, piece_data: bytes, first: int) -> None:
    pieces_dir.mkdir(exist_ok=True)
    (pieces_dir / segment_name(first)).write_bytes(piece_data)


def test_pieces_cover_every_operation_once_across_rotations(tmp_path: Path) -> None:
    log, lock = open_log(tmp_path / "log")
    tail = LogTail(tmp_path / "log", 0)
    pieces = tmp_path / "pieces"
    lsn = 0
    for burst in (3, 40, 1, 25):  # 40 and 25 rotate 4 KiB segments several times
        write(log, lock, range(lsn + 1, lsn + burst + 1), pad=100)
        lsn += burst
        piece = tail.read(log.durable_lsn)
        assert piece is not None
        store(pieces, piece.data, piece.first_lsn)
        assert (piece.last_lsn, lsn) == (tail.position, piece.last_lsn)
    assert tail.read(log.durable_lsn) is None
    log.close()
    assert list(range(1, lsn + 1)) == [o.lsn for o in read_wal(pieces)[0]]


def test_a_tail_never_reads_past_the_bound_it_is_given(tmp_path: Path) -> None:
    log, lock = open_log(tmp_path / "log")
    write(log, lock, range(1, 11))
    tail = LogTail(tmp_path / "log", 0)
    piece = tail.read(5)
    assert piece is not None
    assert piece.last_lsn <= 5
    rest = tail.read(10)
    assert rest is not None
    assert (piece.last_lsn + 1, 10) == (rest.first_lsn, rest.last_lsn)
    log.close()


def test_a_tail_starting_inside_a_frame_keeps_only_the_later_operations(tmp_path: Path) -> None:
    log, lock = open_log(tmp_path / "log")
    with lock:
        log.submit([op(i) for i in range(1, 11)], [True] * 10)  # one statement, one frame
    log.flush()
    tail = LogTail(tmp_path / "log", 4)
    piece = tail.read(10)
    assert piece is not None
    assert (5, 10) == (piece.first_lsn, piece.last_lsn)
    store(tmp_path / "pieces", piece.data, piece.first_lsn)
    assert list(range(5, 11)) == [o.lsn for o in read_wal(tmp_path / "pieces", after_lsn=4)[0]]
    log.close()


def test_a_trimmed_log_is_an_error_not_a_silent_gap(tmp_path: Path) -> None:
    log, lock = open_log(tmp_path / "log")
    write(log, lock, range(1, 60), pad=100)
    log.drop_segments_through(30)
    tail = LogTail(tmp_path / "log", 0)
    with pytest.raises(WALError, match="are gone"):
        tail.read(59)
    log.close()

"""Reading a log a decoded frame at a time: `iter_batches`, `stream_until_damage`,
`Batch.until`. Each must hand over exactly what `read_wal` / `read_until_damage` return, in
order, whatever *after_lsn*."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wal import DurableLog, iter_batches, read_until_damage, read_wal, stream_until_damage
from wal.framing import HEADER_SIZE, decode_columns, encode_batch
from wal.operation import OpTuple

SEGMENT_SIZE = 4096


def op(lsn: int) -> OpTuple:
    return (lsn, 1000.0 + lsn, "insert", "t", lsn, {"id": lsn, "pad": "x" * 50}, None, None)


def write(directory: Path, count: int, every: int) -> None:
    log, _, _ = DurableLog.open(directory, fsync="off", segment_size=SEGMENT_SIZE)
    for first in range(1, count + 1, every):
        chunk = [op(n) for n in range(first, min(first + every, count + 1))]
        with log._owner_lock:
            log.submit(chunk, [True] * len(chunk))
        log.flush(sync=False)
    log.close()


@settings(max_examples=20, deadline=None)
@given(count=st.integers(1, 120), every=st.integers(1, 9), after=st.integers(0, 130))
def test_frames_streamed_are_the_operations_read_whole(
    tmp_path_factory: pytest.TempPathFactory, count: int, every: int, after: int
) -> None:
    directory = tmp_path_factory.mktemp("log")
    write(directory, count, every)
    expected = [tuple(o) for o in read_wal(directory, after_lsn=after)[0]]
    items = list(iter_batches(directory, after_lsn=after))
    got = [t for _, batch, _ in items if batch is not None for t in batch.tuples()]
    assert expected == got
    sizes = [(path, size) for path, batch, size in items if batch is None]
    assert [p for p, _ in sizes] == sorted(directory.glob("*.wal"))
    assert all(size >= HEADER_SIZE for _, size in sizes)
    sunk: list[tuple[object, ...]] = []
    assert (
        stream_until_damage(directory, lambda b: sunk.extend(b.tuples()), after_lsn=after) is None
    )
    assert expected == sunk


def test_streaming_stops_at_damage_with_what_came_before(tmp_path: Path) -> None:
    write(tmp_path, 150, 4)
    segments = sorted(tmp_path.glob("*.wal"))
    assert len(segments) >= 3
    data = bytearray(segments[1].read_bytes())
    data[HEADER_SIZE + 12] ^= 0xFF
    segments[1].write_bytes(bytes(data))
    before, error = read_until_damage(tmp_path)
    sunk: list[int] = []
    damage = stream_until_damage(tmp_path, lambda b: sunk.extend(b.lsns))
    assert damage is not None
    assert error is not None
    assert (damage.segment, damage.offset) == (error.segment, error.offset)
    assert [o.lsn for o in before] == sunk


def test_until_cuts_a_frame() -> None:
    batch = decode_columns(encode_batch([op(n) for n in range(5, 10)], [True] * 5))
    assert batch.until(9) is batch
    assert batch.until(4) is None
    cut = batch.until(6)
    assert cut is not None
    assert (cut.first, cut.last, len(cut)) == (5, 6, 2)
    assert list(cut.tuples()) == list(batch.tuples())[:2]

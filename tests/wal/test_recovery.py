"""Reading a WAL back (`wal.recovery`): the corruption table.

One real log is written by `DictDB.open` (several 4 KiB segments, the last record a batch of
three inserts), closed, and then damaged in each way a crash or a bad disk can: cut at every
prefix of the last record, a flipped byte in the tail record, in an earlier record, in an
earlier segment, a zero-filled tail, a missing segment, a truncated segment header. The rules
(the module docstring of `wal.recovery`): a torn tail of the last segment is repaired (cut,
kept aside as ``<segment>.torn-<offset>``) and the log continues cleanly; anything else is a
`RecoveryError` naming the segment and the frame's offset.
"""

# The suite asserts `expected == actual` (STYLE.md), which SIM300 calls a Yoda condition.

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dictdb import DictDB
from wal.framing import (
    FRAME_HEADER_SIZE,
    HEADER_SIZE,
    decode_batch,
    encode_batch,
    encode_frame,
    encode_header,
    iter_frames,
    segment_name,
)
from wal.operation import Operation
from wal.recovery import RecoveryError, list_segments, read_until_damage, read_wal

SEGMENT_SIZE = 4096


@dataclass(frozen=True)
class Base:
    """The pristine database directory and what its log holds."""

    root: Path
    ops: list[Operation]
    segments: list[str]  # file names, LSN order
    last_frames: list[tuple[int, int]]  # (start, end) of each frame of the last segment
    first_frames: list[tuple[int, int]]  # same, first segment

    @property
    def tail(self) -> tuple[int, int]:
        return self.last_frames[-1]

    @property
    def kept(self) -> list[Operation]:
        """The operations before the last record (what a repair of the tail keeps)."""
        return self.ops[:-3]


def frames(path: Path) -> list[tuple[int, int]]:
    return [(start, stop) for start, stop, _ in iter_frames(path.read_bytes(), HEADER_SIZE)]


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "zstd"])
def base(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Base:
    """The log, written uncompressed or with zstd-compressed frames."""
    root = tmp_path_factory.mktemp("base") / "db"
    db = DictDB.open(root, fsync="always", segment_size=SEGMENT_SIZE, compress=request.param)
    table = db.create_table("t")
    i = 0
    while True:
        table.insert({"id": i, "pad": "x" * 40, "n": i * 1.5})
        i += 1
        names = [p.name for _, p in list_segments(root / "wal")]
        if len(names) >= 4 and len(frames(root / "wal" / names[-1])) >= 6:
            break
    table.insert([{"id": f"last-{j}", "v": [j, {"$k": j}]} for j in range(3)])
    db.close()
    ops, _, torn = read_wal(root / "wal")
    assert None is torn
    names = [p.name for _, p in list_segments(root / "wal")]
    last = frames(root / "wal" / names[-1])
    assert [ops[-3].lsn, ops[-1].lsn] == [ops[-1].lsn - 2, db.lsn]
    return Base(root, ops, names, last, frames(root / "wal" / names[0]))


@pytest.fixture
def copy(base: Base, tmp_path: Path) -> Callable[[], Path]:
    """A factory of fresh copies of the base directory."""
    counter = iter(range(10**6))

    def make() -> Path:
        target = tmp_path / f"copy{next(counter)}"
        shutil.copytree(base.root, target)
        return target

    return make


def wal_file(root: Path, name: str) -> Path:
    return root / "wal" / name


def rewrite(path: Path, change: Callable[[bytearray], object]) -> bytes:
    data = bytearray(path.read_bytes())
    change(data)
    path.write_bytes(bytes(data))
    return bytes(data)


def append_and_reread(root: Path, kept: list[Operation]) -> None:
    """Reopen, append one insert, close, reopen: the log holds *kept* then the new insert."""
    with DictDB.open(root, fsync="always", segment_size=SEGMENT_SIZE) as db:
        assert len(kept) == db.lsn
        db.get_table("t").insert({"id": "after repair"})
    ops, _, torn = read_wal(root / "wal")
    assert None is torn
    assert kept == ops[:-1]
    assert (len(kept) + 1, "after repair") == (ops[-1].lsn, ops[-1].key)
    with DictDB.open(root, fsync="always", segment_size=SEGMENT_SIZE) as db:
        assert len(kept) + 1 == db.lsn
        assert "after repair" in db.get_table("t")


def assert_repaired(root: Path, base: Base, offset: int, cut_bytes: bytes) -> None:
    """read_wal: the read-only reader ignores the tail and changes nothing; the repairing one
    keeps the ops before it, truncates the segment and saves the cut bytes beside it."""
    seg = wal_file(root, base.segments[-1])
    before = seg.read_bytes()
    ops, _, torn = read_wal(root / "wal", repair=False)
    assert base.kept == ops
    assert torn is not None
    assert (seg, offset, len(cut_bytes), None) == (
        torn.segment,
        torn.offset,
        torn.size,
        torn.saved_as,
    )
    assert before == seg.read_bytes()
    assert [] == list(seg.parent.glob("*.torn-*"))

    ops, segments, torn = read_wal(root / "wal", repair=True)
    assert base.kept == ops
    saved = seg.with_name(f"{seg.name}.torn-{offset}")
    assert torn is not None
    assert (seg, offset, saved) == (torn.segment, torn.offset, torn.saved_as)
    assert cut_bytes == saved.read_bytes()
    assert before[:offset] == seg.read_bytes()
    assert (base.kept[-1].lsn, offset) == (segments[-1].last_lsn, segments[-1].valid_size)


# -- the tail of the last segment: repaired ----------------------------------------------------


def test_the_pristine_log_reads_back_every_operation(base: Base) -> None:
    ops, segments, torn = read_wal(base.root / "wal", repair=True)
    assert None is torn
    assert list(range(1, len(ops) + 1)) == [op.lsn for op in ops]
    assert base.segments == [s.path.name for s in segments]
    assert 4 <= len(segments)
    assert ["last-0", "last-1", "last-2"] == [op.key for op in ops[-3:]]


def test_a_cut_at_the_last_record_boundary_is_clean(base: Base, copy: Callable[[], Path]) -> None:
    root = copy()
    seg = wal_file(root, base.segments[-1])
    rewrite(seg, lambda d: d.__delitem__(slice(base.tail[0], None)))
    ops, _, torn = read_wal(root / "wal", repair=True)
    assert (base.kept, None) == (ops, torn)
    append_and_reread(root, base.kept)


def test_truncation_at_every_prefix_of_the_last_record_is_repaired(
    base: Base, copy: Callable[[], Path]
) -> None:
    start, end = base.tail
    for cut in range(start + 1, end):
        root = copy()
        seg = wal_file(root, base.segments[-1])
        whole = seg.read_bytes()
        rewrite(seg, lambda d, cut=cut: d.__delitem__(slice(cut, None)))
        assert_repaired(root, base, start, whole[start:cut])
        append_and_reread(root, base.kept)


def test_reopening_a_cut_log_repairs_it_and_continues(base: Base, copy: Callable[[], Path]) -> None:
    start, end = base.tail
    for cut in (start + 1, start + FRAME_HEADER_SIZE, (start + end) // 2, end - 1):
        root = copy()
        seg = wal_file(root, base.segments[-1])
        whole = seg.read_bytes()
        rewrite(seg, lambda d, cut=cut: d.__delitem__(slice(cut, None)))
        append_and_reread(root, base.kept)
        assert whole[start:cut] == seg.with_name(f"{seg.name}.torn-{start}").read_bytes()


def test_a_flipped_byte_in_the_tail_record_is_repaired(
    base: Base, copy: Callable[[], Path]
) -> None:
    """Every byte of the last frame after its length field: flags, CRC, payload."""
    start, end = base.tail
    for index in range(start + 4, end):
        root = copy()
        seg = wal_file(root, base.segments[-1])
        damaged = rewrite(seg, lambda d, index=index: d.__setitem__(index, d[index] ^ 0xFF))
        assert_repaired(root, base, start, damaged[start:])
        append_and_reread(root, base.kept)


def test_a_flipped_bit_in_the_tail_records_length_is_repaired(
    base: Base, copy: Callable[[], Path]
) -> None:
    start, _ = base.tail
    refused = []
    for index in range(start, start + 4):
        for bit in range(8):
            root = copy()
            seg = wal_file(root, base.segments[-1])
            rewrite(seg, lambda d, i=index, b=bit: d.__setitem__(i, d[i] ^ (1 << b)))
            try:
                ops, _, torn = read_wal(root / "wal", repair=True)
            except RecoveryError as exc:
                refused.append((index - start, bit, exc.reason))
                continue
            assert (base.kept, start) == (ops, torn and torn.offset)
    assert [] == refused


def test_a_zero_filled_tail_is_repaired(base: Base, copy: Callable[[], Path]) -> None:
    root = copy()
    seg = wal_file(root, base.segments[-1])
    size = seg.stat().st_size
    with open(seg, "ab") as handle:
        handle.write(bytes(4096))
    ops, _, torn = read_wal(root / "wal", repair=True)
    assert base.ops == ops
    assert torn is not None
    assert (size, 4096, "zero-filled tail") == (torn.offset, torn.size, torn.reason)
    assert bytes(4096) == seg.with_name(f"{seg.name}.torn-{size}").read_bytes()
    append_and_reread(root, base.ops)


def test_a_torn_last_record_inside_a_zero_filled_tail_is_repaired(
    base: Base, copy: Callable[[], Path]
) -> None:
    start, end = base.tail
    root = copy()
    seg = wal_file(root, base.segments[-1])
    whole = seg.read_bytes()
    keep = start + FRAME_HEADER_SIZE + 8

    def zero_after(data: bytearray) -> None:
        data[keep:] = bytes(end - keep + 4096)

    rewrite(seg, zero_after)
    ops, _, torn = read_wal(root / "wal", repair=True)
    assert (base.kept, start) == (ops, torn and torn.offset)
    assert (
        whole[start:keep] == seg.with_name(f"{seg.name}.torn-{start}").read_bytes()[: keep - start]
    )


@pytest.mark.parametrize("size", [0, 1, 8, HEADER_SIZE - 1])
def test_a_truncated_header_of_the_last_segment_is_repaired_by_read_wal(
    base: Base, copy: Callable[[], Path], size: int
) -> None:
    """A crash right after a rotation created the file: the file is removed, a copy kept."""
    root = copy()
    seg = wal_file(root, base.segments[-1])
    before_last = read_wal(base.root / "wal")[1][-2].last_lsn
    rewrite(seg, lambda d: d.__delitem__(slice(size, None)))
    expected = [op for op in base.ops if op.lsn <= before_last]
    ops, _, torn = read_wal(root / "wal", repair=False)
    assert expected == ops
    assert seg.exists()
    ops, _, torn = read_wal(root / "wal", repair=True)
    assert expected == ops
    assert torn is not None
    assert (0, size) == (torn.offset, torn.size)
    assert False is seg.exists()
    original = wal_file(base.root, base.segments[-1]).read_bytes()
    assert original[:size] == seg.with_name(f"{seg.name}.torn-0").read_bytes()
    ops, _, torn = read_wal(root / "wal", repair=True)
    assert (expected, None) == (ops, torn)


@pytest.mark.parametrize("size", [0, HEADER_SIZE - 1])
def test_reopening_after_a_crash_at_rotation_repairs_and_continues(
    base: Base, copy: Callable[[], Path], size: int
) -> None:
    root = copy()
    seg = wal_file(root, base.segments[-1])
    before_last = read_wal(base.root / "wal")[1][-2].last_lsn
    rewrite(seg, lambda d: d.__delitem__(slice(size, None)))
    append_and_reread(root, [op for op in base.ops if op.lsn <= before_last])


def test_an_empty_new_segment_after_a_clean_one_reopens(tmp_path: Path) -> None:
    """A segment holding only its header is a clean end: the log continues in it."""
    root = tmp_path / "db"
    with DictDB.open(root, fsync="always", segment_size=SEGMENT_SIZE) as db:
        db.create_table("t").insert({"id": 1})
    (root / "wal" / segment_name(3)).write_bytes(encode_header(3))
    ops, segments, torn = read_wal(root / "wal", repair=True)
    assert ([1, 2], 2, None) == ([op.lsn for op in ops], segments[-1].last_lsn, torn)
    with DictDB.open(root, fsync="always", segment_size=SEGMENT_SIZE) as db:
        db.get_table("t").insert({"id": 2})
    ops, _, _ = read_wal(root / "wal")
    assert [1, 2, 3] == [op.lsn for op in ops]


# -- damage before the tail: RecoveryError with segment and offset ------------------------------


def flip_payload_byte(path: Path, frame: tuple[int, int]) -> None:
    start, end = frame
    middle = (start + FRAME_HEADER_SIZE + end) // 2
    rewrite(path, lambda d: d.__setitem__(middle, d[middle] ^ 0xFF))


def assert_refused(root: Path, segment: str, offset: int) -> None:
    seg = wal_file(root, segment)
    before = {p.name: p.read_bytes() for p in (root / "wal").iterdir()}
    for repair in (False, True):
        with pytest.raises(RecoveryError) as info:
            read_wal(root / "wal", repair=repair)
        assert (str(seg), offset) == (info.value.segment, info.value.offset)
    with pytest.raises(RecoveryError) as info:
        DictDB.open(root, fsync="always", segment_size=SEGMENT_SIZE)
    assert (str(seg), offset) == (info.value.segment, info.value.offset)
    assert before == {p.name: p.read_bytes() for p in (root / "wal").iterdir()}


@pytest.mark.parametrize("which", [0, 1, -3, -2], ids=["first", "second", "middle", "before-tail"])
def test_a_flipped_byte_in_an_earlier_record_of_the_last_segment_is_refused(
    base: Base, copy: Callable[[], Path], which: int
) -> None:
    root = copy()
    frame = base.last_frames[which]
    flip_payload_byte(wal_file(root, base.segments[-1]), frame)
    assert_refused(root, base.segments[-1], frame[0])


@pytest.mark.parametrize("which", [0, 2, -1], ids=["first", "middle", "its-last"])
def test_a_flipped_byte_in_an_earlier_segment_is_refused(
    base: Base, copy: Callable[[], Path], which: int
) -> None:
    root = copy()
    frame = base.first_frames[which]
    flip_payload_byte(wal_file(root, base.segments[0]), frame)
    assert_refused(root, base.segments[0], frame[0])


@pytest.mark.parametrize("bit", range(16, 32))
def test_a_flipped_length_bit_in_an_earlier_segment_is_refused(
    base: Base, copy: Callable[[], Path], bit: int
) -> None:
    root = copy()
    start = base.first_frames[2][0]
    index = start + 3 - bit // 8
    rewrite(
        wal_file(root, base.segments[0]), lambda d: d.__setitem__(index, d[index] ^ (1 << bit % 8))
    )
    assert_refused(root, base.segments[0], start)


def test_a_flipped_length_bit_in_an_earlier_record_of_the_last_segment_is_refused(
    base: Base, copy: Callable[[], Path]
) -> None:
    start = base.last_frames[1][0]
    accepted = []
    for index in range(start, start + 4):
        for bit in range(8):
            root = copy()
            rewrite(
                wal_file(root, base.segments[-1]),
                lambda d, i=index, b=bit: d.__setitem__(i, d[i] ^ (1 << b)),
            )
            try:
                ops, _, _ = read_wal(root / "wal", repair=True)
            except RecoveryError as exc:
                where = (exc.segment, exc.offset)
            else:
                accepted.append((index - start, bit, len(base.ops) - len(ops)))
                continue
            assert (str(wal_file(root, base.segments[-1])), start) == where
    assert [] == accepted


def test_a_damaged_header_of_an_earlier_segment_is_refused(
    base: Base, copy: Callable[[], Path]
) -> None:
    root = copy()
    rewrite(wal_file(root, base.segments[1]), lambda d: d.__setitem__(3, d[3] ^ 1))
    assert_refused(root, base.segments[1], 0)


def test_a_damaged_header_of_the_last_segment_is_refused(
    base: Base, copy: Callable[[], Path]
) -> None:
    root = copy()
    rewrite(wal_file(root, base.segments[-1]), lambda d: d.__setitem__(10, d[10] ^ 1))
    assert_refused(root, base.segments[-1], 0)


def test_a_header_disagreeing_with_the_segment_name_is_refused(
    base: Base, copy: Callable[[], Path]
) -> None:
    root = copy()
    seg = wal_file(root, base.segments[1])
    first = int(base.segments[1][:16], 16)
    rewrite(seg, lambda d: d.__setitem__(slice(0, HEADER_SIZE), encode_header(first + 1)))
    assert_refused(root, base.segments[1], 0)


def test_a_missing_middle_segment_is_refused_naming_the_segment_after_the_gap(
    base: Base, copy: Callable[[], Path]
) -> None:
    root = copy()
    wal_file(root, base.segments[1]).unlink()
    with pytest.raises(RecoveryError) as info:
        read_wal(root / "wal", repair=True)
    assert (str(wal_file(root, base.segments[2])), 0) == (info.value.segment, info.value.offset)
    assert "a gap" in info.value.reason
    with pytest.raises(RecoveryError) as info:
        DictDB.open(root)
    assert str(wal_file(root, base.segments[2])) == info.value.segment


def test_overlapping_segments_are_refused(base: Base, copy: Callable[[], Path]) -> None:
    root = copy()
    first = int(base.segments[2][:16], 16)
    stray = wal_file(root, segment_name(first - 1))
    op = base.ops[first - 2]
    stray.write_bytes(encode_header(first - 1) + encode_frame(encode_batch([op], [False])))
    with pytest.raises(RecoveryError) as info:
        read_wal(root / "wal")
    assert 0 == info.value.offset
    assert "overlap" in info.value.reason or "gap" in info.value.reason


def test_a_frame_with_a_good_crc_but_a_malformed_payload_is_refused(
    base: Base, copy: Callable[[], Path]
) -> None:
    root = copy()
    seg = wal_file(root, base.segments[-1])
    size = seg.stat().st_size
    with open(seg, "ab") as handle:
        handle.write(encode_frame(b'{"not": "a batch"}'))
    assert_refused(root, base.segments[-1], size)


def test_a_frame_with_the_wrong_next_lsn_is_refused(base: Base, copy: Callable[[], Path]) -> None:
    root = copy()
    seg = wal_file(root, base.segments[-1])
    size = seg.stat().st_size
    wrong = base.ops[-1]._replace(lsn=base.ops[-1].lsn + 2)
    with open(seg, "ab") as handle:
        handle.write(encode_frame(encode_batch([wrong], [False])))
    assert_refused(root, base.segments[-1], size)


def test_after_lsn_skips_whole_segments_but_keeps_continuity(base: Base) -> None:
    for after in (0, 1, base.ops[len(base.ops) // 2].lsn, base.ops[-1].lsn):
        ops, _, _ = read_wal(base.root / "wal", after_lsn=after)
        assert [op for op in base.ops if op.lsn > after] == ops


def test_two_repairs_at_the_same_offset_keep_both_cut_copies(
    base: Base, copy: Callable[[], Path]
) -> None:
    """Crash, repair, append, crash again at the same place: each cut is kept for inspection
    (the second repair must not overwrite the first one's copy)."""
    root = copy()
    seg = wal_file(root, base.segments[-1])
    start, end = base.tail
    first_cut = seg.read_bytes()[start : end - 1]
    rewrite(seg, lambda d: d.__delitem__(slice(end - 1, None)))
    with DictDB.open(root, fsync="always", segment_size=SEGMENT_SIZE) as db:
        db.get_table("t").insert({"id": "second", "pad": "s" * 50})
    whole = seg.read_bytes()
    second_cut = whole[start : len(whole) - 3]
    rewrite(seg, lambda d: d.__delitem__(slice(len(whole) - 3, None)))
    assert read_wal(root / "wal", repair=True)[0] == base.kept
    kept = sorted(p.read_bytes() for p in seg.parent.glob(f"{seg.name}.torn-*"))
    assert sorted([first_cut, second_cut]) == kept


def test_a_reopen_after_a_failed_open_on_damage_works_once_repaired_by_hand(
    base: Base, copy: Callable[[], Path]
) -> None:
    """RecoveryError leaves every file as it was (nothing cut, nothing saved aside)."""
    root = copy()
    seg = wal_file(root, base.segments[-1])
    pristine = seg.read_bytes()
    flip_payload_byte(seg, base.last_frames[1])
    assert_refused(root, base.segments[-1], base.last_frames[1][0])
    assert [] == list(seg.parent.glob("*.torn-*"))
    seg.write_bytes(pristine)
    append_and_reread(root, base.ops)


@pytest.mark.parametrize(
    ("written", "size"),
    [(0, HEADER_SIZE), (0, 4096), (10, HEADER_SIZE), (10, 4096)],
    ids=["zeros-24", "zeros-4096", "part-then-zeros-24", "part-then-zeros-4096"],
)
def test_a_new_last_segment_whose_header_never_reached_the_disk_is_repaired(
    base: Base, copy: Callable[[], Path], written: int, size: int
) -> None:
    """A crash right after a rotation, on a filesystem that persisted the file's size but not
    its data: the last segment reads as zeros (after the part of the header that made it).
    Like a truncated header, this is an interrupted creation, not damage."""
    root = copy()
    seg = wal_file(root, base.segments[-1])
    header = seg.read_bytes()[:HEADER_SIZE]
    seg.write_bytes(header[:written] + bytes(size - written))
    before_last = read_wal(base.root / "wal")[1][-2].last_lsn
    append_and_reread(root, [op for op in base.ops if op.lsn <= before_last])


@pytest.mark.parametrize("which", [0, 2, -1], ids=["first", "middle", "its-last"])
def test_read_until_damage_returns_every_operation_before_a_flipped_byte(
    base: Base, copy: Callable[[], Path], which: int
) -> None:
    root = copy()
    frame = base.first_frames[which]
    seg = wal_file(root, base.segments[0])
    flip_payload_byte(seg, frame)
    ops, damage = read_until_damage(root / "wal")
    assert damage is not None
    assert (str(seg), frame[0]) == (damage.segment, damage.offset)
    before = base.first_frames.index(frame)
    expected = [op for op in base.ops if op.lsn < first_lsn_of_frame(base, root, before)]
    assert expected == ops


def first_lsn_of_frame(base: Base, root: Path, index: int) -> int:
    """The LSN the *index*-th frame of the first segment starts at (from the pristine log)."""
    data = wal_file(base.root, base.segments[0]).read_bytes()
    for i, (_, _, payload) in enumerate(iter_frames(data, HEADER_SIZE)):
        if i == index:
            return decode_batch(payload)[0].lsn
    raise AssertionError(index)


def test_read_until_damage_reads_a_pristine_log_to_its_end(base: Base) -> None:
    expected = (base.ops[5:], None)
    assert expected == read_until_damage(base.root / "wal", after_lsn=base.ops[4].lsn)

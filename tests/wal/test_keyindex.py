"""`wal.keyindex`: one key's operations read through per-segment key indexes.

The law: whatever the indexes say (absent, fresh, covering a prefix, damaged, stale, from
another segment), `key_operations` gives exactly the operations a full scan filtered by key
gives. Damage only costs a `KeyIndexWarning` and a scan.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wal import DurableLog, KeyIndexWarning, index_segments, key_operations, read_wal
from wal.framing import HEADER_SIZE
from wal.keyindex import (
    MAGIC,
    collection_token,
    decode_key_index,
    encode_key_index,
    index_path,
    read_key_index,
    token,
)
from wal.operation import ITEM_KINDS, Operation, OpTuple

SEGMENT_SIZE = 4096
UTC = dt.UTC
KEYS: list[Any] = [
    0,
    1,
    7,
    2**70,
    "a",
    "b",
    "1",
    "",
    b"a",
    uuid.UUID(int=5),
    dt.date(2024, 1, 2),
    dt.datetime(2024, 1, 2, 3, 4),
    dt.datetime(2024, 1, 2, 3, 4, tzinfo=UTC),
]


def write_log(directory: Path, ops: list[OpTuple], *, every: int = 3) -> None:
    """Append *ops* in statements of *every* operations, then close (all on disk)."""
    log, _, _ = DurableLog.open(directory, fsync="off", segment_size=SEGMENT_SIZE)
    for i in range(0, len(ops), every):
        chunk = ops[i : i + every]
        with log._owner_lock:
            log.submit(chunk, [True] * len(chunk))
        log.flush(sync=False)  # one frame per statement
    log.close()


def make_ops(first: int, spec: list[tuple[str, str, Any]]) -> list[OpTuple]:
    out: list[OpTuple] = []
    for n, (kind, table, key) in enumerate(spec, first):
        if kind in ITEM_KINDS:
            out.append((n, 1000.0 + n, kind, table, key, {"n": n, "pad": "x" * 40}, None, None))
        else:
            out.append((n, 1000.0 + n, kind, table, None, {"primary_key": "id"}, None, None))
    return out


def scanned(directory: Path, table: str, key: Any, after: int = 0) -> list[Operation]:
    ops = read_wal(directory)[0]
    return [
        op
        for op in ops
        if op.lsn > after and op.table == table and (op.kind not in ITEM_KINDS or op.key == key)
    ]


def through_index(directory: Path, table: str, key: Any, after: int = 0) -> list[Operation]:
    return [op for ops, _ in key_operations(directory, table, key, after_lsn=after) for op in ops]


specs = st.lists(
    st.tuples(
        st.sampled_from(["insert", "update", "delete", "insert", "update", "create", "drop"]),
        st.sampled_from(["t", "u"]),
        st.sampled_from(KEYS),
    ),
    min_size=1,
    max_size=150,
)


@settings(deadline=None)
@given(spec=specs, more=specs, probe=st.sampled_from([*KEYS, 99, "zz"]), after=st.integers(0, 40))
def test_a_key_read_through_indexes_equals_a_full_scan(
    tmp_path_factory: pytest.TempPathFactory,
    spec: list[tuple[str, str, Any]],
    more: list[tuple[str, str, Any]],
    probe: Any,
    after: int,
) -> None:
    directory = tmp_path_factory.mktemp("log")
    write_log(directory, make_ops(1, spec))
    for table in ("t", "u"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            # First read: no index, and a plain read writes none; then through them.
            assert scanned(directory, table, probe, after) == through_index(
                directory, table, probe, after
            )
            assert not list(directory.glob("*.keys"))
    index_segments(directory)
    for table in ("t", "u"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert scanned(directory, table, probe, after) == through_index(
                directory, table, probe, after
            )
    # Appended after the indexes were written: read past what they cover, then extended.
    write_log(directory, make_ops(len(spec) + 1, more))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert scanned(directory, "t", probe, after) == through_index(directory, "t", probe, after)
        index_segments(directory)
        assert scanned(directory, "t", probe, after) == through_index(directory, "t", probe, after)


def test_equal_keys_of_different_types_share_a_token() -> None:
    assert token("t", 1) == token("t", True) == token("t", 1.0) == token("t", decimal.Decimal(1))
    assert token("t", 0.5) == token("t", decimal.Decimal("0.5"))
    aware = dt.datetime(2024, 1, 2, 3, 4, tzinfo=UTC)
    shifted = aware.astimezone(dt.timezone(dt.timedelta(hours=5)))
    assert aware == shifted
    assert token("t", aware) == token("t", shifted)
    naive = dt.datetime(2024, 1, 2, 3, 4)
    assert token("t", naive) == token("t", naive.replace(fold=1))
    assert token("t", "a") != token("u", "a")
    assert token("t", 1) != token("t", "1")
    assert collection_token("t") != token("t", None)


def build(directory: Path, n: int = 400) -> list[Path]:
    spec = [("create", "t", None)] + [("insert", "t", k) for k in range(n)]
    spec += [("update", "t", k % 10) for k in range(n)]
    write_log(directory, make_ops(1, spec), every=7)
    index_segments(directory)
    indexes = sorted(directory.glob("*.keys"))
    assert len(indexes) >= 3
    return indexes


def warned_and_right(directory: Path, key: Any = 3) -> None:
    with pytest.warns(KeyIndexWarning):
        assert scanned(directory, "t", key) == through_index(directory, "t", key)


def test_indexes_are_written_for_every_segment_and_used(tmp_path: Path) -> None:
    indexes = build(tmp_path)
    assert len(indexes) == len(list(tmp_path.glob("*.wal")))
    assert index_segments(tmp_path) == (0, len(indexes))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(through_index(tmp_path, "t", 3)) == 1 + 40 + 1  # insert, updates, create


@pytest.mark.parametrize(
    "damage",
    ["flip-body", "flip-header", "truncate", "empty", "garbage", "other-segment", "old-version"],
)
def test_a_damaged_index_is_reported_and_the_segment_scanned(tmp_path: Path, damage: str) -> None:
    indexes = build(tmp_path)
    victim = indexes[1]
    data = bytearray(victim.read_bytes())
    if damage == "flip-body":
        data[-10] ^= 0x40
    elif damage == "flip-header":
        data[21] ^= 0x01
    elif damage == "truncate":
        del data[-9:]
    elif damage == "empty":
        data = bytearray()
    elif damage == "garbage":
        data = bytearray(os.urandom(200))
    elif damage == "other-segment":
        data = bytearray(indexes[0].read_bytes())
    else:
        data[8] = 9  # a format version this reader does not know (header CRC redone)
        import crc32c

        data[48:52] = crc32c.crc32c(bytes(data[:48])).to_bytes(4, "little")
    victim.write_bytes(bytes(data))
    warned_and_right(tmp_path)


def test_an_index_whose_segment_changed_is_not_used(tmp_path: Path) -> None:
    # A power loss can cut a torn tail and let new frames take the place of indexed ones:
    # the index names its last covered frame by offset, length and CRC.
    directory = tmp_path / "log"
    write_log(directory, make_ops(1, [("insert", "t", k) for k in range(30)]), every=3)
    index_segments(directory)
    (segment,) = sorted(directory.glob("*.wal"))
    keys_file = index_path(segment)
    saved = keys_file.read_bytes()
    # The same LSNs written again with other keys: same offsets, other frames.
    for path in directory.iterdir():
        path.unlink()
    write_log(directory, make_ops(1, [("insert", "t", k + 100) for k in range(30)]), every=3)
    keys_file.write_bytes(saved)
    warned_and_right(directory, key=103)


def test_a_stale_frame_number_is_caught_by_its_first_lsn(tmp_path: Path) -> None:
    indexes = build(tmp_path)
    (first_segment,) = [p for p in tmp_path.glob("*.wal") if index_path(p) == indexes[0]]
    index = read_key_index(first_segment, 1)
    assert index is not None
    index.firsts[0] += 1  # names another frame than the one at the offset
    index.firsts[1:] = [f + 1 for f in index.firsts[1:]]
    index.last_lsn += 1
    indexes[0].write_bytes(encode_key_index(index))
    with pytest.warns(KeyIndexWarning):
        assert scanned(tmp_path, "t", 0) == through_index(tmp_path, "t", 0)


def test_decoding_refuses_what_is_not_an_index() -> None:
    from wal.errors import WALError

    with pytest.raises(WALError, match="shorter"):
        decode_key_index(b"xx", 1)
    with pytest.raises(WALError, match="magic"):
        decode_key_index(b"\0" * 60, 1)
    assert MAGIC == b"DICTDBKX"


def test_an_unwritable_index_place_is_skipped(tmp_path: Path) -> None:
    # (A read-only directory likewise: the write fails, the answer does not.)
    write_log(tmp_path, make_ops(1, [("insert", "t", k) for k in range(50)]))
    (segment, *_) = sorted(tmp_path.glob("*.wal"))
    index_path(segment).mkdir()  # a directory where the index would go
    with pytest.warns(KeyIndexWarning, match="not a regular file"):
        index_segments(tmp_path)  # it cannot be written there either: nothing is
    assert index_path(segment).is_dir()
    with pytest.warns(KeyIndexWarning):
        assert scanned(tmp_path, "t", 4) == through_index(tmp_path, "t", 4)


def test_dropping_segments_drops_their_indexes(tmp_path: Path) -> None:
    build(tmp_path)
    log, _, _ = DurableLog.open(tmp_path, fsync="off", segment_size=SEGMENT_SIZE)
    try:
        removed = log.drop_segments_through(300)
    finally:
        log.close()
    assert removed
    for path in removed:
        assert not index_path(path).exists()
    assert {p.name[: -len(".keys")] for p in tmp_path.glob("*.keys")} == {
        p.name for p in tmp_path.glob("*.wal")
    }
    assert scanned(tmp_path, "t", 5) == through_index(tmp_path, "t", 5)


def test_damage_in_a_frame_the_key_needs_is_still_an_error(tmp_path: Path) -> None:
    from wal import RecoveryError

    write_log(tmp_path, make_ops(1, [("insert", "t", k) for k in range(200)]), every=5)
    (segment, *_) = sorted(tmp_path.glob("*.wal"))
    data = bytearray(segment.read_bytes())
    data[HEADER_SIZE + 20] ^= 0xFF  # inside the first frame, which holds key 0
    segment.write_bytes(bytes(data))
    with pytest.raises(RecoveryError):
        through_index(tmp_path, "t", 0)

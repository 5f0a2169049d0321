"""The WAL's on-disk format (`wal.framing`): headers, frames, batches. Pure, no files.

Every torn/corrupt verdict of `iter_frames` is checked against the rule its module docstring
states: bytes that end inside a frame, a zero-filled tail, and a bad CRC on a frame ending
exactly at the end are *torn*; anything else wrong is *corrupt*.
"""

# The suite asserts `expected == actual` (STYLE.md), which SIM300 calls a Yoda condition.

from __future__ import annotations

import datetime as dt
import decimal
import struct
import uuid
from typing import Any

import crc32c
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests import strategies as s
from tests.dictdb._scripts.strict import diff
from wal import framing
from wal.errors import WALError
from wal.framing import (
    FRAME_HEADER_SIZE,
    HEADER_SIZE,
    MAGIC,
    MAX_LSN,
    MAX_PAYLOAD,
    MAX_TS,
    VERSION,
    FrameError,
    decode_batch,
    decode_header,
    encode_batch,
    encode_frame,
    encode_header,
    iter_frames,
    parse_segment_name,
    segment_name,
)
from wal.operation import Operation
from wal.zstd import compress


def raw_header(magic: bytes = MAGIC, version: int = VERSION, first_lsn: int = 1) -> bytes:
    """A header built by hand from the documented layout, with a correct CRC."""
    head = struct.pack(">8sIQ", magic, version, first_lsn)
    return head + struct.pack(">I", crc32c.crc32c(head))


def raw_frame(payload: bytes, flags: int = 0, crc: int | None = None, length: int | None = None):
    """A frame built by hand from the documented layout."""
    if crc is None:
        crc = crc32c.crc32c(bytes((flags,)) + payload)
    return struct.pack(">IBI", len(payload) if length is None else length, flags, crc) + payload


def frame_error(data: bytes, offset: int = 0) -> tuple[list[int], FrameError]:
    """The offsets of the good frames before the first bad one, and the error it raises."""
    seen: list[int] = []
    frames = iter_frames(data, offset)
    while True:
        try:
            frame_offset, _, _ = next(frames)
        except FrameError as exc:
            return seen, exc
        except StopIteration:
            raise AssertionError(f"no FrameError; frames at {seen}") from None
        seen.append(frame_offset)


# -- segment names and headers ---------------------------------------------------------------


@given(st.integers(min_value=1, max_value=MAX_LSN - 1))
def test_segment_name_round_trips_and_sorts_like_the_lsn(lsn: int) -> None:
    name = segment_name(lsn)
    assert 16 + len(".wal") == len(name)
    assert lsn == parse_segment_name(name)
    assert (name < segment_name(lsn + 1)) == (lsn < lsn + 1)


@pytest.mark.parametrize("lsn", [0, -1, 2**63, 2**64])
def test_a_segment_name_outside_the_lsn_range_is_refused(lsn: int) -> None:
    """LSNs are signed 64-bit ints, as snapshots take them: names stay within them."""
    with pytest.raises(WALError):
        segment_name(lsn)


@pytest.mark.parametrize(
    "name",
    [
        "0000000000000001.wal.torn-0",
        "000000000000001.wal",
        "00000000000000010.wal",
        "LOCK",
        "zzzzzzzzzzzzzzzz.wal",
        "0000000000000001.wal.tmp",
        ".wal",
    ],
)
def test_parse_segment_name_refuses_other_files(name: str) -> None:
    assert None is parse_segment_name(name)


@given(st.integers(min_value=1, max_value=MAX_LSN))
def test_header_round_trips_and_matches_the_documented_layout(first_lsn: int) -> None:
    header = encode_header(first_lsn)
    assert raw_header(first_lsn=first_lsn) == header
    assert HEADER_SIZE == len(header)
    assert first_lsn == decode_header(header)
    assert first_lsn == decode_header(header + b"trailing frames")


@pytest.mark.parametrize("first_lsn", [0, MAX_LSN + 1, 2**64 - 1])
def test_a_header_naming_an_lsn_outside_the_range_is_damage(first_lsn: int) -> None:
    # Snapshots take LSNs as signed 64-bit ints: a log past them would restore a database
    # whose own snapshots could not be read back.
    with pytest.raises(FrameError, match="names LSN") as info:
        decode_header(raw_header(first_lsn=first_lsn))
    assert (0, False) == (info.value.offset, info.value.torn)


@pytest.mark.parametrize(
    "head",
    [[MAX_LSN + 1, 1.0], [0, 1.0], [1, -1.0], [1, float(MAX_TS)], [1, 1e20]],
    ids=["lsn-past-63-bits", "lsn-0", "ts-negative", "ts-year-10000", "ts-huge"],
)
def test_an_operation_with_an_lsn_or_time_out_of_range_is_refused(head: list[Any]) -> None:
    payload = orjson.dumps([*head, "insert", "t", 1, {"id": 1}, None, None])
    with pytest.raises(WALError, match="malformed operation header"):
        decode_batch(payload)


def test_an_operation_header_nested_deep_is_refused_without_printing_it() -> None:
    deep = b"[" * 1000 + b"]" * 1000
    payload = b"[1," + deep + b',"insert","t",1,{"id":1},null,null]'
    with pytest.raises(WALError, match="a list of 1"):
        decode_batch(payload)


@pytest.mark.parametrize("size", range(HEADER_SIZE))
def test_a_short_header_is_torn(size: int) -> None:
    with pytest.raises(FrameError) as info:
        decode_header(encode_header(7)[:size])
    assert (0, True) == (info.value.offset, info.value.torn)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (raw_header(magic=b"DICTDBWX"), "bad magic"),
        (raw_header(version=3), "unknown WAL format version 3"),
        (raw_header(version=1), "unknown WAL format version 1"),
        (raw_header(version=0), "unknown WAL format version 0"),
        (raw_header(first_lsn=0), "segment header names LSN 0"),
        (encode_header(5)[:20] + b"\x00\x00\x00\x00", "checksum mismatch"),
    ],
    ids=["magic", "version-3", "version-1", "version-0", "lsn-0", "crc"],
)
def test_a_bad_header_is_corrupt(header: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as info:
        decode_header(header)
    assert (0, False) == (info.value.offset, info.value.torn)
    assert reason in info.value.reason


@pytest.mark.parametrize("index", range(HEADER_SIZE))
def test_every_flipped_header_byte_is_refused(index: int) -> None:
    header = bytearray(encode_header(3))
    header[index] ^= 0x40
    with pytest.raises(FrameError) as info:
        decode_header(bytes(header))
    assert False is info.value.torn


# -- frames ------------------------------------------------------------------------------------


@given(st.binary(min_size=1, max_size=300), st.booleans())
def test_frame_round_trips(payload: bytes, zstd: bool) -> None:
    frame = encode_frame(payload, zstd=zstd)
    assert [(7, 7 + len(frame), payload)] == list(iter_frames(b"x" * 7 + frame, 7))


@given(st.lists(st.binary(min_size=1, max_size=60), max_size=6), st.booleans())
def test_frames_back_to_back_round_trip_with_their_offsets(
    payloads: list[bytes], zstd: bool
) -> None:
    data = encode_header(1)
    expected = []
    for payload in payloads:
        frame = encode_frame(payload, zstd=zstd)
        expected.append((len(data), len(data) + len(frame), payload))
        data += frame
    assert expected == list(iter_frames(data, HEADER_SIZE))


def test_an_uncompressed_frame_matches_the_documented_layout() -> None:
    assert raw_frame(b"[1]") == encode_frame(b"[1]")


def test_a_compressed_frame_sets_flag_bit_0_and_holds_one_zstd_frame() -> None:
    payload = b"[" + b"1," * 500 + b"1]"
    frame = encode_frame(payload, zstd=True)
    assert raw_frame(compress(payload), flags=framing.FLAG_ZSTD) == frame


def test_a_zero_length_payload_cannot_be_framed() -> None:
    with pytest.raises(WALError):
        encode_frame(b"")


def test_an_oversize_payload_cannot_be_framed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(framing, "MAX_PAYLOAD", 16)
    assert raw_frame(b"x" * 16) == encode_frame(b"x" * 16)
    with pytest.raises(WALError):
        encode_frame(b"x" * 17)


def test_empty_bytes_after_the_offset_hold_no_frame() -> None:
    assert [] == list(iter_frames(encode_header(1), HEADER_SIZE))


@pytest.mark.parametrize("size", range(1, FRAME_HEADER_SIZE))
def test_a_frame_header_cut_short_is_torn(size: int) -> None:
    good = raw_frame(b"[1]")
    seen, err = frame_error(good + raw_frame(b"[2]")[:size])
    assert ([0], len(good), True) == (seen, err.offset, err.torn)


@pytest.mark.parametrize("cut", [1, 5, 10])
def test_a_payload_cut_short_is_torn(cut: int) -> None:
    good = raw_frame(b"[1]")
    bad = raw_frame(b"[1234567890,2]")
    seen, err = frame_error(good + bad[: FRAME_HEADER_SIZE + cut])
    assert ([0], len(good), True, "frame runs past the end") == (
        seen,
        err.offset,
        err.torn,
        err.reason,
    )


@pytest.mark.parametrize("zeros", [1, 9, 4096])
def test_a_zero_filled_tail_is_torn(zeros: int) -> None:
    good = raw_frame(b"[1]")
    seen, err = frame_error(good + b"\x00" * zeros)
    assert ([0], len(good), True) == (seen, err.offset, err.torn)
    if zeros >= FRAME_HEADER_SIZE:
        assert "zero-filled tail" == err.reason


def test_a_zero_length_followed_by_data_is_corrupt() -> None:
    good = raw_frame(b"[1]")
    seen, err = frame_error(good + raw_frame(b"", length=0) + b"\x00\x01")
    assert ([0], len(good), False, "frame length 0") == (seen, err.offset, err.torn, err.reason)


def test_a_zero_length_frame_before_a_good_frame_is_corrupt() -> None:
    seen, err = frame_error(raw_frame(b"", length=0) + raw_frame(b"[1]"))
    assert ([], 0, False) == (seen, err.offset, err.torn)


def test_an_impossible_length_is_corrupt_even_at_the_end() -> None:
    seen, err = frame_error(raw_frame(b"[1]", length=MAX_PAYLOAD + 1))
    assert ([], 0, False) == (seen, err.offset, err.torn)


def test_the_largest_length_running_past_the_end_is_torn() -> None:
    seen, err = frame_error(raw_frame(b"[1]", length=MAX_PAYLOAD))
    assert ([], 0, True) == (seen, err.offset, err.torn)


def test_a_bad_crc_on_the_frame_that_ends_the_bytes_is_torn() -> None:
    good = raw_frame(b"[1]")
    seen, err = frame_error(good + raw_frame(b"[2]", crc=0))
    assert ([0], len(good), True, "frame checksum mismatch") == (
        seen,
        err.offset,
        err.torn,
        err.reason,
    )


def test_a_bad_crc_on_a_frame_followed_by_more_bytes_is_corrupt() -> None:
    good = raw_frame(b"[1]")
    seen, err = frame_error(good + raw_frame(b"[2]", crc=0) + raw_frame(b"[3]"))
    assert ([0], len(good), False) == (seen, err.offset, err.torn)


def test_the_crc_covers_the_flags_byte() -> None:
    frame = bytearray(encode_frame(b"[1]"))
    frame[4] = framing.FLAG_ZSTD
    seen, err = frame_error(bytes(frame) + raw_frame(b"[2]"))
    assert ([], 0, False, "frame checksum mismatch") == (seen, err.offset, err.torn, err.reason)


def test_unknown_flags_under_a_good_crc_are_corrupt() -> None:
    seen, err = frame_error(raw_frame(b"[1]", flags=0x02))
    assert ([], 0, False) == (seen, err.offset, err.torn)
    assert "unknown frame flags" in err.reason


def test_a_bad_compressed_payload_under_a_good_crc_is_corrupt() -> None:
    seen, err = frame_error(raw_frame(b"not zstd at all", flags=framing.FLAG_ZSTD))
    assert ([], 0, False) == (seen, err.offset, err.torn)


@given(st.binary(min_size=1, max_size=40), st.data())
def test_every_flipped_bit_of_a_frame_followed_by_another_is_refused(
    payload: bytes, data: st.DataObject
) -> None:
    frame = bytearray(encode_frame(payload))
    index = data.draw(st.integers(0, len(frame) - 1), label="byte")
    frame[index] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    stream = bytes(frame) + encode_frame(b"[2]")
    try:
        frames = list(iter_frames(stream, 0))
    except FrameError as exc:
        error_offset = exc.offset
    else:  # only a length grown into the next frame could parse, and then not as the original
        assert payload not in [p for _, _, p in frames]
        return
    assert 0 == error_offset


# -- batches -----------------------------------------------------------------------------------


KINDS = st.sampled_from(["insert", "update", "delete", "create", "drop"])


@st.composite
def batches(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> list[Operation]:
    first = draw(st.integers(min_value=1, max_value=2**62))
    count = draw(st.integers(min_value=1, max_value=5))
    ts = draw(st.floats(min_value=0, max_value=4e9))
    return [
        Operation(
            first + i,
            ts,
            draw(KINDS),
            draw(st.text(max_size=5)),
            draw(values),
            draw(values),
            draw(values),
            draw(st.one_of(st.none(), values)),
        )
        for i in range(count)
    ]


@given(batches(s.domain_values(max_leaves=6)))
def test_a_batch_of_tagged_values_round_trips_type_for_type(ops: list[Operation]) -> None:
    decoded = decode_batch(encode_batch(ops, [False] * len(ops)))
    assert [] == diff([list(op) for op in ops], [list(op) for op in decoded])
    assert [Operation] * len(ops) == [type(op) for op in decoded]


def test_each_tagged_kind_round_trips_type_for_type() -> None:
    values = {
        "naive": dt.datetime(2024, 2, 29, 23, 59, 59, 1),
        "aware": dt.datetime(2000, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-3, seconds=1))),
        "day": dt.date(1999, 12, 31),
        "dec": decimal.Decimal("-1.500"),
        "tiny": decimal.Decimal("1E-30"),
        "uuid": uuid.UUID(int=12345),
        "bytes": b"\x00\xff",
        "big": 2**100,
        "neg big": -(2**64),
        "u64": 2**63,
        "inf": float("inf"),
        "-inf": float("-inf"),
        "-0": -0.0,
        "dollar": {"$date": "not a tag"},
        "nested dollar": [{"$int": "1"}, {"$": {"$dict": {}}}],
    }
    op = Operation(1, 1.5, "insert", "t", uuid.UUID(int=1), values, None, {"at": values["aware"]})
    (decoded,) = decode_batch(encode_batch([op], [False]))
    assert [] == diff(list(op), list(decoded))


@given(batches(s.plain_json()))
def test_plain_encoding_equals_tagged_encoding_for_plain_ops(ops: list[Operation]) -> None:
    as_tuples = [tuple(op) for op in ops]
    tagged = encode_batch(as_tuples, [False] * len(ops))
    assert tagged == encode_batch(as_tuples, [True] * len(ops))
    mixed = [i % 2 == 0 for i in range(len(ops))]
    assert tagged == encode_batch(as_tuples, mixed)
    assert [list(op) for op in ops] == [list(op) for op in decode_batch(tagged)]


@given(batches(s.plain_json()))
def test_plain_encoding_of_operation_records_equals_tagged_encoding(
    ops: list[Operation],
) -> None:
    assert encode_batch(ops, [False] * len(ops)) == encode_batch(ops, [True] * len(ops))


def test_decode_batch_turns_an_int_timestamp_into_a_float() -> None:
    (op,) = decode_batch(b'[1,5,"insert","t",1,{"id":1},null,null]')
    assert (float, 5.0) == (type(op.ts), op.ts)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b"{}",
        b"[1]",
        b'[1,0.0,"insert","t",1,null,null]',
        b'["1",0.0,"insert","t",1,null,null,null]',
        b'[1,"0","insert","t",1,null,null,null]',
        b'[1,0.0,7,"t",1,null,null,null]',
        b'[1,0.0,"insert",7,1,null,null,null]',
        b'[1,0.0,"insert","t",1,null,null,null,3,0.0,"insert","t",2,null,null,null]',
        b'[2,0.0,"insert","t",1,null,null,null,1,0.0,"insert","t",2,null,null,null]',
        b'[1,0.0,"insert","t",{"$int":"x"},null,null,null]',
        b'[true,0.0,"insert","t",1,null,null,null]',
    ],
    ids=[
        "not-json",
        "empty",
        "object",
        "not-an-op",
        "seven-fields",
        "str-lsn",
        "str-ts",
        "int-kind",
        "int-table",
        "lsn-gap",
        "lsn-backwards",
        "bad-tag",
        "bool-lsn",
    ],
)
def test_a_malformed_batch_is_refused(payload: bytes) -> None:
    with pytest.raises(WALError):
        decode_batch(payload)


def test_a_batch_holds_whole_ops_as_one_flat_json_array_of_8_fields_each() -> None:
    op = (3, 1.25, "update", "t", "k", {"id": "k", "v": 1}, {"id": "k"}, None)
    nxt = (4, 1.25, "delete", "t", "k", None, {"id": "k", "v": 1}, None)
    assert [*op, *nxt] == orjson.loads(encode_batch([op, nxt], [True, True]))


def test_a_payload_of_the_old_nested_shape_is_refused() -> None:
    with pytest.raises(WALError, match="not a multiple of 8"):
        decode_batch(b'[[1,0.0,"insert","t",1,null,null,null]]')


@pytest.mark.parametrize(
    ("key", "tagged"),
    [
        ("k", False),
        (2**63 - 1, False),
        (-(2**63), False),
        (2**63, False),  # a number orjson writes and reads back exactly
        (2**64, True),  # past what it writes: the whole batch is tagged
        (-(2**63) - 1, True),
        (b"k", True),
        (uuid.UUID(int=1), True),
        (dt.date(2020, 1, 1), True),
    ],
)
def test_the_log_decides_itself_when_a_key_needs_tags(key: Any, tagged: bool) -> None:
    # The owner vouches for the images and the meta (plain=True); a key that needs tags
    # gets them anyway, among plain operations with int or str keys, and comes back.
    odd = (2, 1.5, "insert", "t", key, {"id": 1}, None, None)
    for first_key in (1, "a"):
        ops = [(1, 1.5, "insert", "t", first_key, {"id": 1}, None, None), odd]
        payload = encode_batch(ops, [True, True])
        assert tagged == (orjson.loads(payload)[8:] != list(odd))
        assert [] == diff([list(op) for op in ops], [list(op) for op in decode_batch(payload)])


def test_create_and_drop_records_without_keys_are_not_tagged_for_their_key() -> None:
    ops = [
        (1, 1.5, "create", "t", None, {"primary_key": "id"}, None, None),
        (2, 1.5, "drop", "t", None, None, {"primary_key": "id"}, None),
    ]
    assert [*ops[0], *ops[1]] == orjson.loads(encode_batch(ops, [True, True]))

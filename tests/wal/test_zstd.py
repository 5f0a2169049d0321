"""Bounded zstandard: one frame in, at most the caller's bound out, and its refusals."""

# The suite asserts `expected == actual` (STYLE.md), which SIM300 calls a Yoda condition.

from __future__ import annotations

import random

import pytest
import zstandard

from wal import CodecError, compress, decompress


def test_decompress_accepts_a_frame_of_exactly_max_size() -> None:
    data = b"0123456789" * 100
    assert data == decompress(compress(data), max_size=len(data))


def test_decompress_refuses_a_frame_whose_header_claims_more_than_max_size() -> None:
    data = b"x" * 1001
    with pytest.raises(CodecError):
        decompress(compress(data), max_size=1000)


def _with_claimed_size(frame: bytes, claimed: int) -> bytes:
    """Rewrite the Frame_Content_Size field of a zstd frame header (RFC 8878 §3.1.1.1)."""
    descriptor = frame[4]
    fcs_flag, single_segment, dict_flag = descriptor >> 6, (descriptor >> 5) & 1, descriptor & 3
    pos = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[dict_flag]
    width = {0: 1 if single_segment else 0, 1: 2, 2: 4, 3: 8}[fcs_flag]
    assert width, "the frame records no content size"
    value = claimed - 256 if fcs_flag == 1 else claimed
    return frame[:pos] + value.to_bytes(width, "little") + frame[pos + width :]


@pytest.mark.parametrize(
    ("size", "claimed", "max_size"),
    [
        (2_048_000, 1000, 10_000),  # claims little, would produce far past max_size
        (2_048_000, 1000, 10**8),  # claims little, produces more, still under max_size
        (100_000, 100_005, 10**8),  # claims more than it holds
        (100_000, 99_999, 10**8),  # claims one byte less
        (10_240, 10_239, 10**8),
    ],
)
def test_decompress_refuses_a_frame_that_lies_about_its_size(
    size: int, claimed: int, max_size: int
) -> None:
    data = bytes(range(256)) * (size // 256)
    frame = _with_claimed_size(compress(data), claimed)
    with pytest.raises(CodecError):
        decompress(frame, max_size=max_size)


@pytest.mark.parametrize(
    "data",
    [b"", b"not zstd", b"\x28\xb5\x2f\xfd", b"\x28\xb5\x2f\xfd\x00\x00\x00\x00"],
    ids=repr,
)
def test_decompress_refuses_what_is_not_a_zstd_frame(data: bytes) -> None:
    with pytest.raises(CodecError):
        decompress(data, max_size=1 << 20)


@pytest.mark.parametrize("cut", [1, 5, 1000, 200_000])
def test_decompress_refuses_a_truncated_frame(cut: int) -> None:
    data = random.Random(cut).randbytes(300_000)
    frame = compress(data)
    with pytest.raises(CodecError):
        decompress(frame[:-cut], max_size=1 << 20)


def test_decompress_refuses_trailing_garbage_after_the_frame() -> None:
    frame = compress(b"abc" * 1000)
    with pytest.raises(CodecError):
        decompress(frame + b"garbage", max_size=1 << 20)


def test_decompress_refuses_a_frame_that_does_not_state_its_content_size() -> None:
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(b"abc" * 1000)
    with pytest.raises(CodecError, match="does not state its content size"):
        decompress(frame, max_size=1 << 20)


def _rle_frame(claimed: int, length: int) -> bytes:
    """A single-segment frame stating *claimed* bytes (in 8 bytes) that holds one RLE block of
    *length* spaces."""
    head = b"\x28\xb5\x2f\xfd\xe0" + claimed.to_bytes(8, "little")
    return head + ((length << 3) | 2 | 1).to_bytes(3, "little") + b" "


def test_decompress_reads_an_honest_rle_frame() -> None:
    assert b" " * 1000 == decompress(_rle_frame(1000, 1000), max_size=1000)


def test_decompress_refuses_a_frame_claiming_more_than_its_bytes_can_hold_unread() -> None:
    # 1 GiB claimed by a 17-byte frame, under the bound: no block structure holds that much.
    frame = _rle_frame(1 << 30, 1000)
    assert 17 == len(frame)
    with pytest.raises(CodecError, match="more than its bytes can hold"):
        decompress(frame, max_size=1 << 40)


@pytest.mark.parametrize("checksum", [False, True], ids=["plain", "checksum"])
def test_an_empty_frame_decompresses_to_nothing(checksum: bool) -> None:
    compressor = zstandard.ZstdCompressor(write_content_size=True, write_checksum=checksum)
    assert b"" == decompress(compressor.compress(b""), max_size=0)


@pytest.mark.parametrize(
    "frame",
    [
        compress(b"") + b"x",  # trailing garbage: zstandard returns b"" for it, unread
        compress(b"") + compress(b""),
        compress(b"") + compress(b"abc"),
        compress(b"")[:-1],
        _rle_frame(0, 10),
        _rle_frame(0, 100_000),
    ],
    ids=["garbage", "two-empty", "then-data", "truncated", "rle-10", "rle-100000"],
)
def test_a_frame_claiming_no_content_is_read_all_the_same(frame: bytes) -> None:
    with pytest.raises(CodecError):
        decompress(frame, max_size=1 << 20)

"""Zstandard compression with a bound: one frame in, at most a caller-given size out.

A frame (RFC 8878) is written whole by `compress` and states its content size in its header.
`decompress` reads back exactly one such frame and refuses, by `CodecError`:

- bytes that are not one frame: no magic, a bad header, a truncated frame, bytes after it;
- a frame that does not state its content size, or states more than the caller's bound or
  than its own bytes could hold (a block yields at most 128 KiB, and one that yields
  anything takes at least 4 bytes): refused from the header alone, before any output is
  allocated;
- a frame that yields more or less than it states: the output is allocated once, at the
  stated size, and decompression stops when it is full.
"""

from __future__ import annotations

from typing import Final

import zstandard

from wal.errors import CodecError

#: The first four bytes of every zstandard frame.
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"

#: The most output one byte of a frame can stand for: a block yields at most 128 KiB
#: (Block_Maximum_Size), and one that yields anything takes at least 4 bytes (a 3-byte
#: header, then an RLE block's one byte; a compressed block needs more bytes for as much).
_MAX_RATIO: Final = (128 << 10) // 4

#: The most bytes a frame of no content takes: its largest header (18 bytes), one empty
#: block (3) and a checksum (4).
_EMPTY_FRAME_MAX: Final = 25


def compress(data: bytes | bytearray | memoryview, level: int = 3) -> bytes:
    """Compress into one zstandard frame that states its content size."""
    return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(data)


def decompress(data: bytes | bytearray, max_size: int) -> bytes:
    """Decompress one zstandard frame, refusing to produce more than *max_size* bytes.

    Args:
        data: exactly one frame, stating its content size.
        max_size: the largest content size accepted.

    Returns:
        The frame's content.

    Raises:
        CodecError: not one zstandard frame, corrupt, or stating (or holding) more than
            *max_size* bytes or than it states.
    """
    if not data.startswith(ZSTD_MAGIC):
        raise CodecError("not a zstandard frame")
    try:
        size = zstandard.frame_content_size(data)
    except zstandard.ZstdError as exc:
        raise CodecError(f"corrupt zstandard frame header: {exc}") from None
    if size < 0:
        raise CodecError("zstandard frame does not state its content size")
    if size > max_size:
        raise CodecError(f"zstandard frame claims {size} bytes, over the {max_size} limit")
    if size > len(data) * _MAX_RATIO:
        raise CodecError(f"zstandard frame claims {size} bytes, more than its bytes can hold")
    if size == 0:
        return _decompress_empty(data)
    try:
        out: bytes = zstandard.ZstdDecompressor().decompress(
            data, max_output_size=size, allow_extra_data=False
        )
    except zstandard.ZstdError as exc:
        raise CodecError(f"corrupt zstandard data: {exc}") from None
    return out


def _decompress_empty(data: bytes | bytearray) -> bytes:
    # `ZstdDecompressor.decompress` returns b"" for a frame stating no content without
    # reading it: whatever follows the header, however long, would pass. Such a frame is
    # tiny, so it is checked by a decompression object, whose output is bounded by its size.
    if len(data) > _EMPTY_FRAME_MAX:
        raise CodecError(f"zstandard frame claims 0 bytes but takes {len(data)}")
    reader = zstandard.ZstdDecompressor().decompressobj()
    try:
        out = reader.decompress(data)
    except zstandard.ZstdError as exc:
        raise CodecError(f"corrupt zstandard data: {exc}") from None
    if out:
        raise CodecError("zstandard frame holds bytes, not its stated 0")
    if not reader.eof:
        raise CodecError("truncated zstandard frame")
    if reader.unused_data:
        raise CodecError("bytes after the end of the zstandard frame")
    return b""

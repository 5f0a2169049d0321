"""Files that appear atomically and carry a checksum.

Atomic publication (`write_atomic`): write a temp file in the same directory (name
``.<final>.<random>.tmp``), flush, fsync, then ``os.replace`` (or ``os.link`` when the final
name must not already exist), then fsync the directory. On any failure the temp file is
removed and no final name is created. A crash leaves at worst a ``.tmp`` leftover, which
readers ignore.

Envelope (`seal` / `unseal`): every file ends with a trailer holding the SHA-256 of all the
bytes before it.

- JSON: the document is a JSON object whose last member is ``"checksum"``; the file ends with
  exactly ``,"checksum":"sha256:<64 hex>"}`` and a newline, and the digest covers every byte
  before that comma. The file stays standard JSON.
- pickle: the pickle stream, then ``\\n#dictdb-sha256:<64 hex>\\n``; the digest covers the
  stream.
- Either may then be compressed whole into one zstandard frame (name suffix ``.zst``);
  decompression is bounded.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final, TypeAlias

from dictdb.errors import CorruptFileError
from wal import CodecError
from wal.codec import ZSTD_MAGIC, compress, decompress
from wal.directory import fsync_directory

_JSON_HEAD: Final = b',"checksum":"sha256:'
_JSON_TAIL: Final = b'"}\n'
_PICKLE_HEAD: Final = b"\n#dictdb-sha256:"
_PICKLE_TAIL: Final = b"\n"
_HEX: Final = 64

#: The largest decompressed size accepted when reading a compressed file (bytes).
MAX_DECOMPRESSED: Final = 1 << 34

#: A file's content as consecutive pieces, written one after the other: a large snapshot is
#: never joined into one buffer (each join of a 55 MB document costs ~20 ms and its memory).
Parts: TypeAlias = Sequence[bytes | memoryview]


def write_atomic(path: Path, data: bytes | Parts, *, overwrite: bool = True) -> None:
    """Publish *data* under *path* atomically and durably.

    Args:
        path: the final name.
        data: the whole content, as one buffer or as consecutive pieces.
        overwrite: replace an existing file (True) or fail if one exists (False).

    Raises:
        FileExistsError: *overwrite* is False and *path* exists.
        OSError: any I/O failure. No temp file is left, and *path* is as it was before the
            call: a failure after the new file took the name (the directory fsync) puts the
            old file back (kept meanwhile under a second hard link) or removes the new one.
    """
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    keep: Path | None = None  # the old file, while the new one is not yet durable
    published = False
    try:
        with os.fdopen(fd, "wb") as handle:
            for part in [data] if isinstance(data, bytes) else _coalesced(data):
                handle.write(part)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            if path.exists():
                keep = tmp.with_name(tmp.name[: -len(".tmp")] + ".old.tmp")
                os.link(path, keep)
            os.replace(tmp, path)
            published = True
        else:
            os.link(tmp, path)  # fails atomically if the name exists
            published = True
            os.unlink(tmp)
        fsync_directory(directory)
        if keep is not None:
            os.unlink(keep)  # a failure here still puts the old file back: all or nothing
            keep = None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if published:
            with contextlib.suppress(OSError):
                if keep is not None:
                    os.replace(keep, path)
                    keep = None
                else:
                    os.unlink(path)
            with contextlib.suppress(OSError):
                fsync_directory(directory)
        raise
    finally:
        if keep is not None:  # only when putting the old file back failed too
            with contextlib.suppress(OSError):
                os.unlink(keep)


#: Pieces smaller than this are joined before they are written (one write call per piece of
#: at least this size; a small file is one write).
WRITE_FLOOR: Final = 1 << 16


def _coalesced(parts: Parts) -> Iterator[bytes | memoryview]:
    pending: list[bytes | memoryview] = []
    size = 0
    for part in parts:
        if len(part) >= WRITE_FLOOR:
            if pending:
                yield b"".join(pending)
                pending, size = [], 0
            yield part
            continue
        pending.append(part)
        size += len(part)
        if size >= WRITE_FLOOR:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def seal(body: bytes | Parts, file_format: str, compression: str | None) -> bytes:
    """Append the checksum trailer to *body* and compress if asked; one buffer.

    For JSON, *body* is a JSON object text *without* its closing brace.
    """
    return b"".join(seal_parts(body, file_format, compression))


def seal_parts(
    body: bytes | Parts, file_format: str, compression: str | None
) -> list[bytes | memoryview]:
    """`seal`, returning the file's content as pieces (nothing joined unless compressed)."""
    parts: list[bytes | memoryview] = [body] if isinstance(body, bytes) else list(body)
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part)
    digest = hasher.hexdigest().encode("ascii")
    if file_format == "json":
        parts += (_JSON_HEAD, digest, _JSON_TAIL)
    else:
        parts += (_PICKLE_HEAD, digest, _PICKLE_TAIL)
    return [compress(b"".join(parts))] if compression == "zstd" else parts


def unseal(path: Path, data: bytes, file_format: str, compressed: bool) -> bytes:
    """Check a file's trailer and return the bytes to decode.

    For JSON the whole (valid JSON) text is returned; for pickle, the stream alone.

    Raises:
        CorruptFileError: not compressed as named, too large, truncated, or the checksum does
            not match.
    """
    if compressed:
        if not data.startswith(ZSTD_MAGIC):
            raise CorruptFileError(path, "named .zst but not a zstandard frame")
        try:
            data = decompress(data, MAX_DECOMPRESSED)
        except CodecError as exc:
            raise CorruptFileError(path, exc.reason) from None
    elif data.startswith(ZSTD_MAGIC):
        raise CorruptFileError(path, "compressed data in a file not named .zst")
    if file_format == "json":
        head, tail, keep_tail = _JSON_HEAD, _JSON_TAIL, True
    else:
        head, tail, keep_tail = _PICKLE_HEAD, _PICKLE_TAIL, False
    size = len(head) + _HEX + len(tail)
    if len(data) < size or not data.endswith(tail) or data[-size : -size + len(head)] != head:
        raise CorruptFileError(path, "truncated or damaged: the checksum trailer is missing")
    body = data[:-size]
    expected = data[-size + len(head) : -len(tail)]
    actual = hashlib.sha256(body).hexdigest().encode("ascii")
    if actual != expected:
        raise CorruptFileError(path, "checksum mismatch: the file is damaged")
    return data if keep_tail else body

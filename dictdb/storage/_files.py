"""Files that appear atomically and carry a checksum.

Atomic publication goes through a storage target (`dictdb.storage.target`): on a local
directory, a temp file in the same directory (name ``.<final>.<random>.tmp``), flushed,
fsynced, then ``os.replace`` (or ``os.link`` when the final name must not already exist),
then the directory fsynced. On any failure the temp file is removed and no final name is
created. A crash leaves at worst a ``.tmp`` leftover, which readers ignore.

Envelope (`SealedFile`, or `seal` / `unseal`): every file ends with a trailer holding the
SHA-256 of all the bytes before it.

- JSON: the document is a JSON object whose last member is ``"checksum"``; the file ends with
  exactly ``,"checksum":"sha256:<64 hex>"}`` and a newline, and the digest covers every byte
  before that comma. The file stays standard JSON.
- pickle: the pickle stream, then ``\\n#dictdb-sha256:<64 hex>\\n``; the digest covers the
  stream.
- Either may then be compressed whole into one zstandard frame (name suffix ``.zst``);
  decompression is bounded.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, TypeAlias

from dictdb.errors import CorruptFileError, CorruptJSONError, CorruptPickleError
from dictdb.storage.target import Located, ObjectWriter
from wal import (
    ZSTD_MAGIC,
    CodecError,
    compress,
    decompress,
)

_JSON_HEAD: Final = b',"checksum":"sha256:'
_JSON_TAIL: Final = b'"}\n'
_PICKLE_HEAD: Final = b"\n#dictdb-sha256:"
_PICKLE_TAIL: Final = b"\n"
_HEX: Final = 64


def _decompression_cap() -> int:
    # A quarter of the machine's memory (at least 256 MiB, at most 16 GiB): a file whose
    # content is larger could not be loaded here anyway (its rows take several times its
    # size), and a hostile frame can make a load allocate no more than that.
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 1 << 34
    return max(1 << 28, min(1 << 34, total // 4))


#: The largest decompressed size accepted when reading a compressed file (bytes): a quarter
#: of this machine's memory, within [256 MiB, 16 GiB].
MAX_DECOMPRESSED: Final = _decompression_cap()

Buffer: TypeAlias = bytes | bytearray | memoryview

#: Pieces are gathered into buffers of at least this many bytes before they are hashed and
#: written (a small file is one write). Each hash update or write of a large buffer releases
#: the GIL, and against a thread that keeps the interpreter busy (an application inserting
#: rows) each release costs the snapshot's thread up to a switch interval (5 ms) to get it
#: back. Measured at a million rows against one inserting thread: a backup thread hashing and
#: writing ~1,000 pieces of 55 KB took 9.7 s (0.46 s alone); in 8 MiB pieces, ~1 s.
PIECE_FLOOR: Final = 8 << 20


class Pieces:
    """Gathers buffers into pieces of at least `PIECE_FLOOR` bytes, each handed to *sink*
    when complete (a buffer that large, arriving when no piece is begun, is handed on as it
    is, uncopied).

    A smaller buffer is copied into the current piece at once, so that its memory is free
    again for the next one (still in the CPU cache, no fresh pages to fault in).
    """

    __slots__ = ("_current", "_sink")

    def __init__(self, sink: Callable[[Buffer], None]) -> None:
        self._sink = sink
        self._current = bytearray()

    def append(self, data: Buffer) -> None:
        current = self._current
        if not current and len(data) >= PIECE_FLOOR:
            self._sink(data)
            return
        current += data
        if len(current) >= PIECE_FLOOR:
            self._sink(current)
            self._current = bytearray()

    def extend(self, items: Iterable[Buffer]) -> None:
        for data in items:
            self.append(data)

    def rest(self) -> bytearray:
        """Take the incomplete last piece (possibly empty)."""
        current, self._current = self._current, bytearray()
        return current


class SealedFile:
    """A sealed file (checksum trailer, see above) published atomically (`dictdb._atomic`),
    written while its content is still being produced.

    The producer appends its buffers to `out`. Each complete piece (`PIECE_FLOOR`) goes to
    a helper thread that hashes and writes it while the producer encodes the next one:
    hashing and writing release the GIL, so they overlap the encoding (at a million rows,
    ~100 ms of a ~500 ms JSON save). A file smaller than a piece is written at the end, in
    one write, without a thread. Compressed files are gathered and compressed whole at the
    end (one zstandard frame with its size).

    As a context manager: publishes on a normal exit, discards everything on an exception.
    """

    def __init__(
        self,
        where: Located,
        file_format: str,
        compression: str | None,
        *,
        overwrite: bool = True,
    ) -> None:
        self.where = where
        self._format = file_format
        self._overwrite = overwrite
        self._compressed = compression == "zstd"
        self._hasher = hashlib.sha256()
        self._kept: list[Buffer] = []  # compressed files: the whole content until the end
        self._temp: ObjectWriter | None = None
        # The helper thread and its queue, from the first complete piece until stopped.
        self._queue: queue.Queue[Buffer | None] | None = None
        self._helper: threading.Thread | None = None
        self._error: BaseException | None = None  # the helper's failure
        self.out = Pieces(self._piece)

    def __enter__(self) -> SealedFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self.publish()
        else:
            self.abort()

    def _piece(self, piece: Buffer) -> None:
        if self._compressed:
            self._kept.append(piece)
            return
        if self._error is not None:
            raise self._error  # stop producing: the file cannot be written
        if self._queue is None:
            self._temp = self._create()
            self._queue = queue.Queue(maxsize=2)
            self._helper = threading.Thread(
                target=self._work, args=(self._queue,), name="dictdb-write", daemon=True
            )
            self._helper.start()
        self._queue.put(piece)

    def _work(self, pieces: queue.Queue[Buffer | None]) -> None:
        assert self._temp is not None
        write, update = self._temp.write, self._hasher.update
        while (piece := pieces.get()) is not None:
            if self._error is None:  # after a failure, only drain (the producer never blocks)
                try:
                    update(piece)
                    write(piece)
                except BaseException as exc:
                    self._error = exc

    def _create(self) -> ObjectWriter:
        return self.where.target.create(self.where.name, overwrite=self._overwrite)

    def _stop_helper(self) -> None:
        if self._queue is not None and self._helper is not None:
            self._queue.put(None)
            self._helper.join()
            self._queue = self._helper = None

    def abort(self) -> None:
        """Remove the temp file, if any; the final name is untouched."""
        self._stop_helper()
        if self._temp is not None:
            self._temp.discard()
            self._temp = None

    def publish(self) -> None:
        """Write what remains and the trailer, then publish (see `dictdb.storage.target`).

        Raises:
            FileExistsError: *overwrite* is False and the final name exists.
            OSError: any I/O failure (the helper's included): nothing is left behind.
        """
        try:
            self._stop_helper()
            if self._error is not None:
                raise self._error
            pieces = [*self._kept, self.out.rest()]  # (nothing kept unless compressed)
            self._kept = []
            for piece in pieces:
                self._hasher.update(piece)
            pieces.append(_trailer(self._hasher, self._format))
            data = b"".join(pieces)
            if self._temp is None:
                self._temp = self._create()
            self._temp.write(compress(data) if self._compressed else data)
        except BaseException:
            self.abort()
            raise
        temp, self._temp = self._temp, None
        temp.publish()


def _trailer(hasher: Any, file_format: str) -> bytes:
    # The checksum trailer, from the SHA-256 of everything before it.
    head, tail = (_JSON_HEAD, _JSON_TAIL) if file_format == "json" else (_PICKLE_HEAD, _PICKLE_TAIL)
    hexdigest: str = hasher.hexdigest()
    return head + hexdigest.encode("ascii") + tail


def seal(body: bytes, file_format: str, compression: str | None) -> bytes:
    """The content of a sealed file: *body*, its checksum trailer, compressed if asked (what
    `SealedFile` writes, as one buffer).

    For JSON, *body* is a JSON object text *without* its closing brace.
    """
    data = body + _trailer(hashlib.sha256(body), file_format)
    return compress(data) if compression == "zstd" else data


def has_trailer(content: Buffer, file_format: str) -> bool:
    """Whether *content* (uncompressed) ends with the checksum trailer of *file_format*."""
    if file_format == "json":
        head, tail = _JSON_HEAD, _JSON_TAIL
    else:
        head, tail = _PICKLE_HEAD, _PICKLE_TAIL
    size = len(head) + _HEX + len(tail)
    return (
        len(content) >= size
        and bytes(content[-size : -size + len(head)]) == head
        and bytes(content[-len(tail) :]) == tail
    )


def recorded_checksum(path: Path, file_format: str) -> str | None:
    """The hex SHA-256 an uncompressed file's trailer records, read from its last bytes only
    (None: no trailer there). It is not checked against the content."""
    head, tail = (_JSON_HEAD, _JSON_TAIL) if file_format == "json" else (_PICKLE_HEAD, _PICKLE_TAIL)
    size = len(head) + _HEX + len(tail)
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - size))
        last = handle.read()
    if not has_trailer(last, file_format):
        return None
    return last[len(head) : len(head) + _HEX].decode("ascii", "replace")


def unseal(path: Path, data: bytes, file_format: str, compressed: bool) -> Buffer:
    """Check a file's trailer and return the bytes to decode.

    For JSON the whole (valid JSON) text is returned; for pickle, the streams alone (a view of
    the file's bytes, not a copy).

    Raises:
        CorruptFileError: not compressed as named, too large, truncated, or the checksum does
            not match.
    """
    content: bytes | bytearray = data
    if compressed:
        if not data.startswith(ZSTD_MAGIC):
            raise CorruptFileError(path, "named .zst but not a zstandard frame")
        try:
            content = decompress(data, MAX_DECOMPRESSED)
        except CodecError as exc:
            raise CorruptFileError(path, exc.reason) from None
    elif data.startswith(ZSTD_MAGIC):
        raise CorruptFileError(path, "compressed data in a file not named .zst")
    if file_format == "json":
        head, tail, keep_tail = _JSON_HEAD, _JSON_TAIL, True
    else:
        head, tail, keep_tail = _PICKLE_HEAD, _PICKLE_TAIL, False
    size = len(head) + _HEX + len(tail)
    if (
        len(content) < size
        or not content.endswith(tail)
        or content[-size : -size + len(head)] != head
    ):
        kind = CorruptJSONError if file_format == "json" else CorruptPickleError
        raise kind(path, "truncated or damaged: the checksum trailer is missing")
    body = memoryview(content)[:-size]  # not a copy
    expected = content[-size + len(head) : -len(tail)]
    actual = hashlib.sha256(body).hexdigest().encode("ascii")
    if actual != expected:
        raise CorruptFileError(path, "checksum mismatch: the file is damaged")
    return content if keep_tail else body

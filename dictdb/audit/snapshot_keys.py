"""Key indexes of full snapshots: where one record's row lies in a snapshot file.

Without a durable log, a record's history reads every full snapshot of the directory: each one
is the only record of the stretch before it, and a snapshot is one JSON document, parsed
whole. Beside a local JSON snapshot ``dictdb_backup_<...>.json`` may lie
``dictdb_backup_<...>.json.keys``, which maps the 32-bit token of each (table, key)
(`wal.key_token`) to the byte range of its row in the file, with the row's CRC-32C. It is a
cache like the log's key indexes (`wal.keyindex`):

- written on request (`index_snapshots`, ``python -m dictdb index``), atomically, never by a
  read; retention deletes it with its snapshot;
- bound to its snapshot (the file's size and the SHA-256 its trailer records), and
  checksummed (CRC-32C of everything before its last 4 bytes);
- a row read through it must have the recorded CRC-32C and the key asked for; anything wrong
  is a `wal.KeyIndexWarning` and the snapshot is read whole as before, so the answer never
  depends on the index. Damage elsewhere in the snapshot is `verify`'s to find.

Compressed and pickle snapshots have no index (their rows have no byte range of their own).

Layout (integers little-endian), so that a lookup reads a few KiB, not the whole index:

    magic ``b"DICTDBSX"`` (8), version (4), header length H (4), the header (H bytes of
    JSON: the file's ``size`` and ``checksum``, its ``tables`` (name -> primary key) and, for
    a delta, the tables its DDL names), N entries (8), K blocks (4), the first token of each
    block (4 each) and each block's CRC-32C (4 each), then the CRC-32C of all of the above;
    then the K blocks of at most `BLOCK` entries in token order, each: tokens (4 each), the
    rows' offsets (8 each), lengths (4 each) and CRC-32Cs (4 each). A delta's entries have no
    byte range (0): a delta is small, and read whole when it holds the key.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import struct
import warnings
from array import array
from collections.abc import Callable
from itertools import accumulate, repeat
from pathlib import Path
from typing import Any, Final, TypeVar

import crc32c as _crc32c
import orjson

from dictdb.audit._common import log_start
from dictdb.storage._files import recorded_checksum  # the trailer's layout lives there
from dictdb.storage.catalog import BackupFile, scan
from dictdb.storage.names import KEY_INDEX_SUFFIX
from dictdb.storage.persist import read_document
from dictdb.storage.target import Target, as_target
from wal import (
    KeyIndexWarning,
    from_little_endian,
    from_plain,
    key_token,
    key_tokens,
    to_little_endian,
)

MAGIC: Final = b"DICTDBSX"
VERSION: Final = 1
SUFFIX: Final = KEY_INDEX_SUFFIX
_HEAD = struct.Struct("<8sII")
_SIZES = struct.Struct("<QI")
_crc = _crc32c.crc32c
_RECORDS: Final = b'"records":['
_T = TypeVar("_T")


class _Unusable(Exception):
    """The index cannot serve this read (absent: silently; otherwise with a warning)."""


def _local_path(f: BackupFile) -> Path | None:
    # The file's path when it is a local, uncompressed JSON file (the only kind indexed).
    if not f.path.name.endswith(".json"):
        return None
    local = f.where.target.local_directory()
    return None if local is None else local / f.where.name


def _checksum(path: Path) -> str:
    # The SHA-256 the file's trailer records (its last bytes only: not checked here).
    checksum = recorded_checksum(path, "json")
    if checksum is None:
        raise _Unusable("the file has no checksum trailer where the index expects it")
    return checksum


def build(f: BackupFile) -> bytes | None:
    """The key index of snapshot *f* (None: not a local JSON snapshot, or its rows are not
    laid out as this reader expects, so it gets no index).

    Raises:
        CorruptFileError: the snapshot is damaged.
    """
    path = _local_path(f)
    if path is None:
        return None
    raw = path.read_bytes()
    doc = read_document(f.where)  # checks the checksum, the header and the body's shape
    if not f.is_full:
        return _delta_index(path, raw, doc)
    entries: list[tuple[int, int, int, int]] = []
    tables: dict[str, str] = {}
    at = 0
    for name, tdoc in doc["tables"].items():
        pk = tdoc["primary_key"]
        tables[name] = pk
        start = raw.find(_RECORDS, at)
        if start < 0:
            return None
        at = start + len(_RECORDS)
        records = tdoc["records"]
        # The rows as the writer encoded them, checked against the file's bytes in one piece;
        # each row's length and CRC from encodings made and dropped one at a time (keeping
        # 300k encoded rows alive cost ~4 µs each in allocations).
        whole = orjson.dumps(records)
        lengths = list(map(len, map(orjson.dumps, records)))
        commas = max(len(lengths) - 1, 0)
        if not raw.startswith(whole[1:], at) or sum(lengths) + commas + 2 != len(whole):
            return None  # not laid out as this reader expects: no index
        offsets = list(accumulate([at, *(n + 1 for n in lengths[:-1])])) if records else []
        crcs = map(_crc, map(orjson.dumps, records))
        try:
            keys = list(map(dict.get, records, repeat(pk)))
        except TypeError:  # not rows (`read_document` checks shapes; this reader assumes none)
            return None
        for i in tdoc.get("special", []):
            row = from_plain(records[i])
            keys[i] = row.get(pk) if type(row) is dict else None
        entries += zip(key_tokens(name, keys), offsets, lengths, crcs, strict=True)
        at += len(whole) - 1
    return _encode(raw, path, {"tables": tables}, entries)


def _delta_index(path: Path, raw: bytes, doc: dict[str, Any]) -> bytes:
    # A delta's index holds the tokens of the keys it changes and the tables its DDL names.
    tokens: set[int] = set()
    tables: dict[str, str] = {}
    for name, change in doc["tables"].items():
        pk = change.get("primary_key", "id")
        tables[name] = pk
        for plain in change.get("upserts", []):
            row = from_plain(plain)
            tokens.add(key_token(name, row.get(pk) if type(row) is dict else None))
        tokens.update(key_token(name, from_plain(k)) for k in change.get("deletes", []))
    ddl = sorted({event["table"] for event in doc.get("ddl", [])})
    return _encode(raw, path, {"tables": tables, "ddl": ddl}, [(t, 0, 0, 0) for t in tokens])


#: Entries per block: a lookup reads and checks one block (20 KiB) per file, or two.
BLOCK: Final = 1024
_BLOCK_BYTES: Final = 20


def _encode(
    raw: bytes, path: Path, header: dict[str, Any], entries: list[tuple[int, int, int, int]]
) -> bytes:
    entries.sort()
    head = orjson.dumps({"size": len(raw), "checksum": _checksum(path), **header})
    blocks = []
    for at in range(0, len(entries), BLOCK):
        part = entries[at : at + BLOCK]
        blocks.append(
            b"".join(
                to_little_endian(array(code, [e[i] for e in part]))
                for i, code in enumerate(("I", "Q", "I", "I"))
            )
        )
    fences = array("I", [entries[at][0] for at in range(0, len(entries), BLOCK)])
    directory = b"".join(
        [
            _HEAD.pack(MAGIC, VERSION, len(head)),
            head,
            _SIZES.pack(len(entries), len(blocks)),
            to_little_endian(fences),
            to_little_endian(array("I", [_crc(block) for block in blocks])),
        ]
    )
    return b"".join([directory, struct.pack("<I", _crc(directory)), *blocks])


class _Index:
    """A key index's directory, read and checked; its blocks are read on demand."""

    def __init__(self, path: Path, index_file: Path) -> None:
        # _Unusable: absent, damaged, or not built for the file at *path*.
        try:
            handle = open(index_file, "rb")  # noqa: SIM115 - kept open for the lookups
        except FileNotFoundError:
            raise _Unusable("") from None
        except OSError as exc:
            raise _Unusable(f"unreadable: {exc}") from None
        self.handle = handle
        try:
            self._read_directory(path)
        except BaseException:
            handle.close()
            raise

    def _read_directory(self, path: Path) -> None:
        head = self.handle.read(_HEAD.size)
        if len(head) < _HEAD.size or head[:8] != MAGIC:
            raise _Unusable("not a key index")
        _, version, head_len = _HEAD.unpack(head)
        if version != VERSION:
            raise _Unusable(f"format version {version} (this reader knows {VERSION})")
        rest = self.handle.read(head_len + _SIZES.size)
        if len(rest) != head_len + _SIZES.size:
            raise _Unusable("truncated")
        self.count, nblocks = _SIZES.unpack_from(rest, head_len)
        if nblocks != -(-self.count // BLOCK):
            raise _Unusable("its block count does not match its entry count")
        tail = self.handle.read(8 * nblocks + 4)
        if len(tail) != 8 * nblocks + 4:
            raise _Unusable("truncated")
        directory = head + rest + tail[:-4]
        if struct.unpack("<I", tail[-4:])[0] != _crc(directory):
            raise _Unusable("checksum mismatch")
        self.header: dict[str, Any] = orjson.loads(rest[:head_len])
        self.fences = from_little_endian("I", tail[: 4 * nblocks])
        self.crcs = from_little_endian("I", tail[4 * nblocks : 8 * nblocks])
        self.start = len(directory) + 4
        size = path.stat().st_size
        if self.header["size"] != size or self.header["checksum"] != _checksum(path):
            raise _Unusable("the file is not the one it was built for")

    def close(self) -> None:
        self.handle.close()

    def find(self, token: int) -> list[tuple[int, int, int]]:
        """(offset, length, CRC-32C) of each entry with *token*, its blocks checked."""
        found: list[tuple[int, int, int]] = []
        first = max(0, bisect.bisect_left(self.fences, token) - 1)
        for number in range(first, len(self.fences)):
            if self.fences[number] > token:
                break
            tokens, offsets, lengths, crcs = self._block(number)
            lo = bisect.bisect_left(tokens, token)
            hi = bisect.bisect_right(tokens, token, lo)
            found += zip(offsets[lo:hi], lengths[lo:hi], crcs[lo:hi], strict=True)
        return found

    def _block(self, number: int) -> list[array[int]]:
        entries = min(BLOCK, self.count - number * BLOCK)
        self.handle.seek(self.start + number * BLOCK * _BLOCK_BYTES)
        data = self.handle.read(entries * _BLOCK_BYTES)
        if len(data) != entries * _BLOCK_BYTES or _crc(data) != self.crcs[number]:
            raise _Unusable(f"block {number} is damaged")
        columns, at = [], 0
        for code, width in (("I", 4), ("Q", 8), ("I", 4), ("I", 4)):
            columns.append(from_little_endian(code, data[at : at + width * entries]))
            at += width * entries
        return columns


def rows(f: BackupFile, table: str, key: Any) -> list[tuple[Any, dict[str, Any]]] | None:
    """``(its key, row)`` for each row of *table* whose key equals *key* in snapshot *f*,
    read through its key index: None when there is no usable index (a damaged or stale one is
    warned about); the caller then reads the snapshot whole."""

    def read(index: _Index, path: Path) -> list[tuple[Any, dict[str, Any]]]:
        pk = index.header["tables"].get(table)
        if pk is None:
            return []
        found: list[tuple[Any, dict[str, Any]]] = []
        with open(path, "rb") as handle:
            for offset, length, crc in index.find(key_token(table, key)):
                handle.seek(offset)
                text = handle.read(length)
                if _crc(text) != crc:
                    raise _Unusable(f"the row at offset {offset} changed since it was indexed")
                row = from_plain(orjson.loads(text))
                if type(row) is dict and row.get(pk) == key:
                    found.append((row[pk], row))
        return found

    return _through_index(f, read, None) if f.is_full else None


def delta_may_hold(f: BackupFile, table: str, key: Any) -> bool:
    """Whether delta *f* may change record *key* of *table* or name *table* in its DDL: False
    only when its key index says it does not (no usable index: True, a damaged or stale one
    warned about)."""

    def read(index: _Index, _: Path) -> bool:
        return table in index.header["ddl"] or bool(index.find(key_token(table, key)))

    return _through_index(f, read, True)


def _through_index(f: BackupFile, read: Callable[[_Index, Path], _T], default: _T) -> _T:
    # *read* with *f*'s key index, or *default* without a usable one (a damaged or stale one
    # warned about: the caller reads the file whole).
    path = _local_path(f)
    if path is None:
        return default
    index_file = path.with_name(path.name + SUFFIX)
    try:
        index = _Index(path, index_file)
        try:
            return read(index, path)
        finally:
            index.close()
    except (_Unusable, ValueError, KeyError, TypeError, OSError) as exc:
        if str(exc):  # (an absent index is no news)
            warnings.warn(
                f"{index_file}: key index not used ({exc}); the file is read whole",
                KeyIndexWarning,
                stacklevel=4,
            )
        return default


def index_snapshots(
    backup_dir: str | Path | Target, *, storage_options: dict[str, Any] | None = None
) -> tuple[int, int]:
    """Write the key index of every local JSON backup file (full snapshot or delta) that has
    no up-to-date one and that history may read: not those whose operations a durable log in
    the directory holds one by one (for a cron job, beside `dictdb.audit.index_log`).

    Returns:
        (files indexed, files already up to date).

    Raises:
        CorruptFileError: a damaged file.
    """
    target = as_target(backup_dir, storage_options)
    log_from = log_start(target)
    done = fresh = 0
    for f in scan(target).files:
        path = _local_path(f)
        if path is None or (log_from is not None and f.first_lsn >= log_from):
            continue  # not indexed, or the log has these operations one by one
        index_file = path.with_name(path.name + SUFFIX)
        try:
            _Index(path, index_file).close()
            fresh += 1
            continue
        except (_Unusable, ValueError, KeyError, TypeError, OSError):
            pass  # absent, damaged or stale: written again
        try:
            data = build(f)
        except FileNotFoundError:
            continue  # deleted meanwhile (retention)
        if data is None:
            continue
        temporary = index_file.with_name(f".{index_file.name}.{os.getpid()}.tmp")
        try:
            temporary.write_bytes(data)
            os.replace(temporary, index_file)
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink()
            continue
        done += 1
    return done, fresh

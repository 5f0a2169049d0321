"""Full snapshots and compacted deltas of a `DictDB`, in JSON or pickle, optionally zstd.

Full snapshot (``type: "full"``)::

    {"format": "dictdb", "version": 2, "type": "full", "lsn": 120, "timestamp": <epoch>,
     "last_op_ts": <epoch of operation 120>,
     "tables": {"users": {"primary_key": "id", "schema": null | {field: type name},
                          "next_pk": 43,
                          "records": [
     {"id": 1, "name": "Alice"},
     ...
     ], "special": [indexes of records holding tags]}},
     "digest": {"users": [42, "<sum hex>"]},
     "checksum": "sha256:<hex>"}

Delta (``type: "delta"``), the seed's shape plus what restore needs::

    {"format": "dictdb", "version": 2, "type": "delta", "timestamp": <epoch>,
     "from_lsn": 121, "to_lsn": 180, "last_op_ts": <epoch>,
     "ddl": [{"lsn": 130, "op": "drop", "table": "old"},
             {"lsn": 131, "op": "create", "table": "t", "primary_key": "id", "schema": null}],
     "tables": {"users": {"primary_key": "id", "upserts": [<full rows>], "deletes": [<keys>],
                          "next_pk": 50}},
     "digest": {...}, "checksum": "sha256:<hex>"}

Values use `wal.tags`' tags. A pickle file holds the same document as two pickle streams:
the header (the members before ``tables`` / ``ddl``) as a dict, then the rest as one bytes
object holding a JSON object (`dictdb.storage._pickle.pickle_blob_head`), so that any
unpickler reads it, and dictdb reads the body with no unpickler at all. Both end with the
checksum trailer of `dictdb.storage._files`.

Versions: 2 is written. 1 is read too: its JSON files are the same, its pickle files held the
body as a pickled tree, read by the restricted unpickler after a pass that admits only the
opcodes plain data needs (`dictdb.storage._pickle`: several times slower than version 2's
JSON body, and safe), then walked (`dictdb.storage._pickle.check_plain`).

Deltas chain: each starts at the LSN after the previous full snapshot or delta *written by this
process for this database* (the backup cursor). Every full snapshot moves the cursor; a delta
moves it too, and the journal is released up to it.
"""

from __future__ import annotations

import io
import logging
import os
import time
import zlib
from collections.abc import Iterator, Mapping
from itertools import chain, islice
from pathlib import Path
from typing import Any, Final, cast

import attrs
import orjson
import zstandard

from dictdb._engine import Engine, HasEngine, Lock, TableState, normalize_definition
from dictdb._values import INT64_MAX, PK_TYPES, check_primary_key, own_record, row_hash
from dictdb.errors import (
    CorruptFileError,
    CorruptJSONError,
    CorruptPickleError,
    DictDBError,
    LegacyFileError,
    SchemaValidationError,
    StateError,
)
from dictdb.schema import validate_record
from dictdb.storage import _digest
from dictdb.storage._files import Buffer, Pieces, SealedFile, has_trailer, unseal
from dictdb.storage._pickle import PICKLE, PICKLE_BLOB_END, pickle_blob_head, read_pickle_blob
from dictdb.storage.gcshelter import Shelter
from dictdb.storage.legacy import (
    LegacyDelta,
    LegacySnapshot,
    is_ours,
    looks_legacy,
    read_legacy,
)
from dictdb.storage.target import Located, Where, locate
from dictdb.storage.timeline import MAX_TIMELINE, read_lineage
from wal import (
    CREATE,
    DELETE,
    DROP,
    INSERT,
    MAX_TS,
    UPDATE,
    ZSTD_MAGIC,
    CodecError,
    Compaction,
    Trail,
    brief,
    compact_flat,
    from_plain,
    plain_items,
    to_plain,
)

FORMAT_NAME: Final = "dictdb"
#: The on-disk format version written; files with a higher version are refused. Version 2
#: changed the pickle body only (a JSON object in a pickled bytes object, not a pickled tree).
VERSION: Final = 2
FORMATS: Final = ("json", "pickle")
_dumps = orjson.dumps
_log = logging.getLogger("dictdb")
_crc32 = zlib.crc32
_INF: Final = float("inf")


@attrs.define
class BackupCursor:
    """Where the next delta starts: the LSN and state digest of the last file written.

    *plain* names the tables whose rows were all plain (no key in `Table._special`) at that
    LSN: the next delta's before-images are rows of that moment, so for those tables they
    need no walk to become plain trees. Empty is always safe.
    """

    lsn: int
    digest: _digest.StateDigest
    plain: frozenset[str] = frozenset()


def _plain_tables(engine: Engine) -> frozenset[str]:
    # The tables whose rows are all plain right now; the caller holds the database lock.
    return frozenset(name for name, t in engine.tables.items() if not t.special)


def _check_allowed(filename: Where, allowed_dir: str | os.PathLike[str] | None) -> None:
    # The reference's `allowed_dir`: the resolved path must lie inside it (by path parts, not
    # by string prefix: its defect A20).
    if allowed_dir is None:
        return
    where = locate(filename)
    local = where.target.local_directory()
    if local is None:
        raise ValueError(f"allowed_dir applies to local files only, not {where.path}")
    path = (local / where.name).resolve()
    allowed = Path(allowed_dir).resolve()
    if path != allowed and not path.is_relative_to(allowed):
        raise ValueError(f"path {where.path} is outside the allowed directory {allowed_dir}")


def has_changes(db: HasEngine) -> bool:
    """Whether *db* holds changes no snapshot or delta has taken yet (the reference's name).

    Since the last backup cut (or since the database began, when it has none), a change is
    any operation; a table's own view is `Table.has_changes`.
    """
    engine = db.engine
    with engine.lock:
        cursor = engine.cursor
        return engine.lsn > (0 if cursor is None else cursor.lsn)


def check_format(file_format: str | None) -> str:
    fmt = (file_format or "").lower() if isinstance(file_format, str) else None
    if fmt not in FORMATS:
        raise ValueError(f"unsupported file_format {file_format!r}: use 'json' or 'pickle'")
    return fmt


def check_compression(compression: str | None) -> str | None:
    if compression not in (None, "zstd"):
        raise ValueError(f"unsupported compression {compression!r}: use None or 'zstd'")
    return compression


# ---------------------------------------------------------------------------------------------
# Capture and encoding


@attrs.frozen
class _TableCut:
    name: str
    definition: dict[str, Any]
    next_pk: int
    rows: dict[Any, dict[str, Any]]
    special: frozenset[Any]


def _lineage_fields(engine: Engine, timeline: int | None) -> dict[str, Any]:
    # Which history a file belongs to (see `Engine.lineage`), and its timeline's number in the
    # target when a backup manager registered one (`dictdb.storage.timeline`); read under
    # the database lock.
    parent = engine.parent
    fields: dict[str, Any] = {
        "lineage": engine.lineage,
        "parent": None if parent is None else list(parent),
    }
    if timeline is not None:
        fields["timeline"] = timeline
    return fields


def _capture(
    engine: Engine, shelter: Shelter | None = None, as_base: bool | None = False
) -> tuple[int, float, list[_TableCut], _digest.StateDigest | None, int | None]:
    # A consistent cut: one short lock hold copies the row maps (rows themselves are never
    # mutated in place, so sharing them is safe); encoding happens outside the lock. The
    # copies go under the *shelter* at once (see `gcshelter`). When the journal holds
    # everything since the backup cursor and that is less work than hashing every row, the
    # state digest is advanced from the cursor's (time ∝ changes).
    with engine.lock:
        lsn = engine.lsn
        # Whether this snapshot is to be the base of the next delta: asked for, or no chain
        # is being built yet. Operations are kept from this very cut on (R7: kept only once
        # something may cut a delta from them).
        base = bool(as_base or (as_base is None and engine.cursor is None))
        if base:
            engine.want_journal()  # deltas will need the operations from this cut on (R7)
        tables = [
            _TableCut(name, t.definition(), t.next_pk, t.rows.copy(), frozenset(t.special))
            for name, t in engine.tables.items()
        ]
        if shelter is not None:
            shelter.freeze()
        last_ts = engine.journal.last_ts
        # Releasing up to this snapshot will drop whole blocks; a base pins its cut until
        # then (or until it fails: `_save` unpins).
        boundary = engine.journal.cut(pin=base)
        pre_from, pre = engine.cut_pre(lsn)
        cursor = engine.cursor
        ops = None
        if cursor is not None and cursor.lsn > engine.journal.released_lsn - 1:
            pending = lsn - cursor.lsn
            if pending == 0:
                ops = []
            elif pending * 8 < sum(len(c.rows) for c in tables):
                # ~2 µs per pending operation vs ~0.25 µs per row from scratch
                ops = engine.journal.read_flat(cursor.lsn + 1, lsn)  # a slice: the lock stays short
    digest = None
    if cursor is not None and ops is not None:
        plain_now = frozenset(c.name for c in tables if not c.special)
        comp = compact_flat(ops, cursor.lsn + 1, lsn, last_ts)
        known = pre if pre_from == cursor.lsn else None
        digest = _advance_digest(cursor.digest, comp, cursor.plain, plain_now, known)
    return lsn, last_ts, tables, digest, boundary if base else None


def _plain_records(cut: _TableCut) -> tuple[list[Any], list[int]]:
    """The rows as plain trees (tagged where needed), and the positions of tagged ones."""
    if not cut.special:
        return list(cut.rows.values()), []
    special = cut.special
    records: list[Any] = []
    positions: list[int] = []
    for i, (key, row) in enumerate(cut.rows.items()):
        if key in special:
            positions.append(i)
            records.append(to_plain(row))
        else:
            records.append(row)
    return records, positions


def _log_durable(engine: Engine, lsn: int) -> None:
    # A file must never be ahead of a durable database's log: after a crash the log would
    # resume past a hole. So the log is made durable up to the cut before the file is written
    # (and a failed log fails the backup).
    if engine.sink is not None:
        engine.sink.wait_durable(lsn)


def _header(kind: str, **fields: Any) -> dict[str, Any]:
    # The header, sealed by its own CRC (`header_crc`, its last member): `read_header` reads
    # headers alone to plan restores, so a damaged header must be caught without the file's
    # whole-content checksum.
    header = {"format": FORMAT_NAME, "version": VERSION, "type": kind, **fields}
    header["header_crc"] = _crc32(_dumps(header))
    return header


def _encode_full(
    engine: Engine,
    lsn: int,
    last_ts: float,
    tables: list[_TableCut],
    file_format: str,
    digest: _digest.StateDigest | None,
    out: Pieces,
    timeline: int | None = None,
) -> _digest.StateDigest:
    """Encode the snapshot of *tables* into *out*; return its state digest (*digest* when
    known, else computed on the way)."""
    header = _header(
        "full",
        lsn=lsn,
        timestamp=time.time(),
        last_op_ts=last_ts,
        **_lineage_fields(engine, timeline),
    )
    if file_format == "json":
        return _encode_full_json(_dumps(header)[:-1] + b",", tables, digest, out)
    body: list[Buffer] = []
    pieces = Pieces(body.append)
    digest = _encode_full_json(b"{", tables, digest, pieces)
    _pickle_container(header, pieces, body, out)
    return digest


def _encode_full_json(
    opening: bytes,
    tables: list[_TableCut],
    digest: _digest.StateDigest | None,
    parts: Pieces,
) -> _digest.StateDigest:
    # Assembled by hand into *parts* (on their way to the file while the next ones are
    # encoded), from the row maps CHUNK rows at a time: one orjson call over a million rows
    # would hold the GIL ~0.1-0.3 s and stall every writer, and a list of every row would be
    # one more million-entry container for the garbage collector to walk while writers wait
    # (see ARCHITECTURE.md, writer stalls). "special" comes after "records" in each table: it
    # is found on the way. *opening* opens the object: the header's members and a comma for a
    # JSON file, "{" for a pickle file's body. The object is left open.
    computed: _digest.StateDigest = {}
    parts.extend([opening, b'"tables":{'])
    for n, cut in enumerate(tables):
        meta = {**cut.definition, "next_pk": to_plain(cut.next_pk)}
        parts.extend([b"," if n else b"", _dumps(cut.name), b":", _dumps(meta)[:-1]])
        parts.append(b',"records":')
        positions: list[int] = []
        chunks = _record_chunks(cut, positions)
        if digest is None:
            computed[cut.name] = _digest.of_plain_chunks_encoding(chunks, parts)
        else:
            _digest.json_array(chunks, parts)
        parts.extend([b',"special":', _dumps(positions), b"}"])
    digest = computed if digest is None else digest
    parts.extend([b'},"digest":', _dumps(_digest.to_document(digest))])
    return digest


def _pickle_container(
    header: dict[str, Any], pieces: Pieces, body: list[Buffer], out: Pieces
) -> None:
    """A pickle file's content into *out*: the header as a pickled dict, then the body (the
    open JSON object gathered in *pieces*, whose complete ones are in *body*), closed, as one
    pickled bytes object. The body's length comes first, so it is gathered whole before."""
    body.append(pieces.rest())
    body.append(b"}")
    out.append(PICKLE.dumps(header) + pickle_blob_head(sum(map(len, body))))
    out.extend(body)  # past the first piece, pieces of the floor's size go on uncopied
    out.append(PICKLE_BLOB_END)


def _record_chunks(cut: _TableCut, positions: list[int]) -> Iterator[list[Any]]:
    """The rows of *cut* as plain trees, CHUNK at a time; the positions of tagged rows are
    appended to *positions* on the way."""
    chunk = _digest.CHUNK
    if not cut.special:
        values = iter(cut.rows.values())
        while block := list(islice(values, chunk)):
            yield block
        return
    special = cut.special
    items = iter(cut.rows.items())
    start = 0
    while pairs := list(islice(items, chunk)):
        block = []
        for i, (key, row) in enumerate(pairs, start):
            if key in special:
                positions.append(i)
                block.append(to_plain(row))
            else:
                block.append(row)
        start += len(pairs)
        yield block


def state_digest(db: HasEngine) -> _digest.StateDigest:
    """The state digest of *db* computed from scratch (time proportional to its size)."""
    engine = db.engine
    with engine.lock:
        tables = [
            _TableCut(name, {}, 0, t.rows.copy(), frozenset(t.special))
            for name, t in engine.tables.items()
        ]
    return {cut.name: _digest.of_plain_records(_plain_records(cut)[0]) for cut in tables}


def _advance_digest(
    base: _digest.StateDigest,
    comp: Compaction,
    plain_before: frozenset[str],
    plain_after: frozenset[str],
    pre: Mapping[str, Mapping[Any, int] | None] | None,
    added: Mapping[str, tuple[int, int]] | None = None,
) -> _digest.StateDigest:
    """The state digest after a compacted run, from the digest before it (time ∝ changes).

    *plain_before* / *plain_after* name the tables whose rows were all plain at the start /
    end of the run (their images are their own plain trees). *pre*, when given, holds per
    table the hashes of the before-images recorded at write time (`Engine.pre_from` is the
    run's start): those rows are not read again. *added*, when given, holds per table the
    ``(count, sum of hashes)`` of the after-images (already computed for a delta document;
    not twice).
    """
    digest = dict(base)
    for event in comp.ddl:
        if event.kind == DROP:
            digest.pop(event.table, None)
        else:
            digest[event.table] = (0, 0)
    for name, ends in comp.afters.items():
        hashes = None if pre is None else pre.get(name)
        removed = _removed(comp.befores[name], name in plain_before, hashes)
        if added is not None:
            arrived = added[name]
        else:
            arrived = _digest.hashes(_plain_images(ends, name in plain_after))
        digest[name] = _digest.adjust(digest.get(name, (0, 0)), removed, arrived)
    return digest


def _removed(
    befores: Mapping[Any, Any], plain: bool, hashes: Mapping[Any, int] | None
) -> tuple[int, int]:
    """``(count, sum of hashes)`` of a table's non-None before-images: looked up in *hashes*
    (recorded at write time: every key whose first operation in the run replaced a row is
    there) when given, else computed from the rows."""
    if hashes is not None:
        # *hashes* has every key whose first operation replaced a row, and maybe keys
        # inserted in the run and then changed. When every key replaced a row and the
        # counts agree, those are the same keys: sum them all, without a lookup per key
        # (a run of updates, the usual delta: ~0.1 µs a row less).
        if len(hashes) == len(befores) and None not in befores.values():
            return len(hashes), sum(hashes.values())
        keys = [key for key, before in befores.items() if before is not None]  # no row read
        return len(keys), sum(map(hashes.__getitem__, keys))
    return _digest.hashes(_plain_images(befores, plain))


def _last_changes(ends: Mapping[Any, Any], trail: Trail | None, deletes: bool) -> dict[str, Any]:
    """A delta table's ``changed`` member: for each row it lists (its upserts, then its
    deletes), the LSN, time and audit meta of the last operation that changed it, as columns
    gathered in C (no step per row unless some meta is set)."""
    order = list(ends)
    if deletes:
        order = [k for k in order if ends[k] is not None] + [k for k in order if ends[k] is None]
    if trail is None:  # (a table created in the run with no row since)
        return {"lsn": [], "ts": [], "meta": []}
    lsns, stamps, metas = trail.columns(order)
    if metas.count(None) != len(metas):
        metas = [None if m is None else to_plain(m) for m in metas]
    return {"lsn": lsns, "ts": stamps, "meta": metas}


def _plain_images(images: Mapping[Any, Any], plain: bool) -> list[Any]:
    """The non-None images of a compacted table (`Compaction.befores` or `.afters` of one
    table), as plain trees; *plain* says they all are already."""
    found = list(images.values())
    if None in found:
        found = [image for image in found if image is not None]
    return found if plain else plain_items(found)


# ---------------------------------------------------------------------------------------------
# Full snapshots


def _target(
    filename: Where, file_format: str | None, compression: str | None
) -> tuple[Located, str, str | None]:
    """Where and how to write: the final object (``.zst`` appended when compressing), the
    format (`_format_for`) and the compression (a name ending in ``.zst`` implies zstd)."""
    where = locate(filename)
    name = where.name
    fmt = _format_for(name, file_format)
    if compression is None and name.endswith(".zst"):
        compression = "zstd"
    comp = check_compression(compression)
    if comp == "zstd" and not name.endswith(".zst"):
        where = Located(where.target, name + ".zst")
    return where, fmt, comp


def _format_for(name: str, file_format: str | None) -> str:
    """The format to write a file named *name*: as given, else from the name (``.json`` /
    ``.pickle`` / ``.pkl``, before an optional ``.zst``), else JSON. A given format that
    contradicts the name is an error: `load` infers the format from the name.
    """
    stem = name[: -len(".zst")] if name.endswith(".zst") else name
    named = "json" if stem.endswith(".json") else None
    if stem.endswith((".pickle", ".pkl")):
        named = "pickle"
    if file_format is None:
        return named or "json"
    fmt = check_format(file_format)
    if named is not None and named != fmt:
        raise ValueError(f"file_format {file_format!r} contradicts the file name {name!r}")
    return fmt


def save(
    db: HasEngine,
    filename: Where,
    file_format: str | None = None,
    compression: str | None = None,
    *,
    overwrite: bool = True,
    as_base: bool | None = None,
    timeline: int | None = None,
    allowed_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Write a full snapshot of *db*, atomically.

    The snapshot is a consistent cut at `DictDB.lsn`, taken under a short lock; encoding and
    I/O run outside it.

    A snapshot can become the *base* of later deltas: the backup cursor moves to it and the
    journal is released up to it. By default (``as_base=None``) it does so only when no chain
    is being built (no cursor yet), so an ad-hoc export never breaks a `BackupManager`'s
    chain; ``as_base=True`` always moves the cursor, ``False`` never does.

    Args:
        db: the database (or its engine).
        filename: the file; with ``compression="zstd"`` the name gains ``.zst``.
        file_format: ``"json"`` or ``"pickle"``; None infers it from the name (JSON by
            default); a format that contradicts the name is refused.
        compression: None or ``"zstd"``; inferred as ``"zstd"`` from a ``.zst`` name.
        overwrite: replace an existing file (True) or refuse (False: FileExistsError).
        as_base: see above.
        timeline: the number of the history's timeline in the target, when a backup manager
            registered one (`dictdb.storage.timeline`); recorded in the header.
        allowed_dir: refuse a path that resolves outside this directory (the reference's
            argument; a `Path` given as the fourth positional argument is taken as it).

    Returns:
        The path written.

    Raises:
        ValueError: an unknown format or compression, or a path outside *allowed_dir*.
        OSError: the write failed; no file (and no temp file) is left behind.
    """
    if isinstance(compression, os.PathLike):  # the reference's save(db, f, fmt, allowed_dir)
        compression, allowed_dir = None, compression
    _check_allowed(filename, allowed_dir)
    engine = db.engine
    return _save(engine, filename, file_format, compression, overwrite, as_base, timeline)[0]


def _save(
    engine: Engine,
    filename: Where,
    file_format: str | None,
    compression: str | None,
    overwrite: bool,
    as_base: bool | None,
    timeline: int | None = None,
) -> tuple[Path, int, bool]:
    # `save`, returning also the snapshot's LSN and whether it became the chain's base.
    where, fmt, comp = _target(filename, file_format, compression)
    pinned: int | None = None
    try:
        with SealedFile(where, fmt, comp, overwrite=overwrite) as sealed, Shelter() as shelter:
            lsn, last_ts, tables, known, pinned = _capture(engine, shelter, as_base)
            _log_durable(engine, lsn)
            digest = _encode_full(engine, lsn, last_ts, tables, fmt, known, sealed.out, timeline)
            plain = frozenset(cut.name for cut in tables if not cut.special)
            del tables  # the copies: freed here, before the last write and the fsync
    except BaseException:
        if pinned is not None:  # nothing released: the journal may fold across this cut
            engine.journal.unpin(pinned)
        raise
    based = False
    with engine.lock:
        cursor = engine.cursor
        # Never move the cursor backwards: a delta written meanwhile (by another writer of
        # the same database) is newer than this snapshot.
        if pinned is not None and (cursor is None or cursor.lsn <= lsn):
            engine.cursor = BackupCursor(lsn, digest, plain)
            engine.journal.release(lsn, defer_free=True)
            based = True
        elif pinned is not None:
            engine.journal.unpin(pinned)
    engine.journal.free_released()  # outside the lock
    return where.path, lsn, based


def _sniff(path: Path, data: bytes, file_format: str | None) -> tuple[str, bool]:
    name = path.name
    compressed = name.endswith(".zst")
    stem = name[: -len(".zst")] if compressed else name
    if file_format is not None:
        fmt = check_format(file_format)
    elif stem.endswith(".json"):
        fmt = "json"
    elif stem.endswith((".pickle", ".pkl")):
        fmt = "pickle"
    else:
        raise CorruptFileError(path, "cannot tell the format: name it .json or .pickle")
    return fmt, compressed


def read_document(where: Where, file_format: str | None = None) -> dict[str, Any]:
    """Read, verify and decode a snapshot or delta file into its plain document.

    Checks the checksum, the format name, the version, the type and the other header fields;
    values stay tagged.

    Raises:
        CorruptFileError: unreadable, truncated, damaged, of an unknown version, or not ours.
        OSError: the file cannot be read.
    """
    return _read(locate(where), file_format)


def _read(where: Located, file_format: str | None) -> dict[str, Any]:
    found = _read_any(where, file_format)
    if not isinstance(found, dict):
        raise LegacyFileError(where.path, _LEGACY_HERE)
    return found


_LEGACY_HERE: Final = (
    "a reference DictDB 1.x file (no header, no checksum): read it with DictDB.load, "
    "apply_delta or restore, or convert the directory with `python -m dictdb migrate`"
)


def _read_any(
    where: Located, file_format: str | None
) -> dict[str, Any] | LegacySnapshot | LegacyDelta:
    # Every tree returned is one JSON carries exactly (orjson built it, or `check_plain` walked
    # a version-1 pickle body), so the checks after it are those of JSON. A file without our
    # trailer that opens like the reference's is read as one (`dictdb.storage.legacy`).
    path = where.path
    data = where.target.read(where.name)
    fmt, compressed = _sniff(path, data, file_format)
    if (
        not compressed
        and not data.startswith(ZSTD_MAGIC)
        and not has_trailer(data, fmt)
        and not is_ours(data, fmt)
    ):
        return read_legacy(where, data, fmt)
    payload = unseal(path, data, fmt, compressed)
    del data  # with zstd, the compressed bytes
    doc: dict[str, Any]
    try:
        doc = _load_pickle(path, payload) if fmt == "pickle" else orjson.loads(payload)
    except (orjson.JSONDecodeError, CodecError) as exc:
        kind = CorruptPickleError if fmt == "pickle" else CorruptJSONError
        raise kind(path, f"not a valid {fmt} document: {exc}") from None
    if fmt == "json":
        _check_json_header(path, doc, payload)
    _check_shape(path, doc)
    return doc


def _check_json_header(path: Path, doc: Any, payload: Buffer) -> None:
    # The whole document's header members, then: orjson keeps the last of repeated members,
    # and the header `read_header` reads (the first members) must be the document's, or a
    # restore could plan with one LSN and load another.
    _check_header(path, doc)
    try:
        header = _json_header(bytes(payload[:_HEADER_PROBE]))
    except (orjson.JSONDecodeError, CodecError) as exc:
        raise CorruptFileError(path, f"unreadable header: {exc}") from None
    _check_header(path, header, only=True)
    for name, value in header.items():
        if doc[name] is not value and (type(doc[name]) is not type(value) or doc[name] != value):
            raise CorruptFileError(path, f"header member {brief(name)} is repeated, differently")


def _check_shape(path: Path, doc: dict[str, Any]) -> None:
    # The body's containers, as every reader walks them (load and apply check the content
    # further): tables an object of objects; a full's records and special, a delta's upserts
    # and deletes lists, records and upserts objects; a delta's ddl a list of objects naming
    # a table and an operation. Type checks in C over the rows (~4x a generator's speed).
    tables = doc.get("tables")
    if type(tables) is not dict or not _DICT_TYPE.issuperset(map(type, tables.values())):
        raise CorruptFileError(path, "tables must be an object of objects")
    rows, others = ("records", "special") if doc["type"] == "full" else ("upserts", "deletes")
    for name, tdoc in tables.items():
        listed, other = tdoc.get(rows, []), tdoc.get(others, [])
        if (
            type(listed) is not list
            or type(other) is not list
            or not _DICT_TYPE.issuperset(map(type, listed))
        ):
            raise CorruptFileError(
                path, f"table {brief(name)}: {rows} must be a list of objects, {others} a list"
            )
        if type(tdoc.get("primary_key", None if rows == "records" else "id")) is not str:
            raise CorruptFileError(path, f"table {brief(name)}: primary_key must be a str")
        if rows == "upserts" and "changed" in tdoc:
            _check_changed(path, name, tdoc["changed"], len(listed) + len(other), doc)
    ddl = doc.get("ddl", [])
    if type(ddl) is not list or not all(
        type(e) is dict
        and type(e.get("table")) is str
        and e.get("op") in ("create", "drop")
        and type(e.get("lsn")) is int
        for e in ddl
    ):
        raise CorruptFileError(path, "ddl must list objects with a table, an op and an lsn")


def _check_changed(path: Path, name: str, changed: Any, rows: int, doc: dict[str, Any]) -> None:
    # A delta table's audit trail (`_last_changes`): lsn, ts and meta lists, one entry per
    # upsert and delete; LSNs inside the delta's range, times numbers, metas plain trees.
    def bad(why: str) -> CorruptFileError:
        return CorruptFileError(path, f"table {brief(name)}: changed {why}")

    if (
        type(changed) is not dict
        or changed.keys() != {"lsn", "ts", "meta"}
        or not all(type(v) is list and len(v) == rows for v in changed.values())
    ):
        raise bad("must hold lsn, ts and meta lists of one entry per upsert and delete")
    lsns, stamps = changed["lsn"], changed["ts"]
    lo, hi = doc.get("from_lsn"), doc.get("to_lsn")
    if not all(type(x) is int for x in lsns) or (
        lsns and type(lo) is int and type(hi) is int and not lo <= min(lsns) <= max(lsns) <= hi
    ):
        raise bad("LSNs must be ints within the delta's from_lsn..to_lsn")
    if not all(type(t) in (int, float) and t >= 0 for t in stamps):
        raise bad("times must be numbers >= 0")
    try:
        for meta in changed["meta"]:
            if meta is not None:
                from_plain(meta)
    except CodecError as exc:
        raise bad(f"meta: {exc}") from None


#: The members a header may hold, and what each must be.
_HEADER_FIELDS: Final = frozenset(
    {
        "format",
        "version",
        "type",
        "lsn",
        "timestamp",
        "last_op_ts",
        "from_lsn",
        "to_lsn",
        "lineage",
        "parent",
        "timeline",
        "header_crc",
    }
)


def _check_header(path: Path, doc: Any, *, only: bool = False) -> None:
    # The members every file starts with: format, version, type; the other header fields,
    # when present, of their types (LSNs are checked again where used, with their minimum).
    # *only*: *doc* is a header alone, which holds nothing else.
    if type(doc) is not dict or doc.get("format") != FORMAT_NAME:
        raise CorruptFileError(path, "not a dictdb file (no format: dictdb header)")
    extra = doc.keys() - _HEADER_FIELDS if only else ()
    if extra:
        raise CorruptFileError(path, f"unexpected header member {brief(min(extra))}")
    version = doc.get("version")
    if type(version) is not int or version < 1:
        raise CorruptFileError(path, f"malformed version {brief(version)}")
    if version > VERSION:
        raise CorruptFileError(
            path, f"format version {brief(version)} is newer than this dictdb reads ({VERSION})"
        )
    kind = doc.get("type")
    if kind not in ("full", "delta"):  # a tuple: no hashing of what the file holds
        raise CorruptFileError(path, f"unknown file type {brief(kind)}")
    for name in ("lsn", "from_lsn", "to_lsn"):
        if name in doc:
            _int_field(path, doc, name)
    for name in ("timestamp", "last_op_ts"):
        if name in doc:
            _num_field(path, doc, name)
    crc = doc.get("header_crc", 0)
    if type(crc) is not int or not 0 <= crc < 1 << 32:
        raise CorruptFileError(path, f"malformed header_crc {brief(crc)}")
    timeline = doc.get("timeline", 1)
    if type(timeline) is not int or not 1 <= timeline <= MAX_TIMELINE:
        raise CorruptFileError(path, f"malformed timeline {brief(timeline)}")
    read_lineage(path, doc)


def _json_header(data: bytes) -> Any:
    # The members `read_header` reads in a JSON file: those before the first table or DDL.
    cut = min((i for i in (data.find(m) for m in _HEADER_MARKERS) if i > 0), default=-1)
    if cut < 0:
        raise CodecError("no header before the tables")
    return orjson.loads(data[:cut] + b"}")


def _load_pickle(path: Path, payload: Buffer) -> dict[str, Any]:
    # The header stream is decoded by the restricted unpickler (short: its opcodes are read
    # first, see `load_stream`) and checked before the body is touched: header members only,
    # so that nothing the body's checks rely on comes from the unpickler. The body of version
    # 2 is JSON in a pickled bytes object, read with no unpickler; that of version 1, a
    # pickled tree, is read opcode by opcode before it is decoded (a memo index in it could
    # make the unpickler allocate gigabytes, DUP share a record thousands of times), and
    # then walked (`check_plain`).
    stream = io.BytesIO(bytes(payload[:_HEADER_PROBE]))  # as `read_header` reads it
    header = PICKLE.load_stream(stream, check=True)
    _check_header(path, header, only=True)
    start = stream.tell()
    if header["version"] == 1:
        stream = io.BytesIO(payload[start:])
        body = PICKLE.load_stream(stream, check=True)
        end = start + stream.tell()
    else:
        blob, end = read_pickle_blob(payload, start)
        body = orjson.loads(blob)
    if end != len(payload):
        raise CodecError("bytes after the pickle streams")
    if type(body) is not dict or body.keys() & header.keys():
        raise CodecError("the pickle streams must be a header object and a body object")
    doc: dict[str, Any] = {**header, **body}
    return doc


_HEADER_MARKERS: Final = (b',"tables":', b',"ddl":')
_HEADER_PROBE: Final = 1 << 16


def read_header(where: Where) -> dict[str, Any]:
    """Read a snapshot's or delta's header without reading the whole file.

    The header holds format, version, type, timestamps and the LSNs; nothing is verified
    but the header's own shape (`read_document` and `load` verify the whole file).

    Raises:
        CorruptFileError: no readable header.
        OSError: the file cannot be read.
    """
    located = locate(where)
    path = located.path
    fmt, compressed = _sniff(path, b"", None)
    if compressed:
        with located.target.open(located.name) as handle:
            try:
                reader = zstandard.ZstdDecompressor().stream_reader(handle)
                head = reader.read(_HEADER_PROBE)
            except zstandard.ZstdError as exc:
                raise CorruptFileError(path, f"corrupt zstandard data: {exc}") from None
    else:
        head = located.target.read_head(located.name, _HEADER_PROBE)  # one request remotely
        if looks_legacy(head, fmt):
            raise LegacyFileError(path, _LEGACY_HERE)
    try:
        if fmt == "json":
            header = _json_header(head)
        else:
            header = PICKLE.load_stream(io.BytesIO(head), check=True)
    except (orjson.JSONDecodeError, CodecError, EOFError) as exc:
        raise CorruptFileError(path, f"unreadable header: {exc}") from None
    _check_header(path, header, only=True)
    fields = dict(header)
    crc = fields.pop("header_crc", None)
    if type(crc) is not int or crc != _crc32(_dumps(fields)):  # fields are checked: no error
        raise CorruptFileError(path, "header checksum mismatch: the header is damaged")
    return fields | {"header_crc": crc}


def _int_field(path: Path, doc: Mapping[str, Any], name: str, minimum: int = 0) -> int:
    value = doc.get(name)
    if type(value) is not int or not minimum <= value <= INT64_MAX:
        raise CorruptFileError(
            path, f"{name} must be an int in [{minimum}, 2**63), got {brief(value)}"
        )
    return value


def _num_field(path: Path, doc: Mapping[str, Any], name: str) -> float:
    # A time: epoch seconds from 1970 to before the year 10000 (what `datetime` can show).
    value = doc.get(name)
    if (type(value) is int or type(value) is float) and 0 <= value < MAX_TS:
        return float(value)
    raise CorruptFileError(
        path, f"{name} must be epoch seconds in [0, {MAX_TS}), got {brief(value)}"
    )


def load(
    filename: Where,
    file_format: str | None = None,
    allowed_dir: str | os.PathLike[str] | None = None,
    *,
    lock: Lock | None = None,
) -> Engine:
    """Load a full snapshot into a new engine, verifying it completely.

    A file of the reference DictDB 1.x is read too (`dictdb.storage.legacy`).

    Args:
        filename: the file (``.zst`` means compressed).
        file_format: ``"json"`` or ``"pickle"``; None infers it from the name.
        allowed_dir: refuse a path that resolves outside this directory (the reference's).
        lock: the engine's lock (default: a new RLock).

    Returns:
        The engine, at the snapshot's LSN, ready to take deltas.

    Raises:
        CorruptFileError: damaged, truncated, of another type, or its content does not match
            its recorded digest.
        ValueError: an unknown format, or a path outside *allowed_dir*.
    """
    if file_format is not None:
        check_format(file_format)  # before any I/O
    _check_allowed(filename, allowed_dir)
    where = locate(filename)
    path = where.path
    doc = _read_any(where, file_format)
    if isinstance(doc, LegacySnapshot):
        return _legacy_engine(doc, lock)
    if isinstance(doc, LegacyDelta):
        raise CorruptFileError(path, "expected a full snapshot, found a reference delta")
    if doc["type"] != "full":
        raise CorruptFileError(path, f"expected a full snapshot, found a {doc['type']}")
    lsn = _int_field(path, doc, "lsn")
    tables_doc = doc.get("tables")
    if type(tables_doc) is not dict:
        raise CorruptFileError(path, "tables must be an object")
    try:
        expected = _digest.from_document(doc.get("digest"))
    except ValueError as exc:
        raise CorruptFileError(path, str(exc)) from None
    tables: list[TableState] = []
    actual: _digest.StateDigest = {}
    for name, tdoc in tables_doc.items():
        table, actual[name] = _load_table(path, name, tdoc)
        tables.append(table)
    if actual != expected:
        raise CorruptFileError(path, _digest.describe_mismatch(expected, actual))
    last_ts = _num_field(path, doc, "last_op_ts")
    lineage, parent = read_lineage(path, doc)
    engine = Engine(start_lsn=lsn, start_ts=last_ts, lock=lock, lineage=lineage, parent=parent)
    engine.tables.update((t.name, t) for t in tables)
    engine.cursor = BackupCursor(lsn, actual, _plain_tables(engine))
    engine.cut_pre(lsn)
    return engine


def _load_table(path: Path, name: str, tdoc: Any) -> tuple[TableState, _digest.TableDigest]:
    if not name:
        raise CorruptFileError(path, "a table has an empty name")
    if type(tdoc) is not dict:
        raise CorruptFileError(path, f"table {name!r} must be an object")
    try:
        primary_key, schema = normalize_definition(name, tdoc)
    except SchemaValidationError as exc:
        raise CorruptFileError(path, str(exc)) from None
    records = tdoc.get("records")
    positions = tdoc.get("special")
    try:
        next_pk = from_plain(tdoc.get("next_pk"))
    except CodecError:
        next_pk = None
    if type(records) is not list or type(positions) is not list or type(next_pk) is not int:
        raise CorruptFileError(path, f"table {name!r}: malformed records/special/next_pk")
    # Every record an object: `_check_shape` saw to it when the file was read.
    if not all(type(i) is int and 0 <= i < len(records) for i in positions) or len(
        set(positions)
    ) != len(positions):
        raise CorruptFileError(path, f"table {name!r}: malformed special positions")
    rows = records
    hashed = records  # the plain trees whose canonical bytes make the digest
    if positions:
        rows = list(records)
        hashed = list(records)
        try:
            for i in positions:
                rows[i] = from_plain(records[i])
                if type(rows[i]) is not dict:  # a record that was itself a tag
                    raise CodecError(f"record {i} is a tag of a {type(rows[i]).__name__}")
                hashed[i] = to_plain(rows[i])  # re-encoded: the digest checks the decoding
        except (CodecError, TypeError, AttributeError) as exc:
            raise CorruptFileError(path, f"table {name!r}: bad tagged record: {exc}") from None
        at = set(positions)
        flat = [r for i, r in enumerate(records) if i not in at]
    else:
        flat = records
    if not _flat_plain(flat, primary_key):
        raise CorruptFileError(
            path, f"table {name!r}: a record not marked special holds a non-plain value"
        )
    try:
        keys = [r[primary_key] for r in rows]
    except KeyError:
        raise CorruptFileError(
            path, f"table {name!r}: a record lacks primary key {primary_key!r}"
        ) from None
    key_types = set(map(type, keys))
    if not PK_TYPES.issuperset(key_types):
        raise CorruptFileError(path, f"table {name!r}: a primary key has a refused type")
    table_rows = dict(zip(keys, rows, strict=True))
    if len(table_rows) != len(rows):
        raise CorruptFileError(path, f"table {name!r}: duplicate primary keys")
    if schema is not None:
        for row in rows:
            try:
                validate_record(name, schema, row)
            except SchemaValidationError as exc:
                raise CorruptFileError(path, str(exc)) from None
    if key_types == {int}:
        max_int = max(keys, default=0)
    else:
        max_int = max((k for k in keys if type(k) is int), default=0)
    if next_pk <= max_int:
        raise CorruptFileError(
            path, f"table {name!r}: next_pk {brief(next_pk)} <= largest key {brief(max_int)}"
        )
    table = TableState(
        name,
        primary_key,
        schema,
        rows=table_rows,
        special={keys[i] for i in positions},
        next_pk=next_pk,
    )
    return table, _digest.of_plain_records(hashed)


_FLAT_TYPES: Final = frozenset({str, int, float, bool, type(None)})
_DICT_TYPE: Final = frozenset({dict})


def _flat_plain(records: list[dict[str, Any]], primary_key: str) -> bool:
    """Whether records not marked special are plain (see `dictdb._values.own_record`).

    The trees read hold only finite floats and ints JSON carries exactly (orjson built them,
    or `check_plain` walked them), so a type check suffices.
    """
    values = chain.from_iterable(map(dict.values, records))
    if not _FLAT_TYPES.issuperset(map(type, values)):
        return False
    if primary_key.startswith("$"):
        return not any(len(r) == 1 for r in records)
    return True


# ---------------------------------------------------------------------------------------------
# Deltas


def save_delta(
    db: HasEngine,
    filename: Where,
    file_format: str | None = None,
    compression: str | None = None,
    *,
    overwrite: bool = False,
    timeline: int | None = None,
    allowed_dir: str | os.PathLike[str] | None = None,
) -> Path | None:
    """Write the changes since the last snapshot or delta as a delta file, atomically.

    Exactly the operations up to the cut LSN are in it; later writes land in the next one.
    Cost is proportional to the number of operations since the last cut.

    Returns:
        The path written, or None when nothing happened since the last cut.

    Raises:
        DictDBError: no base snapshot was written or loaded in this process.
        ValueError: a path outside *allowed_dir* (a `Path` third positional argument is taken
            as the reference's ``allowed_dir``).
        OSError: the write failed: nothing is released, so the next delta includes all of it.
    """
    if isinstance(file_format, os.PathLike):  # the reference's save_delta(db, f, allowed_dir)
        file_format, allowed_dir = None, file_format
    _check_allowed(filename, allowed_dir)
    engine = db.engine
    where, fmt, comp = _target(filename, file_format, compression)
    with engine.lock:
        cursor = engine.cursor
        if cursor is None:
            raise DictDBError(
                "no base snapshot for a delta: write a full snapshot (save) or load one first"
            )
        if not engine.journal.retain:
            raise DictDBError(
                "deltas need the operations since their base, and this database keeps none: "
                "save a full snapshot first (it becomes the base, and operations are kept from "
                "it on), attach a BackupManager, or make it with retain_journal=True"
            )
        if cursor.lsn == engine.lsn:
            return None
        db_lsn = engine.lsn
        flat = engine.journal.read_flat(cursor.lsn + 1, db_lsn)  # a slice: the lock stays short
        last_ts = engine.journal.last_ts
        pinned = engine.journal.cut(pin=True)  # released on success, unpinned on failure
        pre_from, pre = engine.cut_pre(db_lsn)
        table_info = {name: (t.primary_key, t.next_pk) for name, t in engine.tables.items()}
        lineage = _lineage_fields(engine, timeline)
        plain_now = _plain_tables(engine)
    try:
        _log_durable(engine, db_lsn)
        comp_ = compact_flat(flat, cursor.lsn + 1, db_lsn, last_ts)
        known = pre if pre_from == cursor.lsn else None  # else a failed delta broke the run
        with SealedFile(where, fmt, comp, overwrite=overwrite) as sealed:
            digest = _encode_delta(
                comp_, cursor, plain_now, known, table_info, lineage, fmt, sealed.out
            )
    except BaseException:
        engine.journal.unpin(pinned)  # nothing released: the journal may fold across it
        raise
    with engine.lock:
        if engine.cursor is cursor:
            engine.cursor = BackupCursor(comp_.to_lsn, digest, plain_now)
            engine.journal.release(comp_.to_lsn, defer_free=True)
        else:
            engine.journal.unpin(pinned)
    engine.journal.free_released()  # outside the lock
    return where.path


def _encode_delta(
    comp: Compaction,
    cursor: BackupCursor,
    plain_now: frozenset[str],
    pre: Mapping[str, Mapping[Any, int] | None] | None,
    table_info: Mapping[str, tuple[str, int]],
    lineage: Mapping[str, Any],
    file_format: str,
    out: Pieces,
) -> _digest.StateDigest:
    """Encode the delta document of *comp* into *out*; return the state digest after it."""
    header = _header(
        "delta",
        timestamp=time.time(),
        from_lsn=comp.from_lsn,
        to_lsn=comp.to_lsn,
        last_op_ts=comp.last_ts,
        **lineage,
    )
    ddl: list[dict[str, Any]] = []
    for event in comp.ddl:
        if event.kind == DROP:
            ddl.append({"lsn": event.lsn, "op": "drop", "table": event.table})
        else:
            ddl.append({"lsn": event.lsn, "op": "create", "table": event.table, **event.definition})
    tables: dict[str, dict[str, Any]] = {}
    for name, ends in comp.afters.items():
        upserts = _plain_images(ends, name in plain_now)
        deletes = []
        if len(upserts) < len(ends):
            deletes = [to_plain(k) for k, a in ends.items() if a is None]
        primary_key, next_pk = table_info.get(name, ("id", 1))
        tables[name] = {
            "primary_key": primary_key,
            "upserts": upserts,
            "deletes": deletes,
            "next_pk": to_plain(next_pk),
            "changed": _last_changes(ends, comp.trails.get(name), bool(deletes)),
        }
    # Assembled by hand like the full snapshot's: the upserts are encoded a chunk at a time
    # and hashed from that encoding (`scattered`: by the time of a delta, the changed rows are
    # spread over the heap; reading them twice cost ~0.3 µs a row more). The same bytes as
    # dumping the document whole.
    body: list[Buffer] = []
    parts = out if file_format == "json" else Pieces(body.append)
    opening = _dumps(header)[:-1] + b"," if file_format == "json" else b"{"
    added: dict[str, tuple[int, int]] = {}
    parts.extend([opening, b'"ddl":', _dumps(ddl), b',"tables":{'])
    for n, (name, table) in enumerate(tables.items()):
        parts.extend([b"," if n else b"", _dumps(name), b':{"primary_key":'])
        parts.extend([_dumps(table["primary_key"]), b',"upserts":'])
        chunks = _digest.chunked(table["upserts"])
        added[name] = _digest.of_plain_chunks_encoding(chunks, parts, scattered=True)
        parts.extend([b',"deletes":', _dumps(table["deletes"]), b',"next_pk":'])
        parts.extend([_dumps(table["next_pk"]), b',"changed":', _dumps(table["changed"]), b"}"])
    digest = _advance_digest(cursor.digest, comp, cursor.plain, plain_now, pre, added)
    parts.extend([b'},"digest":', _dumps(_digest.to_document(digest))])
    if parts is not out:
        _pickle_container(header, parts, body, out)
    return digest


def apply_delta(
    db: HasEngine,
    filename: Where,
    file_format: str | None = None,
    allowed_dir: str | os.PathLike[str] | None = None,
) -> int:
    """Apply a delta file to *db*, all or nothing.

    A delta of the reference DictDB 1.x is applied too: its upserts replace rows whole, then
    its deletes remove keys, as one statement (`dictdb.storage.legacy`).

    The whole file is checked first (checksum, version, type, LSN continuity with `db.lsn`,
    every row against the value domain, keys and schema, and the resulting state digest);
    only then is it applied, through the same apply path as live writes.

    Returns:
        The number of rows touched (upserts + deletes).

    Raises:
        CorruptFileError: the file is damaged, not a delta, does not start right after
            `db.lsn`, or does not fit the database; the database is unchanged.
        StateError: *db* is durable (`DictDB.open`): its log holds every operation, and a
            delta holds only their net effect, which the log cannot take.
        ValueError: a path outside *allowed_dir* (a `Path` third positional argument is taken
            as the reference's ``allowed_dir``).
    """
    if isinstance(file_format, os.PathLike):  # the reference's apply_delta(db, f, allowed_dir)
        file_format, allowed_dir = None, file_format
    _check_allowed(filename, allowed_dir)
    engine = db.engine
    if engine.sink is not None:
        raise StateError(
            "apply_delta cannot change a durable database: its log needs every operation, a "
            "delta holds only their net effect (restore into a new database instead)"
        )
    where = locate(filename)
    path = where.path
    doc = _read_any(where, file_format)
    if isinstance(doc, LegacyDelta):
        return _apply_legacy_delta(engine, doc)
    if isinstance(doc, LegacySnapshot):
        raise CorruptFileError(
            path, "not a valid delta file: expected a delta, found a reference snapshot"
        )
    if doc["type"] != "delta":
        raise CorruptFileError(
            path, f"not a valid delta file: expected a delta, found a {doc['type']} snapshot"
        )
    from_lsn = _int_field(path, doc, "from_lsn", 1)
    to_lsn = _int_field(path, doc, "to_lsn", from_lsn)
    last_ts = _num_field(path, doc, "last_op_ts")
    try:
        expected = _digest.from_document(doc.get("digest"))
    except ValueError as exc:
        raise CorruptFileError(path, str(exc)) from None
    with engine.lock:
        if from_lsn != engine.lsn + 1:
            raise CorruptFileError(
                path,
                f"delta covers LSN {from_lsn}..{to_lsn} but the database is at LSN {engine.lsn}: "
                + ("a gap" if from_lsn > engine.lsn + 1 else "an overlap"),
            )
        try:
            plan, touched = _plan_delta(engine, doc)
            digest = _planned_digest(_current_digest(engine), plan)
        except (DictDBError, CodecError, TypeError, ValueError, KeyError) as exc:
            raise CorruptFileError(path, f"delta does not fit the database: {exc}") from None
        if digest != expected:
            raise CorruptFileError(path, _digest.describe_mismatch(expected, digest))
        for kind, name, key, after, before, plain, next_pk in plan:
            if kind == "next_pk":
                table = engine.tables[name]
                table.next_pk = max(table.next_pk, next_pk)
                continue
            engine.apply((to_lsn, last_ts, kind, name, key, after, before, None), plain)
        engine.lsn = to_lsn
        engine.journal.skip_to(to_lsn, last_ts)
        engine.cursor = BackupCursor(to_lsn, digest, _plain_tables(engine))
        engine.cut_pre(to_lsn)
    return touched


def _legacy_engine(snapshot: LegacySnapshot, lock: Lock | None) -> Engine:
    # A new history starts at the reference snapshot (LSN 0, the time its name says).
    engine = Engine(start_ts=snapshot.stamp or 0.0, lock=lock)
    for t in snapshot.tables:
        engine.tables[t.name] = TableState(
            t.name, t.primary_key, t.schema, rows=t.rows, special=set(t.special), next_pk=t.next_pk
        )
    engine.cursor = BackupCursor(0, state_digest(engine), _plain_tables(engine))
    engine.cut_pre(0)
    return engine


def _apply_legacy_delta(engine: Engine, delta: LegacyDelta) -> int:
    """Apply a reference delta: each upsert puts its row whole, then each delete removes its
    key (a key absent is skipped, as the reference does), all as one statement at the time
    the file's name records, all or nothing. A table the database lacks is skipped with a
    warning: the reference skips it too, and its delta does not say how to create it."""
    path = delta.path
    ts = time.time() if delta.stamp is None else delta.stamp
    skipped: dict[str, int] = {}
    with engine.lock:
        changes: list[tuple[str, str, Any, Any, Any, bool]] = []
        for name, change in delta.tables.items():
            table = engine.tables.get(name)
            if table is None:
                skipped[name] = len(change.upserts) + len(change.deletes)
                continue
            pk, schema = table.primary_key, table.schema
            now: dict[Any, Any] = {}  # key → row (None: deleted) as this delta goes
            for row, plain in change.upserts:
                if pk not in row:
                    raise CorruptFileError(path, f"table {name!r}: an upsert lacks {pk!r}")
                key = row[pk]
                try:
                    check_primary_key(name, pk, key)
                    if schema is not None:
                        validate_record(name, schema, row)
                except SchemaValidationError as exc:
                    raise CorruptFileError(path, str(exc)) from None
                before = now[key] if key in now else table.rows.get(key)
                kind = INSERT if before is None else UPDATE
                changes.append((kind, name, key, row, before, plain))
                now[key] = row
            for key in change.deletes:
                before = now[key] if key in now else table.rows.get(key)
                if before is not None:
                    changes.append((DELETE, name, key, None, before, True))
                    now[key] = None
        engine.commit_many(changes, ts)
    for name, count in skipped.items():
        _log.warning(
            "%s: table %r is not in the database: its %d change(s) are skipped (the reference "
            "skips them too; create the table first to keep them)",
            path,
            name,
            count,
        )
    return len(changes)


def _current_digest(engine: Engine) -> _digest.StateDigest:
    cursor = engine.cursor
    if cursor is not None and cursor.lsn == engine.lsn:
        return cast(_digest.StateDigest, cursor.digest)
    return state_digest(engine)


_PlanStep = tuple[str, str, Any, Any, Any, bool, int]


def _plan_delta(engine: Engine, doc: Mapping[str, Any]) -> tuple[list[_PlanStep], int]:
    """Check a whole delta against *db* and list the steps that apply it (no change made)."""
    definitions: dict[str, tuple[str, Any]] = {
        name: (t.primary_key, t.schema) for name, t in engine.tables.items()
    }
    rows: dict[str, Mapping[Any, Any]] = {name: t.rows for name, t in engine.tables.items()}
    plan: list[_PlanStep] = []
    ddl = doc.get("ddl", [])
    if type(ddl) is not list:
        raise ValueError("ddl must be a list")
    for event in ddl:
        if type(event) is not dict:
            raise ValueError("ddl entries must be objects")
        name, op = event.get("table"), event.get("op")
        if type(name) is not str or not name:
            raise ValueError(f"bad table name in ddl: {brief(name)}")
        if op == "drop":
            if name not in definitions:
                raise ValueError(f"ddl drops table {name!r}, which does not exist")
            del definitions[name]
            del rows[name]
            plan.append((DROP, name, None, None, None, True, 0))
        elif op == "create":
            if name in definitions:
                raise ValueError(f"ddl creates table {name!r}, which exists")
            definition = {"primary_key": event.get("primary_key"), "schema": event.get("schema")}
            definitions[name] = normalize_definition(name, definition)
            rows[name] = {}
            plan.append((CREATE, name, None, definition, None, True, 0))
        else:
            raise ValueError(f"unknown ddl op {brief(op)}")
    tables = doc.get("tables")
    if type(tables) is not dict:
        raise ValueError("tables must be an object")
    touched = 0
    for name, change in tables.items():
        if name not in definitions:
            raise ValueError(f"changes for table {name!r}, which does not exist")
        if type(change) is not dict:
            raise ValueError(f"table {name!r}: changes must be an object")
        upserts, deletes = change.get("upserts", []), change.get("deletes", [])
        next_pk = from_plain(change.get("next_pk", 1))
        if type(upserts) is not list or type(deletes) is not list or type(next_pk) is not int:
            raise ValueError(f"table {name!r}: malformed upserts/deletes/next_pk")
        primary_key, schema = definitions[name]
        if change.get("primary_key", primary_key) != primary_key:
            raise ValueError(
                f"table {name!r}: the delta's primary key {brief(change.get('primary_key'))} is "
                f"not the table's {primary_key!r}"
            )
        current = rows[name]
        seen: set[Any] = set()
        for plain_row in upserts:
            row, plain = own_record(name, from_plain(plain_row))
            if primary_key not in row:
                raise ValueError(f"table {name!r}: an upsert lacks {primary_key!r}")
            key = row[primary_key]
            check_primary_key(name, primary_key, key)
            if key in seen:
                raise ValueError(f"table {name!r}: key {brief(key)} twice in the delta")
            seen.add(key)
            if schema is not None:
                validate_record(name, schema, row)
            before = current.get(key)
            plan.append((INSERT if before is None else UPDATE, name, key, row, before, plain, 0))
        for plain_key in deletes:
            key = from_plain(plain_key)
            check_primary_key(name, primary_key, key)
            if key in seen or key not in current:
                raise ValueError(f"table {name!r}: delete of key {brief(key)}, which is not there")
            seen.add(key)
            plan.append((DELETE, name, key, None, current[key], True, 0))
        plan.append(("next_pk", name, None, None, None, True, next_pk))
        touched += len(upserts) + len(deletes)
    return plan, touched


def _planned_digest(base: _digest.StateDigest, plan: list[_PlanStep]) -> _digest.StateDigest:
    digest = dict(base)
    for kind, name, _, after, before, _, _ in plan:
        if kind == DROP:
            digest.pop(name, None)
        elif kind == CREATE:
            digest[name] = (0, 0)
        elif kind in (INSERT, UPDATE, DELETE):
            removed = (0, 0) if before is None else (1, row_hash(before))
            added = (0, 0) if after is None else (1, row_hash(after))
            digest[name] = _digest.adjust(digest[name], removed, added)
    return digest

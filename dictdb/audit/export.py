"""The operation history of a backup or durable directory as a Parquet dataset:
`export_parquet`.

One row per operation (or, where only deltas or snapshots hold the history, per net change),
in LSN order, from the same sources and by the same rules as `dictdb.audit.events`: the log
where it reaches, deltas before it, a full snapshot's net change for a stretch no delta
covers. The dataset is partitioned by table (Hive style)::

    OUT/_dictdb_export.json                            the manifest (written last)
    OUT/table=<name>/part-<first lsn>-<last lsn>.parquet   16 hex digits each
    OUT.base/table=<name>/part-<lsn>.parquet           with_base: the rows the history starts from

A table name is percent-encoded in its directory (every byte outside ``A-Z a-z 0-9 - . _ ~``,
as UTF-8): DuckDB, Polars, Arrow and Spark decode it back. A file counts once the manifest
names it; a part file a crashed run left behind is removed by the next run. Re-running the
export on the same OUT appends what came after the manifest's ``last_lsn`` (new files only).

Memory stays bounded: events are converted to Arrow columns a chunk at a time and each table
keeps at most one row group pending (`ROW_GROUP_ROWS`), all tables together
`PENDING_ROWS`. pyarrow is imported only here, when an export runs (extra ``parquet``).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import decimal
import itertools
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import attrs
import orjson

from dictdb.audit._common import (
    DELTA,
    OPERATION,
    SNAPSHOT,
    Progress,
    log_damage,
    segment_bytes,
)
from dictdb.audit.changes import (
    ANY_KEY,
    Event,
    bridge_events,
    file_events,
    history_sources,
)
from dictdb.errors import CorruptFileError, DictDBError, PathError
from dictdb.storage.catalog import BackupFile, iso_utc
from dictdb.storage.persist import read_document
from dictdb.storage.target import Target, as_target
from dictdb.storage.timeline import read_log_lineage
from wal import RecoveryError, from_plain, iter_batches, plain_items, to_plain

__all__ = [
    "MANIFEST",
    "ExportError",
    "ExportReport",
    "MissingExtraError",
    "export_parquet",
    "table_directory",
]

#: The manifest's name inside OUT.
MANIFEST: Final = "_dictdb_export.json"
#: The lock an export holds in OUT (named so that an OUT holding only it reads as empty).
_LOCK: Final = f".{MANIFEST}.lock"
#: The manifest's ``format`` and ``version``.
FORMAT: Final = "dictdb-parquet-export"
VERSION: Final = 1
#: Rows per row group: statistics (min/max of lsn, ts, key...) per this many rows.
ROW_GROUP_ROWS: Final = 131_072
#: Rows per part file at most (8 row groups): readers split work by file.
FILE_ROWS: Final = 8 * ROW_GROUP_ROWS
#: Rows pending in memory across all tables: past it, the largest pending table is written.
PENDING_ROWS: Final = 2 * ROW_GROUP_ROWS
#: Operations converted to columns at once.
CHUNK_ROWS: Final = 65_536

_PART: Final = re.compile(r"^part-[0-9a-f]{16}-[0-9a-f]{16}\.parquet$")
_SAFE: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_INT64: Final = (-(2**63), 2**63 - 1)
_DICTS: Final = frozenset({dict})
#: An operation's fields, in `wal.Operation` order.
#: Value types `_dump_flat` dumps at C speed (UUID is not one: orjson writes it untagged).
_FLAT: Final = frozenset(
    {str, int, float, bool, type(None), _dt.datetime, _dt.date, decimal.Decimal, bytes}
)
_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
_INF: Final = float("inf")
_chain = itertools.chain.from_iterable
#: Columns with few distinct values: dictionary-encoded.
_DICTIONARY: Final = ("kind", "actor", "reason", "granularity", "source", "file")


class ExportError(PathError, ValueError):
    """An export refused: OUT is not an export of this history, or is not an export at all.

    Attributes:
        path: OUT (or the file at fault).
        reason: why, in one line.
    """


class MissingExtraError(DictDBError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str) -> Any:
    """Import *module* (``pyarrow``, ``duckdb``), or say which extra installs it.

    Raises:
        MissingExtraError: it is not installed.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{module} is not installed: pip install 'dictdb-journal[{extra}]'"
        ) from None


@attrs.frozen
class ExportReport:
    """What one `export_parquet` run did.

    Attributes:
        out: the dataset's directory.
        rows_added: rows written by this run.
        first_lsn: the first LSN this run covered (None: nothing new).
        last_lsn: the LSN the export now reaches (the manifest's ``last_lsn``).
        files: the part files this run wrote.
        bytes: their size.
        history_starts_at: the first LSN of the exported history (1 unless older history
            is no longer retained).
        base: the base dataset's directory (``OUT.base``), None without one.
    """

    out: Path
    rows_added: int
    first_lsn: int | None
    last_lsn: int
    files: tuple[Path, ...]
    bytes: int
    history_starts_at: int
    base: Path | None


def table_directory(name: str) -> str:
    """The directory of table *name*: ``table=`` and the name percent-encoded (every byte of
    its UTF-8 outside ``A-Z a-z 0-9 - . _ ~``), so any name is one safe path segment.

    Raises:
        ValueError: the encoded name is longer than a path segment may be (255 bytes).
    """
    encoded = "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in name.encode("utf-8"))
    segment = f"table={encoded}"
    if len(segment) > 255:
        raise ValueError(f"table name too long for a directory once encoded: {name[:40]!r}...")
    return segment


# ---------------------------------------------------------------------------------------------
# Which history: the sources, where it starts, whose it is


@attrs.frozen
class _Source:
    target: Target
    files: tuple[BackupFile, ...]  # the timeline's, by (last LSN, full first)
    log_from: int | None
    log_cap: float
    wal_dir: Path | None
    files_end: int  # the last LSN the files reach (0: none); the log may go further
    timeline: int | None
    ancestry: tuple[tuple[str | None, int | None], ...]  # root first: (lineage, last LSN)


def _source(target: Target, timeline: int | None) -> _Source:
    catalog, files, log_from, log_cap, wal_dir = history_sources(target, timeline)
    files_end = max((f.last_lsn for f in files), default=0)
    history = catalog.history
    chosen = history.timelines.get(timeline) if timeline is not None else history.newest()
    ancestry: list[tuple[str | None, int | None]] = []
    if chosen is not None:
        by_cap = sorted(history.caps(chosen.number).items(), key=lambda item: item[1])
        ancestry = [(lin, None if cap == float("inf") else int(cap)) for lin, cap in by_cap]
    elif wal_dir is not None:
        with contextlib.suppress(CorruptFileError):
            recorded = read_log_lineage(wal_dir)
            if recorded is not None:
                lineage, parent = recorded
                ancestry = [] if parent is None else [(parent[0], parent[1])]
                ancestry.append((lineage, None))
    return _Source(
        target,
        files,
        log_from,
        log_cap,
        wal_dir,
        files_end,
        None if chosen is None else chosen.number,
        tuple(ancestry),
    )


def _history_start(src: _Source) -> tuple[int, str | None, BackupFile | None]:
    # The first LSN the retained history holds, why it is not 1, and the full snapshot it
    # starts from (None: it starts from the empty state, or no snapshot precedes the log).
    if src.log_from == 1 or any(
        (f.is_full and f.last_lsn == 0) or (not f.is_full and f.first_lsn == 1) for f in src.files
    ):
        return 1, None, None
    fulls = [f for f in src.files if f.is_full]
    if not fulls:
        if src.log_from is not None:
            why = f"the log begins at LSN {src.log_from} and no file holds what came before"
            return src.log_from, why, None
        return 1, None, None
    base = fulls[0]
    start = base.last_lsn + 1
    why = (
        f"the oldest full snapshot, {base.path.name}, is at LSN {base.last_lsn}: no file or "
        "log retained holds the operations before it"
    )
    if src.log_from is not None and src.log_from < start:
        start = src.log_from
        why = (
            f"the log begins at LSN {src.log_from} and no file holds what came before (the "
            f"oldest full snapshot, {base.path.name}, is at LSN {base.last_lsn})"
        )
    return start, why, base


def _clip(ancestry: Any, last: int) -> list[tuple[Any, int]]:
    # Which history each LSN 1..last belongs to: (lineage, up to LSN) runs, root first.
    out: list[tuple[Any, int]] = []
    for lineage, cap in ancestry:
        out.append((lineage, last if cap is None else min(int(cap), last)))
        if cap is None or cap >= last:
            break
    return out


def _source_name(place: Any, target: Target) -> str:
    local = target.local_directory()
    if local is not None:
        return str(Path(local).resolve())
    text = str(place)
    return re.sub(r"^([a-z0-9+.-]+://)[^/@]*@", r"\1", text)  # never a credential


# ---------------------------------------------------------------------------------------------
# Events as Arrow columns


def _schema(pa: Any) -> Any:
    return pa.schema(
        [
            pa.field("lsn", pa.int64(), nullable=False),
            pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("key", pa.string()),
            pa.field("key_int", pa.int64()),
            pa.field("key_json", pa.string()),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("actor", pa.string()),
            pa.field("reason", pa.string()),
            pa.field("meta", pa.string()),
            pa.field("before", pa.string()),
            pa.field("after", pa.string()),
            pa.field("granularity", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("file", pa.string(), nullable=False),
        ]
    )


def _base_schema(pa: Any) -> Any:
    return pa.schema(
        [
            pa.field("key", pa.string()),
            pa.field("key_int", pa.int64()),
            pa.field("key_json", pa.string()),
            pa.field("row", pa.string(), nullable=False),
            pa.field("lsn", pa.int64(), nullable=False),
            pa.field("file", pa.string(), nullable=False),
        ]
    )


def _dumps(value: Any) -> str:
    # JSON text of *value*'s tagged form. Each dump is made a str at once: orjson's bytes
    # are allocated oversized, and keeping 100k of them alive cost ~1.5 us each (measured),
    # against ~0.15 us for dump-and-decode.
    return orjson.dumps(to_plain(value)).decode()


def _text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json_column(pa: Any, values: list[Any]) -> Any:
    # JSON text of each value's tagged plain form; None stays null.
    present = [v for v in values if v is not None]
    if not present:
        return pa.nulls(len(values), pa.string())
    dumped: list[str | None] | None = _dump_flat(present)
    if dumped is None:
        dumped = list(map(_text, plain_items(present)))
    if len(present) < len(values):
        it = iter(dumped)
        dumped = [None if v is None else next(it) for v in values]
    return pa.array(dumped, pa.string())


def _dump_flat(rows: list[Any]) -> list[str | None] | None:
    # orjson's dump of each row, checked column-wise (at C speed) to be the JSON of its
    # tagged form: one-level dicts of str, int, float, bool, None, datetime, date, Decimal
    # and bytes (tagged by `_tag`), no one-key dict whose key starts with "$", no int beyond
    # 64 bits (orjson refuses it) and no infinite float (orjson writes it as null: the nulls
    # written must be the Nones). None: not so sure, take the careful way.
    if not _DICTS.issuperset(map(type, rows)):
        return None
    values = list(_chain(map(dict.values, rows)))
    types = set(map(type, values))
    if not _FLAT.issuperset(types):
        return None
    if 1 in set(map(len, rows)) and any(len(r) == 1 and next(iter(r))[:1] == "$" for r in rows):
        return None
    try:
        dumped = list(map(_text if _SCALARS.issuperset(types) else _dump_tagged, rows))
    except orjson.JSONEncodeError:
        return None
    if "".join(dumped).count(":null") != values.count(None):
        return None  # an inf (written null), or a str holding ":null"
    return list(dumped)


def _dump_tagged(row: Any) -> str:
    return orjson.dumps(row, default=_tag, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()


def _tag(value: Any) -> Any:
    # orjson's *default*: the tag `wal.to_plain` writes for a scalar JSON cannot carry.
    t = type(value)
    if t is _dt.datetime:
        text = value.isoformat(timespec="microseconds")
        return {"$datetime_fold": text} if value.fold else {"$datetime": text}
    if t is _dt.date:
        return {"$date": value.isoformat()}
    if t is decimal.Decimal:
        return {"$decimal": str(value)}
    if t is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"not a tagged scalar: {t.__name__}")


def _text_column(pa: Any, values: list[Any]) -> Any:
    # A str as it is; another value as the JSON text of its tagged form; None as null.
    if all(type(v) is str or v is None for v in values):
        return pa.array(values, pa.string())
    return pa.array([v if type(v) is str or v is None else _dumps(v) for v in values], pa.string())


def _key_columns(pa: Any, pc: Any, keys: list[Any]) -> tuple[Any, Any, Any]:
    # (key as text, key as int64 or null, key as exact JSON) for each key (None: null).
    types = set(map(type, keys))
    types.discard(type(None))
    if types <= {int}:
        try:
            as_int = pa.array(keys, pa.int64())
        except (OverflowError, pa.ArrowInvalid):
            pass
        else:
            text = pc.cast(as_int, pa.string())
            return text, as_int, text
    if types <= {str}:
        text = pa.array(keys, pa.string())
        quoted = [None if k is None else _text(k) for k in keys]
        return text, pa.nulls(len(keys), pa.int64()), pa.array(quoted, pa.string())
    if types <= {int, str}:
        ints = [k if type(k) is int else None for k in keys]
        try:
            as_int = pa.array(ints, pa.int64())
        except (OverflowError, pa.ArrowInvalid):
            pass
        else:
            strs = [k if type(k) is str else None for k in keys]
            quoted = [None if k is None else _text(k) for k in strs]
            decimal = pc.cast(as_int, pa.string())
            text = pc.coalesce(pa.array(strs, pa.string()), decimal)
            return text, as_int, pc.coalesce(pa.array(quoted, pa.string()), decimal)
    texts: list[str | None] = []
    ints2: list[int | None] = []
    jsons: list[str | None] = []
    for k in keys:
        t = type(k)
        if k is None:
            texts.append(None)
            ints2.append(None)
            jsons.append(None)
            continue
        dumped = _dumps(k)
        jsons.append(dumped)
        if t is str:
            texts.append(k)
            ints2.append(None)
        elif t is int:
            texts.append(str(k))
            ints2.append(k if _INT64[0] <= k <= _INT64[1] else None)
        else:
            texts.append(dumped)
            ints2.append(None)
    return (
        pa.array(texts, pa.string()),
        pa.array(ints2, pa.int64()),
        pa.array(jsons, pa.string()),
    )


@attrs.define
class _Chunk:
    # Events of one source unit (a log segment's slice, a delta, a bridged snapshot), in
    # columns; `sort`: LSNs may be out of order (a delta's rows carry their own last LSN).
    lsn: list[int]
    ts: list[float]
    kind: list[str]
    table: list[str]
    key: list[Any]
    before: list[Any]
    after: list[Any]
    meta: list[Any]
    granularity: str
    source: str
    file: str
    sort: bool = False


def _chunk_of_events(found: list[Event], granularity: str, source: str, file: str) -> _Chunk:
    return _Chunk(
        [e.lsn for e in found],
        [e.ts for e in found],
        [e.kind for e in found],
        [e.table for e in found],
        [e.key for e in found],
        [e.before for e in found],
        [e.after for e in found],
        [e.meta for e in found],
        granularity,
        source,
        file,
        sort=True,
    )


def _by_table(chunk: _Chunk) -> Iterator[tuple[str, _Chunk]]:
    # Each table's rows of *chunk*, in their order (a stable sort by table, then runs).
    names = chunk.table
    if names.count(names[0]) == len(names):
        yield names[0], chunk
        return
    order = sorted(range(len(names)), key=names.__getitem__)
    columns = ("lsn", "ts", "kind", "key", "before", "after", "meta")
    at = 0
    while at < len(order):
        name = names[order[at]]
        stop = at + 1
        while stop < len(order) and names[order[stop]] == name:
            stop += 1
        pick = order[at:stop]
        taken = {c: [getattr(chunk, c)[i] for i in pick] for c in columns}
        yield (
            name,
            _Chunk(
                table=[name] * len(pick),
                granularity=chunk.granularity,
                source=chunk.source,
                file=chunk.file,
                sort=chunk.sort,
                **taken,
            ),
        )
        at = stop


def _record_batches(pa: Any, pc: Any, schema: Any, chunk: _Chunk) -> Iterator[tuple[str, Any]]:
    # (table, batch) for each table of *chunk*, rows in LSN order.
    for name, part in _by_table(chunk):
        batch = _record_batch(pa, pc, schema, part)
        if part.sort:
            batch = batch.take(pc.sort_indices(batch.column(0)))
        yield name, batch


def _record_batch(pa: Any, pc: Any, schema: Any, chunk: _Chunk) -> Any:
    n = len(chunk.lsn)
    micros = pc.round(pc.multiply(pa.array(chunk.ts, pa.float64()), 1e6))
    ts = pc.cast(pc.cast(micros, pa.int64()), pa.timestamp("us", tz="UTC"))
    key, key_int, key_json = _key_columns(pa, pc, chunk.key)
    metas = chunk.meta
    if metas.count(None) == n:
        nulls = pa.nulls(n, pa.string())
        actor = reason = meta = nulls
    else:
        actor = _text_column(pa, [m.get("actor") if type(m) is dict else None for m in metas])
        reason = _text_column(pa, [m.get("reason") if type(m) is dict else None for m in metas])
        meta = _json_column(pa, metas)
    columns = [
        pa.array(chunk.lsn, pa.int64()),
        ts,
        key,
        key_int,
        key_json,
        pa.array(chunk.kind, pa.string()),
        actor,
        reason,
        meta,
        _json_column(pa, chunk.before),
        _json_column(pa, chunk.after),
        pa.array([chunk.granularity] * n, pa.string()),
        pa.array([chunk.source] * n, pa.string()),
        pa.array([chunk.file] * n, pa.string()),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


# ---------------------------------------------------------------------------------------------
# Writing part files


class _Part:
    """One part file being written: a temp name in the table's directory, the final name
    (``part-<first>-<last>.parquet``) taken when it is closed."""

    def __init__(self, pq: Any, schema: Any, directory: Path, sorting: Any) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".part-", suffix=".parquet.tmp", dir=directory)
        os.close(fd)
        self.tmp = Path(name)
        self.directory = directory
        self.rows = 0
        self.first: int | None = None
        self.last = 0
        self.writer = pq.ParquetWriter(
            str(self.tmp),
            schema,
            compression="zstd",
            use_dictionary=[c for c in _DICTIONARY if c in schema.names],
            write_statistics=True,
            sorting_columns=sorting,
        )

    def write(self, table: Any) -> None:
        self.writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        lsns = table.column("lsn")
        if self.first is None:
            self.first = int(lsns[0].as_py())
        self.last = int(lsns[-1].as_py())
        self.rows += table.num_rows

    def close(self, name: str | None = None) -> Path:
        self.writer.close()
        final = self.directory / (name or f"part-{self.first or 0:016x}-{self.last:016x}.parquet")
        try:
            with open(self.tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.link(self.tmp, final)  # never over another file
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
        _fsync_dir(self.directory)
        return final

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


def _fsync_dir(directory: Path) -> None:
    from wal import fsync_directory

    with contextlib.suppress(OSError):
        fsync_directory(directory)


class _Writer:
    """Pending row groups per table, written as they fill, parts rolled at `FILE_ROWS`."""

    def __init__(self, pa: Any, pq: Any, schema: Any, out: Path) -> None:
        self.pa, self.pq, self.schema, self.out = pa, pq, schema, out
        self.sorting = [pq.SortingColumn(0)]
        self.pending: dict[str, list[Any]] = {}
        self.pending_rows: dict[str, int] = {}
        self.parts: dict[str, _Part] = {}
        self.written: list[dict[str, Any]] = []
        self.total_pending = 0

    def add(self, table: str, batch: Any) -> None:
        if not batch.num_rows:
            return
        self.pending.setdefault(table, []).append(batch)
        self.pending_rows[table] = self.pending_rows.get(table, 0) + batch.num_rows
        self.total_pending += batch.num_rows
        while self.pending_rows.get(table, 0) >= ROW_GROUP_ROWS:  # (0: flushed whole)
            self._flush(table, ROW_GROUP_ROWS)
        while self.total_pending > PENDING_ROWS:
            largest = max(self.pending_rows, key=lambda t: self.pending_rows[t])
            self._flush(largest, self.pending_rows[largest])

    def _flush(self, table: str, rows: int) -> None:
        whole = self.pa.Table.from_batches(self.pending[table], schema=self.schema)
        group, rest = whole.slice(0, rows), whole.slice(rows)
        self.pending[table] = rest.to_batches()
        self.pending_rows[table] -= group.num_rows
        self.total_pending -= group.num_rows
        if not self.pending_rows[table]:
            del self.pending[table], self.pending_rows[table]
        part = self.parts.get(table)
        if part is None:
            part = self.parts[table] = _Part(
                self.pq, self.schema, self.out / table_directory(table), self.sorting
            )
        part.write(group)
        if part.rows >= FILE_ROWS:
            self._close(table)

    def _close(self, table: str) -> None:
        part = self.parts.pop(table)
        path = part.close()
        self.written.append(
            {
                "path": path.relative_to(self.out).as_posix(),
                "table": table,
                "rows": part.rows,
                "first_lsn": part.first,
                "last_lsn": part.last,
                "bytes": path.stat().st_size,
            }
        )

    def finish(self) -> list[dict[str, Any]]:
        for table in list(self.pending):
            self._flush(table, self.pending_rows[table])
        for table in list(self.parts):
            self._close(table)
        return self.written

    def discard(self) -> None:
        for part in self.parts.values():
            part.discard()
        for entry in self.written:
            with contextlib.suppress(OSError):
                (self.out / entry["path"]).unlink()


# ---------------------------------------------------------------------------------------------
# Reading the history in LSN order, a chunk at a time


def _chunks(
    src: _Source, start: int, read: Callable[[int], None], reached: list[int]
) -> Iterator[_Chunk]:
    # As `dictdb.audit.changes._events` with no filter: files up to where the log takes over
    # (deltas by their rows' own last LSN, snapshots bridging what no delta covers), then
    # the log a slice of a segment at a time, to its end as it is read. Rows at or before
    # *start* - 1 are left out (a delta that straddles it cannot be split: only its rows
    # changed later are new). ``reached[0]``: the LSN the history read reaches.
    covered = start - 1
    hi = src.files_end
    reached[0] = covered
    for f in src.files:
        if f.last_lsn <= covered or f.last_lsn > hi:
            continue
        if src.log_from is not None and f.first_lsn >= src.log_from:
            continue  # the log has these operations one by one
        if f.is_full:
            found = bridge_events(src.target, covered, f, None, ANY_KEY, None)
            granularity = SNAPSHOT
        else:
            if f.first_lsn > covered + 1:
                continue  # not chained to what is known; a later full snapshot covers it
            found = list(file_events(f, None, ANY_KEY, None))
            granularity = DELTA
        found = [e for e in found if e.lsn > start - 1]
        if found:
            yield _chunk_of_events(found, granularity, granularity, f.path.name)
        covered = reached[0] = f.last_lsn
        read(f.size)
    if src.wal_dir is None or covered >= src.log_cap:
        return
    limit = int(min(1 << 63, src.log_cap))
    pending: list[list[Any]] = [[] for _ in range(8)]  # a segment's slice, in Batch columns
    name = ""

    def chunk() -> _Chunk:
        lsn, ts, kind, table, key, after, before, meta = pending
        reached[0] = lsn[-1]
        return _Chunk(lsn, ts, kind, table, key, before, after, meta, OPERATION, "log", name)

    try:
        # A decoded frame at a time (`wal.iter_batches`): memory stays bounded by a segment's
        # bytes and CHUNK_ROWS operations, whatever the log's length.
        for segment, batch, size in iter_batches(src.wal_dir, after_lsn=covered):
            if pending[0] and (batch is None or f"wal/{segment.name}" != name):
                yield chunk()
                pending = [[] for _ in range(8)]
            if batch is None:
                read(size)
                continue
            name = f"wal/{segment.name}"
            kept = batch.until(limit)
            if kept is not None:
                for column, values in zip(pending, kept.columns(), strict=True):
                    column.extend(values)
                if len(pending[0]) >= CHUNK_ROWS:
                    yield chunk()
                    pending = [[] for _ in range(8)]
            if batch.last >= limit:
                break
        if pending[0]:
            yield chunk()
    except RecoveryError as exc:
        raise log_damage(exc) from None


# ---------------------------------------------------------------------------------------------
# The manifest


def _read_manifest(out: Path) -> dict[str, Any] | None:
    # The manifest of OUT; None when OUT is missing or empty. Refuses anything else.
    if not out.exists():
        return None
    if not out.is_dir():
        raise ExportError(out, "exists and is not a directory")
    path = out / MANIFEST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        leftovers = [p for p in out.iterdir() if not p.name.startswith(f".{MANIFEST}.")]
        if leftovers:
            raise ExportError(
                out, "is not empty and holds no export manifest: not a dictdb export"
            ) from None
        return None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ExportError(path, f"not a valid export manifest: {exc}") from None
    if type(doc) is not dict or doc.get("format") != FORMAT:
        raise ExportError(path, "not a dictdb export manifest")
    if doc.get("version") != VERSION:
        raise ExportError(path, f"export manifest version {doc.get('version')!r} is not known")
    return doc


def read_manifest(out: str | Path) -> dict[str, Any]:
    """The manifest of the export in *out*.

    Raises:
        ExportError: *out* is not an export.
    """
    if not (Path(out) / MANIFEST).is_file():
        raise ExportError(out, f"not a dictdb export (no {MANIFEST})")
    doc = _read_manifest(Path(out))
    assert doc is not None
    return doc


def _write_manifest(out: Path, doc: dict[str, Any]) -> None:
    from dictdb._atomic import write_atomic

    write_atomic(out / MANIFEST, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")


def _remove_orphans(out: Path, named: set[str]) -> None:
    # Part files a crashed run renamed but no manifest names; temp files it left.
    for directory in out.glob("table=*"):
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            rel = path.relative_to(out).as_posix()
            orphan = _PART.match(path.name) and rel not in named
            temp = path.name.startswith(".part-") and path.name.endswith(".tmp")
            if orphan or temp:
                with contextlib.suppress(OSError):
                    path.unlink()


# ---------------------------------------------------------------------------------------------
# The export


def export_parquet(
    source: str | Path | Target,
    out: str | Path,
    *,
    with_base: bool = False,
    timeline: int | None = None,
    storage_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> ExportReport:
    """Write (or extend) the Parquet dataset of every operation of *source*'s history.

    One row per operation where the log holds the history, per net change of a row where
    only deltas (``granularity == "delta"``, at the LSN of the row's last operation) or
    full snapshots (``"snapshot"``) do. Columns: ``lsn``, ``ts`` (UTC, microseconds),
    ``key`` (a str as it is, an int in decimal, else the JSON of its tagged form),
    ``key_int`` (an int key within 64 bits), ``key_json`` (exact), ``kind``, ``actor``,
    ``reason``, ``meta``, ``before``, ``after`` (JSON with type tags: ``from_plain(
    orjson.loads(x))`` gives the value back), ``granularity``, ``source`` (``log``,
    ``delta``, ``snapshot``) and ``file``; the table is the Hive partition ``table``.

    An existing export in *out* is extended with what came after its ``last_lsn``: new part
    files, the manifest rewritten last. A history that no longer reaches back to LSN 1 is
    exported from where it starts (``history_starts_at`` in the manifest and the report).

    Args:
        source: a backup or durable directory, a URL, or a storage target.
        out: the dataset's directory (local): missing, empty, or an export of this history.
        with_base: also write the rows of the full snapshot the history starts from as a
            sibling dataset ``<out>.base`` (columns ``key``, ``key_int``, ``key_json``,
            ``row``, ``lsn``, ``file``).
        timeline: the timeline to export (default: the newest).
        storage_options: for a URL, passed to fsspec.
        progress: called as ``progress(bytes_read, bytes_total)`` as files and log segments
            are read.

    Raises:
        ExportError: *out* is not an export, or an export of another history (another
            directory, or a timeline that forked before its ``last_lsn``), or the history
            after its ``last_lsn`` is no longer retained.
        MissingExtraError: pyarrow is not installed (``pip install 'dictdb-journal[parquet]'``).
        RestoreError: damage in the log, or no such timeline.
        CorruptFileError: a damaged file.
    """
    pa = require("pyarrow", "parquet")
    pc = require("pyarrow.compute", "parquet")
    pq = require("pyarrow.parquet", "parquet")
    out = Path(out)
    target = as_target(source, storage_options)
    _read_manifest(out)  # an OUT that is no export is refused before anything is made
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        return _export(pa, pc, pq, out, source, target, with_base, timeline, progress)


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    # One export into OUT at a time: two would each append from the same last LSN.
    import fcntl

    fd = os.open(out / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExportError(out, "another export into it is running") from None
        yield
    finally:
        os.close(fd)  # (releases the lock)


def _export(
    pa: Any,
    pc: Any,
    pq: Any,
    out: Path,
    source: Any,
    target: Target,
    with_base: bool,
    timeline: int | None,
    progress: Progress | None,
) -> ExportReport:
    previous = _read_manifest(out)  # again, under the lock: another run may have finished
    src = _source(target, timeline)
    origin = _source_name(source, target)
    history_start, why, base_file = _history_start(src)
    now = iso_utc(time.time())
    if previous is None:
        start = history_start
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "source": origin,
            "timeline": src.timeline,
            "lineage": src.ancestry[-1][0] if src.ancestry else None,
            "ancestry": [list(a) for a in src.ancestry],
            "history_starts_at": history_start,
            "history_starts_why": why,
            "start_snapshot": None if base_file is None else base_file.path.name,
            "first_lsn": history_start,
            "last_lsn": history_start - 1,
            "tables": {},
            "files": [],
            "base": None,
            "created": now,
            "updated": now,
        }
    else:
        manifest = previous
        _check_same_history(out, manifest, src, origin)
        start = int(manifest["last_lsn"]) + 1
        if history_start > start:
            raise ExportError(
                out,
                f"the export reaches LSN {start - 1} but {origin} now holds its history from "
                f"LSN {history_start} on only: export into a new directory",
            )
    _remove_orphans(out, {f["path"] for f in manifest["files"]})
    base_before = manifest.get("base")
    _base(pa, pc, pq, out, manifest, src, base_file, with_base, now)
    base_changed = manifest.get("base") != base_before
    total = sum(f.size for f in src.files) + segment_bytes(src.wal_dir)
    done = 0

    def read(size: int) -> None:
        nonlocal done
        done = min(done + size, total)
        if progress is not None:
            progress(done, total)

    if progress is not None:
        progress(0, total)
    schema = _schema(pa)
    writer = _Writer(pa, pq, schema, out)
    reached_cell = [start - 1]
    try:
        for chunk in _chunks(src, start, read, reached_cell):
            for table, batch in _record_batches(pa, pc, schema, chunk):
                writer.add(table, batch)
        new_files = writer.finish()
    except BaseException:
        writer.discard()
        raise
    if progress is not None:
        progress(total, total)
    reached = max(reached_cell[0], start - 1)
    if previous is not None and not new_files and reached == start - 1 and not base_changed:
        return _report(out, manifest, [], None, base_dir=_base_dir(out, manifest))
    manifest["files"] = [*manifest["files"], *new_files]
    for entry in new_files:
        manifest["tables"].setdefault(entry["table"], table_directory(entry["table"]))
    manifest["last_lsn"] = reached
    manifest["updated"] = now
    if previous is None:
        manifest["timeline"] = src.timeline
    out.mkdir(parents=True, exist_ok=True)
    _write_manifest(out, manifest)
    return _report(
        out, manifest, new_files, start if reached >= start else None, _base_dir(out, manifest)
    )


def _report(
    out: Path,
    manifest: dict[str, Any],
    new_files: list[dict[str, Any]],
    first: int | None,
    base_dir: Path | None,
) -> ExportReport:
    return ExportReport(
        out=out,
        rows_added=sum(f["rows"] for f in new_files),
        first_lsn=first,
        last_lsn=int(manifest["last_lsn"]),
        files=tuple(out / f["path"] for f in new_files),
        bytes=sum(f["bytes"] for f in new_files),
        history_starts_at=int(manifest["history_starts_at"]),
        base=base_dir,
    )


def _base_dir(out: Path, manifest: dict[str, Any]) -> Path | None:
    base = manifest.get("base")
    if not base or not base.get("files"):
        return None
    return out.with_name(out.name + ".base")


def _check_same_history(out: Path, manifest: dict[str, Any], src: _Source, origin: str) -> None:
    last = int(manifest["last_lsn"])
    old = [tuple(a) for a in manifest.get("ancestry") or []]
    new = list(src.ancestry)
    if any(lineage is not None for lineage, _ in old + new):
        if last > 0 and _clip(old, last) != _clip(new, last):
            raise ExportError(
                out,
                f"is an export of another history than {origin}'s (timeline "
                f"{src.timeline}): they differ at or before LSN {last}, the export's end; "
                "export into a new directory",
            )
        if last == 0 and old and new and old[-1][0] != new[-1][0]:
            raise ExportError(out, f"is an export of another history than {origin}'s")
        return
    if manifest.get("source") != origin:
        raise ExportError(
            out,
            f"is an export of {manifest.get('source')}, not of {origin} (neither records a "
            "lineage to compare)",
        )


# ---------------------------------------------------------------------------------------------
# The base: the state the history starts from


def _base(
    pa: Any,
    pc: Any,
    pq: Any,
    out: Path,
    manifest: dict[str, Any],
    src: _Source,
    base_file: BackupFile | None,
    with_base: bool,
    now: str,
) -> Path | None:
    # Writes OUT.base when asked and not there yet; returns it (None: nothing written now).
    if not with_base or manifest.get("base") is not None:
        return None
    start = int(manifest["history_starts_at"])
    wanted = manifest.get("start_snapshot")
    if wanted is None:
        manifest["base"] = {
            "path": None,
            "lsn": 0 if start == 1 else None,
            "file": None,
            "rows": 0,
            "files": [],
            "why": "the history starts from the empty state"
            if start == 1
            else "no full snapshot precedes the retained history",
            "created": now,
        }
        return None
    f = base_file if base_file is not None and base_file.path.name == wanted else None
    if f is None:
        found = [g for g in src.files if g.is_full and g.path.name == wanted]
        if not found:
            raise ExportError(
                out, f"the snapshot the history starts from, {wanted}, is gone: no base"
            )
        f = found[0]
    base_dir = out.with_name(out.name + ".base")
    if base_dir.exists() and any(base_dir.iterdir()):
        raise ExportError(base_dir, "exists and is not empty: remove it to write the base")
    schema = _base_schema(pa)
    written: list[dict[str, Any]] = []
    doc = read_document(f.where)
    try:
        for name, tdoc in doc["tables"].items():
            pk = tdoc["primary_key"]
            special = set(tdoc.get("special", []))
            records = tdoc["records"]
            if not records:
                continue
            keys: list[Any] = []
            for i, plain_row in enumerate(records):
                row = _typed_row(f, plain_row) if i in special else plain_row
                keys.append(row.get(pk))
            key, key_int, key_json = _key_columns(pa, pc, keys)
            n = len(records)
            table = pa.Table.from_arrays(
                [
                    key,
                    key_int,
                    key_json,
                    pa.array(list(map(_text, records)), pa.string()),
                    pa.array([f.last_lsn] * n, pa.int64()),
                    pa.array([f.path.name] * n, pa.string()),
                ],
                schema=schema,
            )
            part = _Part(pq, schema, base_dir / table_directory(name), None)
            try:
                for at in range(0, n, FILE_ROWS):
                    part.write(table.slice(at, FILE_ROWS))
            except BaseException:
                part.discard()
                raise
            path = part.close(f"part-{f.last_lsn:016x}.parquet")
            written.append(
                {
                    "path": path.relative_to(base_dir).as_posix(),
                    "table": name,
                    "rows": n,
                    "bytes": path.stat().st_size,
                }
            )
    except BaseException:
        for entry in written:
            with contextlib.suppress(OSError):
                (base_dir / entry["path"]).unlink()
        raise
    manifest["base"] = {
        "path": f"../{base_dir.name}",
        "lsn": f.last_lsn,
        "file": f.path.name,
        "rows": sum(w["rows"] for w in written),
        "files": written,
        "created": now,
    }
    return base_dir


def _typed_row(f: BackupFile, plain_row: Any) -> dict[str, Any]:
    row = from_plain(plain_row)
    if type(row) is not dict:
        raise CorruptFileError(f.path, f"a row is a tag of a {type(row).__name__}")
    return row

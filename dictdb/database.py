"""The façade: `DictDB`, the reference DictDB's API over the engine, and `restore`.

`DictDB` holds an `Engine` (`dictdb._engine`: tables, the one apply path, the journal) and
speaks the reference API over it; persistence (`save`/`load`, durable `open`, CSV import,
`restore`) is delegated to the storage and durable layers. This is the only module that
imports storage, durable and csv_io: everything below it points down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dictdb import csv_io, durable
from dictdb._engine import Engine
from dictdb.errors import TableNotFoundError
from dictdb.schema import normalize_schema
from dictdb.storage import persist
from dictdb.storage import restore as _restore
from dictdb.storage.legacy import save_legacy
from dictdb.storage.target import Place
from dictdb.table import Table
from wal import Journal, Operation

if TYPE_CHECKING:
    from types import TracebackType

log = logging.getLogger("dictdb")


class TablesView(Mapping[str, Table]):
    """Mapping name → `Table` (the reference's ``db.tables``).

    ``db.tables[name] = Table(name, primary_key, schema)`` adds a standalone table, rows
    included, as the reference documents (see `Table.move_to`); nothing else changes it.
    """

    __slots__ = ("_engine",)

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __getitem__(self, name: str) -> Table:
        return Table.of(self._engine, self._engine.tables[name])

    def __iter__(self) -> Iterator[str]:
        with self._engine.lock:
            return iter(list(self._engine.tables))

    def __len__(self) -> int:
        return len(self._engine.tables)

    def __setitem__(self, name: str, table: Table) -> None:
        if not isinstance(table, Table):
            raise TypeError(f"db.tables[{name!r}] takes a Table, got {type(table).__name__}")
        table.move_to(self._engine, name)
        log.debug("[DictDB] Creating table %r (primary key %r)", name, table.primary_key)


class DictDB:
    """An in-memory database of tables whose every mutation is a journaled operation.

    Args:
        retain_journal: True keeps every operation in memory until a consumer (a backup)
            releases it, so that `journal` reads the history. None (the default) keeps them
            only once a consumer needs them (a `BackupManager`, a snapshot saved as the base
            of deltas): memory stays flat however many writes a database with no backups
            takes. False keeps none: no delta backups.
    """

    __slots__ = ("_closer", "_engine")

    def __init__(self, *, retain_journal: bool | None = None) -> None:
        self._engine = Engine(retain_journal=retain_journal)
        self._closer: durable.Closer | None = None
        log.info("Initialized an empty DictDB instance")

    @classmethod
    def from_engine(cls, engine: Engine, closer: durable.Closer | None = None) -> DictDB:
        """A database over *engine* (as the storage and durable layers build them).

        Args:
            engine: the engine; nothing else may hold it.
            closer: what `close` releases (a durable database's log and lock).
        """
        db = cls.__new__(cls)
        cls._adopt(db, engine, closer)
        return db

    def _adopt(self, engine: Engine, closer: durable.Closer | None) -> None:
        self._engine = engine
        self._closer = closer

    @property
    def engine(self) -> Engine:
        """The engine below this façade (for the storage layer: `BackupManager`, deltas)."""
        return self._engine

    def audit(self, actor: str | None = None, reason: str | None = None, **extra: Any) -> Any:
        """Attach audit metadata to the operations of a block of code (this thread/context).

        ``with db.audit(actor="alice", reason="ticket 42"): ...``: every operation made inside
        carries ``{"actor": "alice", "reason": "ticket 42"}`` as its ``meta``, in the journal
        and in the durable log, where the audit tools read it back. Blocks nest (inner keys
        win).

        Raises:
            ValueDomainError: a value outside the value domain.
        """
        return self._engine.audit_block({"actor": actor, "reason": reason, **extra})

    # -- tables ------------------------------------------------------------------------------

    def create_table(
        self,
        table_name: str,
        primary_key: str = "id",
        schema: Mapping[str, Any] | None = None,
    ) -> Table:
        """Create an empty table.

        Args:
            table_name: a non-empty name, unique in this database.
            primary_key: the key field's name.
            schema: optional mapping field → type (or type name); see `dictdb.schema`.

        Returns:
            The new table (the reference returns None; the table is also reachable through
            `get_table`).

        Raises:
            DuplicateTableError: a table of that name exists.
            SchemaValidationError: the schema names an unsupported type.
        """
        state = self._engine.create(table_name, primary_key, schema)
        log.debug("[DictDB] Creating table %r (primary key %r)", table_name, primary_key)
        return Table.of(self._engine, state)

    def drop_table(self, table_name: str) -> None:
        """Drop a table and its rows.

        Raises:
            TableNotFoundError: no such table.
        """
        self._engine.drop(table_name)
        log.debug("[DictDB] Dropped table %r", table_name)

    def get_table(self, table_name: str) -> Table:
        """The table named *table_name*.

        Raises:
            TableNotFoundError: no such table.
        """
        try:
            return Table.of(self._engine, self._engine.tables[table_name])
        except (KeyError, TypeError):
            raise TableNotFoundError(f"table {table_name!r} does not exist") from None

    def list_tables(self) -> list[str]:
        """Table names, in creation order."""
        with self._engine.lock:
            return list(self._engine.tables)

    @property
    def tables(self) -> TablesView:
        """Mapping name → table; ``db.tables[name] = Table(...)`` adds a standalone table."""
        return TablesView(self._engine)

    def __contains__(self, table_name: object) -> bool:
        return table_name in self._engine.tables

    # -- journal ------------------------------------------------------------------------------

    @property
    def lsn(self) -> int:
        """The number of the last operation applied (0 for a new database)."""
        return self._engine.lsn

    @property
    def journal(self) -> Journal:
        """The in-memory operation journal."""
        return self._engine.journal

    def apply_operation(self, op: Operation) -> None:
        """Replay one operation from outside (another journal, a file) onto this database.

        The operation is checked as a live write would be (value domain, keys, schema, table
        existence, LSN continuity), then applied through the same path as live writes.

        Raises:
            ReplayError: the operation does not follow `lsn` or does not fit the state.
            ValueDomainError, SchemaValidationError, PrimaryKeyError: a bad after-image.
        """
        self._engine.apply_operation(op)

    def replay(self, ops: Iterable[Operation]) -> int:
        """Apply operations in order with `apply_operation`; returns how many."""
        count = 0
        apply = self._engine.apply_operation
        for op in ops:
            apply(op)
            count += 1
        return count

    # -- persistence ----------------------------------------------------------------------------

    def save(
        self,
        filename: str | Path,
        file_format: str | None = None,
        compression: str | None = None,
    ) -> Path:
        """Write a full snapshot atomically; see `dictdb.storage.persist.save`."""
        return persist.save(self._engine, filename, file_format, compression)

    @classmethod
    def load(cls, filename: str | Path, file_format: str | None = None) -> DictDB:
        """Load and verify a full snapshot; see `dictdb.storage.persist.load`."""
        return cls.from_engine(persist.load(filename, file_format))

    def apply_delta(self, filename: str | Path, file_format: str | None = None) -> int:
        """Apply a delta file onto this database; see `dictdb.storage.persist.apply_delta`."""
        return persist.apply_delta(self._engine, filename, file_format)

    def save_legacy(self, filename: str | Path, file_format: str = "json") -> Path:
        """Write the state as a reference DictDB 1.x snapshot, which the reference's own
        `DictDB.load` reads; see `dictdb.storage.legacy.save_legacy`."""
        return save_legacy(self._engine, filename, file_format)

    # -- durable mode ------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path,
        fsync: str = "everysec",
        *,
        segment_size: int = 64 << 20,
        compress: bool = False,
        retain_journal: bool | None = None,
    ) -> DictDB:
        """Open (or create) a durable database in directory *path*.

        The state is rebuilt from what *path* holds (snapshots, deltas, then the log's tail);
        from then on every operation is written to ``path/wal/`` before it is applied.

        Args:
            path: the database directory.
            fsync: ``"always"`` (a write returns once on disk; concurrent writers share
                fsyncs), ``"everysec"`` (a crash loses at most about one second), ``"off"``
                (the OS decides).
            segment_size: log segments rotate past this many bytes.
            compress: zstd-compress log records.
            retain_journal: as for `DictDB` (None: kept once a consumer needs them).

        Returns:
            The database; close it with `close` (or use it as a context manager).

        Raises:
            DatabaseLockedError: *path* is open elsewhere.
            RestoreError, RecoveryError: what *path* holds is damaged.
        """
        engine, closer = durable.open_durable(
            path, fsync, segment_size=segment_size, compress=compress, retain_journal=retain_journal
        )
        return cls.from_engine(engine, closer)

    @property
    def durable_lsn(self) -> int | None:
        """The last operation known to be on disk in the durable log (None: not durable).

        With ``fsync="always"`` every acknowledged operation is; with ``"everysec"`` it lags
        by up to about a second, with ``"off"`` until the OS writes and the log rotates or
        closes. After a log failure, the error names the operations past it.
        """
        sink = self._engine.sink
        return None if sink is None else sink.durable_lsn

    @property
    def durable(self) -> bool:
        """Whether operations go to a durable log (`open`)."""
        return self._engine.sink is not None

    def close(self) -> None:
        """Flush and fsync the durable log and release the directory. Idempotent.

        An in-memory database has nothing to close.
        """
        if self._closer is not None:
            self._closer.close()

    def __enter__(self) -> DictDB:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- inspection ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The whole state as plain data: per table its definition, next key and row copies."""
        return self._engine.to_dict()

    # -- CSV and async persistence (the reference's API) ----------------------------------------

    def import_csv(
        self,
        filepath: str | Path,
        table_name: str,
        *,
        primary_key: str = "id",
        delimiter: str = ",",
        has_header: bool = True,
        encoding: str = "utf-8",
        schema: Mapping[str, Any] | None = None,
        infer_types: bool = True,
        skip_validation: bool = False,
    ) -> int:
        """Create a table from a CSV file, atomically; see `dictdb.csv_io`.

        Args:
            filepath: the CSV file.
            table_name: the new table's name.
            primary_key: the key field (a column, or auto keys when absent or empty).
            delimiter: the field separator.
            has_header: the first row names the columns (else ``col_0``, ``col_1``...).
            encoding: the text encoding.
            schema: field → type; columns are converted to it and rows checked against it.
            infer_types: without a schema, convert columns to int or float when they all
                parse so.
            skip_validation: accepted for compatibility; the schema is always enforced.

        Returns:
            The number of rows imported.

        Raises:
            DuplicateTableError: the table exists.
            SchemaValidationError, DuplicateKeyError, ValueDomainError, PrimaryKeyError: a
                row is refused; no table is left behind.
            OSError, UnicodeDecodeError, csv.Error: the file cannot be read.
        """
        # The file is read and converted first; then, under the lock, the table is created
        # and filled in one statement, or dropped again: nothing is left behind on failure.
        if table_name in self:
            from dictdb.errors import DuplicateTableError

            raise DuplicateTableError(f"table {table_name!r} already exists")
        types = normalize_schema(table_name, primary_key, schema)  # a bad schema fails first
        _, records = csv_io.read_csv(
            filepath,
            delimiter=delimiter,
            has_header=has_header,
            encoding=encoding,
            schema=types,
            infer_types_enabled=infer_types,
        )
        with self._engine.lock:
            table = self.create_table(table_name, primary_key, schema)
            try:
                table.insert(records)
            except BaseException:
                self.drop_table(table_name)
                raise
        return len(records)

    async def async_save(
        self, filename: str | Path, file_format: str = "json", compression: str | None = None
    ) -> Path:
        """`save` in the default thread pool (``asyncio.to_thread``)."""
        import asyncio

        return await asyncio.to_thread(self.save, filename, file_format, compression)

    @classmethod
    async def async_load(cls, filename: str | Path, file_format: str | None = None) -> DictDB:
        """`load` in the default thread pool (``asyncio.to_thread``)."""
        import asyncio

        return await asyncio.to_thread(cls.load, filename, file_format)

    def __repr__(self) -> str:
        return f"<DictDB tables={len(self._engine.tables)} lsn={self._engine.lsn}>"


def restore(
    backup_dir: Place,
    *,
    at: Any = None,
    lsn: int | None = None,
    timeline: int | None = None,
    storage_options: dict[str, Any] | None = None,
    exact: bool = False,
    use_log: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> DictDB:
    """Rebuild a database from a backup directory: the newest state, or the state at a point.

    Snapshots and deltas bring the state to the last file boundary at or before the target;
    where the directory also holds a durable log (``wal/``, written by `DictDB.open`), its
    operations then carry the state to the exact target (or to the log's end).

    A database restored to a point that the directory's history went past starts a new
    lineage: backups it writes into the same directory are a new history, which `restore`
    then follows (it never mixes the two).

    Args:
        backup_dir: the directory or URL (json, pickle and zstd files may be mixed).
        at: a time (datetime, ISO 8601 string or epoch seconds): the state as of that moment,
            along the chosen timeline.
        lsn: the state right after operation *lsn*.
        timeline: the timeline to follow: its parent's history up to the fork, its own after
            (default: the newest, the highest number; never decided by a clock).
        storage_options: for a URL (``s3://bucket/prefix``, ``gs://``, ``az://``,
            ``memory://``), passed to fsspec; credentials otherwise come from the backend's
            standard configuration.
        exact: refuse a target that can only be reached approximately (no log covers it:
            the backup point before it) instead of logging a WARNING naming the point reached.
        use_log: replay the durable log where there is one (False: snapshots and deltas
            alone, e.g. past a damaged log).
        progress: called with (bytes read, bytes in all) as the files are read.

    Returns:
        The database; its `lsn` tells where it stopped (never past the target).

    Raises:
        ValueError: both *at* and *lsn* given.
        RestoreError: nothing restorable at or before the target, an LSN past the newest
            point (the error names it), a gap, an overlap, a damaged file on the way (the
            error names it), damage in the log before the target (named, with its offset and
            the newest point before it), or an approximate target with *exact*.
    """
    return DictDB.from_engine(
        _restore.restore_engine(
            backup_dir,
            at=at,
            lsn=lsn,
            timeline=timeline,
            storage_options=storage_options,
            exact=exact,
            use_log=use_log,
            progress=progress,
        )
    )

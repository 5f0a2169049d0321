"""The database: tables, the operation journal, and the one apply path.

Write path (ARCHITECTURE.md §3): a `Table` method validates and builds after-images under the
database lock, then calls `_commit`/`_commit_many`, which number the operations (LSN),
timestamp them, apply them through `_apply` and append them to the journal. Replay
(`apply_operation`) checks an operation from outside and goes through the same `_apply`.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dictdb.errors import (
    DictDBError,
    DuplicateKeyError,
    DuplicateTableError,
    RecordNotFoundError,
    StateError,
    TableNotFoundError,
    ValueDomainError,
)
from dictdb.schema import normalize_schema, schema_to_names, validate_record
from dictdb.storage.digest import row_hash
from dictdb.table import Table, normalize_definition
from dictdb.values import check_primary_key, copy_row, own_record
from wal import (
    CREATE,
    DELETE,
    DROP,
    INSERT,
    UPDATE,
    Journal,
    Operation,
    OpTuple,
    UnsupportedValueError,
    own_value,
)
from wal.durable import BATCH_FIELDS, LogFailedError
from wal.errors import brief
from wal.framing import WIDTH

if TYPE_CHECKING:
    from types import TracebackType

    from dictdb.storage.persist import BackupCursor
    from wal.durable import DurableLog

log = logging.getLogger("dictdb")

_time = time.time


class ReplayError(DictDBError, ValueError):
    """An operation that cannot be applied to this database (wrong LSN, missing table...)."""


class _AuditBlock:
    __slots__ = ("_db", "_meta", "_token")

    def __init__(self, db: DictDB, meta: dict[str, Any]) -> None:
        try:
            own_value(meta, "audit")  # refuse out-of-domain metadata now, not at backup time
        except UnsupportedValueError as exc:
            raise ValueDomainError("", "audit", exc.path, exc.value_type, exc.reason) from None
        self._db = db
        self._meta = {k: v for k, v in meta.items() if v is not None}
        self._token: contextvars.Token[dict[str, Any] | None] | None = None

    def __enter__(self) -> dict[str, Any]:
        db = self._db
        merged = {**(db._audit.get() or {}), **self._meta}
        self._token = db._audit.set(merged)
        with db._lock:
            db._audit_depth += 1
        return merged

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        db = self._db
        with db._lock:
            db._audit_depth -= 1
        if self._token is not None:
            db._audit.reset(self._token)


class TablesView(Mapping[str, Table]):
    """Read-only mapping name → `Table` (the reference's ``db.tables``)."""

    __slots__ = ("_db",)

    def __init__(self, db: DictDB) -> None:
        self._db = db

    def __getitem__(self, name: str) -> Table:
        return self._db._tables[name]

    def __iter__(self) -> Iterator[str]:
        with self._db._lock:
            return iter(list(self._db._tables))

    def __len__(self) -> int:
        return len(self._db._tables)


def _check_name(what: str, name: Any) -> None:
    if type(name) is not str or not name:
        raise ValueError(f"{what} must be a non-empty str, got {name!r}")


class DictDB:
    """An in-memory database of tables whose every mutation is a journaled operation.

    Args:
        retain_journal: keep operations in memory until a consumer (a backup) releases them
            (default). False numbers and applies operations but keeps none: no history, no
            delta backups, constant memory.
    """

    def __init__(self, *, retain_journal: bool = True) -> None:
        self._lock = threading.RLock()
        self._tables: dict[str, Table] = {}
        self._lsn = 0
        self._journal = Journal(retain=retain_journal, lock=self._lock)
        self._journal_append = self._journal.append_held
        # Persistence state (dictdb.storage.persist): where the next delta starts.
        self._backup_cursor: BackupCursor | None = None
        # Durable mode (dictdb.durable): the log, and whether writers wait for fsync.
        self._wal: DurableLog | None = None
        self._wal_sync = False
        self._closer: Any = None
        self._broken: StateError | None = None  # set when the durable log failed
        # Audit metadata: a per-context value, looked up only while some block is active.
        self._audit: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
            f"dictdb-audit-{id(self)}", default=None
        )
        self._audit_depth = 0
        # Which history this state belongs to: files record it, so that restore never mixes
        # a history abandoned by a restore to an earlier point with the one that went on
        # (dictdb.storage.restore). `_parent` is (lineage, LSN) this history forked from.
        self._lineage = uuid.uuid4().hex
        self._parent: tuple[str, int] | None = None
        # Since which LSN each table's `_pre` map holds the digest hashes of the rows its
        # updates and deletes replaced (their before-images at that cut), so that a delta
        # need not read those rows again: they are scattered over the whole heap by then,
        # ~1 µs each to hash at a million rows, against ~0.2 µs at write time while the old
        # row is in cache. None: not tracked (no backup chain yet).
        self._pre_from: int | None = None

    # -- the one mutation path -------------------------------------------------------------

    def _apply(self, op: OpTuple, plain: bool = True, instance: Table | None = None) -> None:
        """Change state by one operation: used by live writes and by replay alike.

        *plain* tells whether an insert/update after-image is plain (see
        `dictdb.values.own_record`); tables keep the keys of rows that are not.
        """
        lsn, _, kind, name, key, after = op[:6]
        if kind in (INSERT, UPDATE):
            table = self._tables[name]
            if kind == UPDATE:  # (inserts replace no row: they pay this comparison only)
                pre = table._pre
                if pre is not None and key not in pre:
                    pre[key] = row_hash(op[6], key not in table._special)
            if table._indexes:  # the only index cost of a table without indexes
                table._index_write(key, after)
            table._rows[key] = after
            if not plain:
                table._special.add(key)
            elif table._special:
                table._special.discard(key)
            if type(key) is int and key >= table._next_pk:
                table._next_pk = key + 1
        elif kind == DELETE:
            table = self._tables[name]
            pre = table._pre
            if pre is not None and key not in pre:
                pre[key] = row_hash(op[6], key not in table._special)
            if table._indexes:
                table._index_delete(key)
            del table._rows[key]
            if table._special:
                table._special.discard(key)
        elif kind == CREATE:
            primary_key, schema = normalize_definition(name, after)
            table = instance if instance is not None else Table._blank()
            table._setup(self, name, primary_key, schema)
            self._tables[name] = table
        elif kind == DROP:
            del self._tables[name]
        else:  # pragma: no cover - kinds are checked before an operation gets here
            raise ReplayError(f"unknown operation kind {kind!r}")
        self._lsn = lsn

    def _cut_pre(self, lsn: int) -> tuple[int | None, dict[str, dict[Any, int] | None]]:
        """Start tracking before-image hashes afresh from *lsn* (a backup cut; the caller
        holds the lock); return since when the previous maps tracked, and them by table."""
        old = self._pre_from, {name: t._pre for name, t in self._tables.items()}
        self._pre_from = lsn
        for table in self._tables.values():
            table._pre = {}
        return old

    def _commit(
        self,
        kind: str,
        table: str,
        key: Any,
        after: Any,
        before: Any,
        plain: bool = True,
        instance: Table | None = None,
    ) -> None:
        # The caller holds self._lock and has validated everything. *plain* says the images
        # need no tags (see `_apply`); the durable log also needs the meta to need none.
        meta = self._audit.get() if self._audit_depth else None
        op = (self._lsn + 1, _time(), kind, table, key, after, before, meta)
        wal = self._wal
        if wal is not None:
            # `DurableLog.submit_one`, inline (the owner's path, see `wal.durable`): this is
            # every single-row write of a durable database, and the call cost ~60 ns of it.
            if wal.refusing:
                exc = wal.refusal()
                raise self._log_failed(exc) from exc
            pending = wal.pending
            if not plain or meta is not None:
                wal.tagged.append(len(pending) // WIDTH)
            pending.extend(op)
            if len(pending) >= BATCH_FIELDS:
                try:
                    wal.encode_pending()
                except LogFailedError as exc:
                    raise self._log_failed(exc) from exc
            if self._wal_sync:
                self._lock._pending = op[0]  # type: ignore[attr-defined]
        self._apply(op, plain, instance)
        self._journal_append(op)

    def _commit_many(self, changes: Iterable[tuple[str, str, Any, Any, Any, bool]]) -> None:
        # One statement's operations: consecutive LSNs, one timestamp, applied under one lock.
        # The caller has validated every change, so applying cannot stop half-way.
        ts = _time()
        lsn = self._lsn
        meta = self._audit.get() if self._audit_depth else None
        apply = self._apply
        append = self._journal_append
        if self._wal is not None:
            # The whole statement enters the durable log before any of it is applied.
            ops: list[OpTuple] = []
            plains: list[bool] = []
            for kind, table, key, after, before, plain in changes:
                lsn += 1
                ops.append((lsn, ts, kind, table, key, after, before, meta))
                plains.append(plain)
            log_plains = plains if meta is None else [False] * len(plains)
            if not ops:
                return
            self._wal_submit(ops, log_plains)
            for op, plain in zip(ops, plains, strict=True):
                apply(op, plain)
                append(op)
            return
        for kind, table, key, after, before, plain in changes:
            lsn += 1
            op = (lsn, ts, kind, table, key, after, before, meta)
            apply(op, plain)
            append(op)

    def _wal_submit(self, ops: list[OpTuple], plains: list[bool]) -> None:
        # Queue a statement in the durable log; with fsync="always" the lock's outermost
        # release then waits until it is on disk (group commit, dictdb.durable).
        assert self._wal is not None
        try:
            self._wal.submit(ops, plains)
        except LogFailedError as exc:
            raise self._log_failed(exc) from exc
        if self._wal_sync:
            self._lock._pending = ops[-1][0]  # type: ignore[attr-defined]

    def _log_failed(self, exc: BaseException) -> StateError:
        # The log refused or lost a statement: from now on the database refuses every read
        # and write (dictdb.durable.DurableLogError), since memory may be ahead of the disk.
        from dictdb.durable import DurableLogError

        if self._wal is not None and self._wal.failed is not None:
            self._broken = DurableLogError(
                f"the durable log failed ({self._wal.failed!r}): reopen the database to "
                "recover what is on disk"
            )
            return self._broken
        return DurableLogError("the database is closed")

    def audit(self, actor: str | None = None, reason: str | None = None, **extra: Any) -> Any:
        """Attach audit metadata to the operations of a block of code (this thread/context).

        ``with db.audit(actor="alice", reason="ticket 42"): ...``: every operation made inside
        carries ``{"actor": "alice", "reason": "ticket 42"}`` as its ``meta``, in the journal
        and in the durable log, where the audit tools read it back. Blocks nest (inner keys
        win).

        Raises:
            ValueDomainError: a value outside the value domain.
        """
        return _AuditBlock(self, {"actor": actor, "reason": reason, **extra})

    # -- tables ------------------------------------------------------------------------------

    def _create(
        self,
        name: str,
        primary_key: str,
        schema: Mapping[str, Any] | None,
        instance: Table | None = None,
    ) -> Table:
        _check_name("table name", name)
        _check_name("primary_key", primary_key)
        definition = {
            "primary_key": primary_key,
            "schema": schema_to_names(normalize_schema(name, primary_key, schema)),
        }
        with self._lock:
            if name in self._tables:
                raise DuplicateTableError(f"table {name!r} already exists")
            # plain=False: a definition may hold field names that read like tags
            self._commit(CREATE, name, None, definition, None, False, instance)
            log.debug("created table %r (primary key %r)", name, primary_key)
            return self._tables[name]

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
        return self._create(table_name, primary_key, schema)

    def drop_table(self, table_name: str) -> None:
        """Drop a table and its rows.

        Raises:
            TableNotFoundError: no such table.
        """
        with self._lock:
            table = self._tables.get(table_name)
            if table is None:
                raise TableNotFoundError(f"table {table_name!r} does not exist")
            self._commit(DROP, table_name, None, None, table.definition(), False)
            log.debug("dropped table %r", table_name)

    def get_table(self, table_name: str) -> Table:
        """The table named *table_name*.

        Raises:
            TableNotFoundError: no such table.
        """
        try:
            return self._tables[table_name]
        except (KeyError, TypeError):
            raise TableNotFoundError(f"table {table_name!r} does not exist") from None

    def list_tables(self) -> list[str]:
        """Table names, in creation order."""
        with self._lock:
            return list(self._tables)

    @property
    def tables(self) -> TablesView:
        """Read-only mapping name → table."""
        return TablesView(self)

    def __contains__(self, table_name: object) -> bool:
        return table_name in self._tables

    # -- journal ------------------------------------------------------------------------------

    @property
    def lsn(self) -> int:
        """The number of the last operation applied (0 for a new database)."""
        return self._lsn

    @property
    def journal(self) -> Journal:
        """The in-memory operation journal."""
        return self._journal

    def apply_operation(self, op: Operation) -> None:
        """Replay one operation from outside (another journal, a file) onto this database.

        The operation is checked as a live write would be (value domain, keys, schema, table
        existence, LSN continuity), then applied through the same path as live writes.

        Raises:
            ReplayError: the operation does not follow `lsn` or does not fit the state.
            ValueDomainError, SchemaValidationError, PrimaryKeyError: a bad after-image.
        """
        with self._lock:
            if op.lsn != self._lsn + 1:
                raise ReplayError(f"operation {op.lsn} does not follow {self._lsn}")
            kind, name = op.kind, op.table
            table = self._tables.get(name) if type(name) is str else None
            after = op.after
            plain = True
            if kind == CREATE:
                if table is not None:
                    raise ReplayError(f"operation {op.lsn}: table {name!r} already exists")
                _check_name("table name", name)
                normalize_definition(name, after)
            elif kind in (INSERT, UPDATE, DELETE, DROP):
                if table is None:
                    raise ReplayError(f"operation {op.lsn}: no table {name!r}")
                if kind != DROP:
                    self._check_item(op, table)
                    if kind != DELETE:
                        after, plain = own_record(name, after)
            else:
                raise ReplayError(f"operation {op.lsn}: unknown kind {kind!r}")
            owned = (op.lsn, op.ts, kind, name, op.key, after, op.before, op.meta)
            if self._wal is not None:
                # A durable database logs it first, like a live write (else the log would
                # resume past a hole, and the directory would no longer open). Tagged as
                # needed: nothing here says what the before-image or the meta hold.
                self._wal_submit([owned], [False])
            self._apply(owned, plain)
            self._journal_append(owned)

    def _check_item(self, op: Operation, table: Table) -> None:
        key, kind = op.key, op.kind
        check_primary_key(table.table_name, table.primary_key, key)
        present = key in table._rows
        if kind == INSERT and present:
            raise DuplicateKeyError(f"operation {op.lsn}: key {key!r} already exists")
        if kind != INSERT and not present:
            raise RecordNotFoundError(f"operation {op.lsn}: no key {key!r} in {table.table_name!r}")
        if kind == DELETE:
            return
        after = op.after
        field = after.get(table.primary_key) if type(after) is dict else None
        if type(after) is not dict or type(field) is not type(key) or field != key:
            raise ReplayError(
                f"operation {op.lsn}: after-image must be a record whose "
                f"{table.primary_key!r} is {brief(key)}"
            )
        if table.schema is not None:
            validate_record(table.table_name, table.schema, after)

    def replay(self, ops: Iterable[Operation]) -> int:
        """Apply operations in order with `apply_operation`; returns how many."""
        count = 0
        for op in ops:
            self.apply_operation(op)
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
        from dictdb.storage.persist import save

        return save(self, filename, file_format, compression)

    @classmethod
    def load(cls, filename: str | Path, file_format: str | None = None) -> DictDB:
        """Load and verify a full snapshot; see `dictdb.storage.persist.load`."""
        from dictdb.storage.persist import load

        return load(filename, file_format)

    # -- durable mode ------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path,
        fsync: str = "everysec",
        *,
        segment_size: int = 64 << 20,
        compress: bool = False,
        retain_journal: bool = True,
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
            retain_journal: keep operations in memory until a backup releases them.

        Returns:
            The database; close it with `close` (or use it as a context manager).

        Raises:
            DatabaseLockedError: *path* is open elsewhere.
            RestoreError, RecoveryError: what *path* holds is damaged.
        """
        from dictdb.durable import open_durable

        return open_durable(
            path, fsync, segment_size=segment_size, compress=compress, retain_journal=retain_journal
        )

    @property
    def durable(self) -> bool:
        """Whether operations go to a durable log (`open`)."""
        return self._wal is not None

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
        with self._lock:
            return {
                name: {
                    "primary_key": t.primary_key,
                    "schema": schema_to_names(t.schema),
                    "next_pk": t._next_pk,
                    "records": {k: copy_row(r) for k, r in t._rows.items()},
                }
                for name, t in self._tables.items()
            }

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
        from dictdb.csv_io import import_csv

        return import_csv(
            self,
            filepath,
            table_name,
            primary_key=primary_key,
            delimiter=delimiter,
            has_header=has_header,
            encoding=encoding,
            schema=schema,
            infer_types=infer_types,
        )

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
        return f"<DictDB tables={len(self._tables)} lsn={self._lsn}>"

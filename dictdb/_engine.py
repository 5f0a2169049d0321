"""The engine: tables' state, the one apply path, commit, the journal, the lock.

Write path: a `dictdb.table.Table` method validates and builds after-images under
`Engine.lock`, then calls `Engine.commit`/`Engine.commit_many`, which number the operations
(LSN), timestamp them, hand them to the log sink when there is one (durable mode), apply them
through `Engine.apply` and append them to the journal. Replay (`Engine.apply_operation`)
checks an operation from outside and goes through the same `apply`.

The engine imports nothing above it: storage reads a consistent cut of it under its lock and
builds engines through the constructor and `Engine.restored`; durable mode composes it with a
lock and a log sink (`LogSink`) instead of patching it.
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any, Protocol

from dictdb._values import Record, check_primary_key, copy_row, own_record, row_hash
from dictdb.errors import (
    DuplicateKeyError,
    DuplicateTableError,
    DurableLogError,
    RecordNotFoundError,
    ReplayError,
    SchemaValidationError,
    StateError,
    TableNotFoundError,
    ValueDomainError,
)
from dictdb.index import Index
from dictdb.schema import Schema, normalize_schema, schema_to_names, validate_record
from wal import (
    CREATE,
    DELETE,
    DROP,
    INSERT,
    UPDATE,
    Journal,
    LogFailedError,
    Operation,
    OpTuple,
    UnsupportedValueError,
    brief,
    is_text,
    own_value,
)

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

_time = time.time
#: How a key changed since the last backup cut (`TableState.changed`).
_GONE, _THERE, _NEW = 0, 1, 2
#: Fields per operation in the journal's flat lists (`wal.Journal.read_flat`).
_OP_WIDTH = len(Operation._fields)


class Lock(Protocol):
    """What the engine needs of its lock: re-entrant acquire/release (a `threading.RLock`)."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool: ...
    def release(self) -> None: ...
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class SyncLock(Lock, Protocol):
    """A lock whose outermost release waits until the log holds operation `pending`."""

    pending: int


class LogSink(Protocol):
    """Where a durable engine sends each statement before applying it (`wal.DurableLog`).

    Both submit methods are called with the engine's lock held and raise `LogFailedError`
    (queuing nothing) once the log has failed or closed.
    """

    @property
    def failed(self) -> BaseException | None: ...
    def submit(self, ops: list[OpTuple], plain: list[bool]) -> None: ...
    def submit_one(self, op: OpTuple, plain: bool) -> None: ...
    def wait_durable(self, lsn: int) -> None: ...
    @property
    def durable_lsn(self) -> int: ...
    @property
    def directory(self) -> Path: ...
    def drop_segments_through(self, lsn: int) -> list[Path]: ...


class HasEngine(Protocol):
    """Anything with an engine below it: a `DictDB`, or an `Engine` itself."""

    @property
    def engine(self) -> Engine: ...


class TableState:
    """One table's state: definition, rows, and what the engine keeps beside them.

    Rows are owned after-images, never mutated in place (a cut shares them). `special` holds
    the keys of rows that are not plain (`dictdb._values.own_record`). `pre` maps a key changed
    since the last backup cut to the digest hash of its row at that cut (`Engine.pre_from`),
    None while no backup chain is tracked. `indexes` are secondary indexes, maintained by
    `Engine.apply` while non-empty, with each row's insertion rank in `positions`.
    """

    __slots__ = (
        "changed",
        "facade",
        "indexes",
        "name",
        "next_pk",
        "next_position",
        "positions",
        "pre",
        "primary_key",
        "rows",
        "schema",
        "special",
    )

    def __init__(
        self,
        name: str,
        primary_key: str,
        schema: Schema | None,
        *,
        rows: dict[Any, Record] | None = None,
        special: set[Any] | None = None,
        next_pk: int = 1,
        pre: dict[Any, int] | None = None,
    ) -> None:
        self.name = name
        self.primary_key = primary_key
        self.schema = schema
        self.rows: dict[Any, Record] = {} if rows is None else rows
        self.special: set[Any] = set() if special is None else special
        self.pre = pre
        self.next_pk = next_pk
        self.indexes: dict[str, Index] = {}
        self.positions: dict[Any, int] = {}
        self.next_position = 0
        self.facade: Any = None  # the `Table` that speaks for this state, made on demand
        # Key -> how it changed since the last backup cut (`_THERE`: written, and there at the
        # cut; `_NEW`: inserted since; `_GONE`: deleted): the reference's dirty sets. A key
        # inserted and deleted since the cut is forgotten, so the map is bounded by the keys
        # there at the cut plus the rows now, whatever the writes.
        self.changed: dict[Any, int] = {}

    def definition(self) -> dict[str, Any]:
        """The definition as stored in the journal: primary key and schema."""
        return {"primary_key": self.primary_key, "schema": schema_to_names(self.schema)}

    def index_write(self, key: Any, row: Record) -> None:
        """Index an insert or update of *key*, before *row* is stored."""
        old = self.rows.get(key)
        if old is None:
            self.positions[key] = self.next_position
            self.next_position += 1
            for index in self.indexes.values():
                index.add(key, row)
        else:
            for index in self.indexes.values():
                index.replace(key, old, row)

    def index_delete(self, key: Any) -> None:
        """Unindex *key*, before its row is removed."""
        old = self.rows[key]
        del self.positions[key]
        for index in self.indexes.values():
            index.remove(key, old)


def normalize_definition(name: str, definition: Mapping[str, Any]) -> tuple[str, Schema | None]:
    """Read a stored table definition back into (primary key, schema).

    Raises:
        SchemaValidationError: a malformed definition.
    """
    if not isinstance(definition, Mapping):
        raise SchemaValidationError(f"table {name!r}: malformed definition", table=name)
    primary_key = definition.get("primary_key")
    if type(primary_key) is not str or not primary_key:
        raise SchemaValidationError(
            f"table {name!r}: primary_key must be a non-empty str, got {brief(primary_key)}",
            table=name,
        )
    return primary_key, normalize_schema(name, primary_key, definition.get("schema"))


def check_name(what: str, name: Any) -> None:
    """Refuse a table or field name that is not a non-empty str."""
    if type(name) is not str or not name:
        raise ValueError(f"{what} must be a non-empty str, got {name!r}")
    if not is_text(name):
        raise ValueError(f"{what} {name!r} holds a lone surrogate: UTF-8 cannot hold it")


class AuditBlock:
    """``with engine.audit_block(meta):`` attaches *meta* to the operations made inside."""

    __slots__ = ("_engine", "_meta", "_token")

    def __init__(self, engine: Engine, meta: dict[str, Any]) -> None:
        try:
            own_value(meta, "audit")  # refuse out-of-domain metadata now, not at backup time
        except UnsupportedValueError as exc:
            raise ValueDomainError("", "audit", exc.path, exc.value_type, exc.reason) from None
        self._engine = engine
        self._meta = {k: v for k, v in meta.items() if v is not None}
        self._token: contextvars.Token[dict[str, Any] | None] | None = None

    def __enter__(self) -> dict[str, Any]:
        engine = self._engine
        merged = {**(engine.audit.get() or {}), **self._meta}
        self._token = engine.audit.set(merged)
        with engine.lock:
            engine.audit_depth += 1
        return merged

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        engine = self._engine
        with engine.lock:
            engine.audit_depth -= 1
        if self._token is not None:
            engine.audit.reset(self._token)


class Engine:
    """Tables and the operation journal, changed only through `apply`.

    Args:
        retain_journal: True keeps every operation until a consumer (a backup) releases it;
            None (the default) keeps them only once a consumer needs them (`want_journal`:
            a backup manager, a snapshot saved as the base of deltas); False never.
        lock: the re-entrant lock every reader and writer holds (default: a new RLock).
        start_lsn, start_ts: where the journal starts (a state loaded from a snapshot).
        lineage, parent: the history this state belongs to (see `lineage`).
    """

    def __init__(
        self,
        *,
        retain_journal: bool | None = None,
        lock: Lock | None = None,
        start_lsn: int = 0,
        start_ts: float = 0.0,
        lineage: str | None = None,
        parent: tuple[str, int] | None = None,
    ) -> None:
        self.lock: Lock = threading.RLock() if lock is None else lock
        self.tables: dict[str, TableState] = {}
        self.lsn = start_lsn
        self.journal = Journal(
            retain=retain_journal is True, start_lsn=start_lsn, start_ts=start_ts, lock=self.lock
        )
        # None: operations are kept from the moment a consumer needs them (R7).
        self.journal_on_demand = retain_journal is None
        self.journal_append = self.journal.append_held
        # What the storage layer needs to cut the next delta (its `BackupCursor`), opaque here.
        self.cursor: Any = None
        # Durable mode: the log sink, and whether writers wait for the disk on release.
        self.sink: LogSink | None = None
        self.sync_lock: SyncLock | None = None
        self.broken: StateError | None = None  # set when the durable log failed
        # Audit metadata: a per-context value, looked up only while some block is active.
        self.audit: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
            f"dictdb-audit-{id(self)}", default=None
        )
        self.audit_depth = 0
        # Which history this state belongs to: files record it, so that restore never mixes
        # a history abandoned by a restore to an earlier point with the one that went on.
        # `parent` is (lineage, LSN) this history forked from.
        self.lineage = uuid.uuid4().hex if lineage is None else lineage
        self.parent = parent
        # Since which LSN each table's `pre` map holds the digest hashes of the rows its
        # updates and deletes replaced (see `TableState`); None: no backup chain tracked.
        # Hashing the old row at write time, while it is in cache, is far cheaper than at
        # the delta (benchmarks: delta_1pct).
        self.pre_from: int | None = None

    @property
    def engine(self) -> Engine:
        """This engine (so that an engine serves wherever a `HasEngine` is asked for)."""
        return self

    # -- the one mutation path -------------------------------------------------------------

    def apply(self, op: OpTuple, plain: bool = True) -> None:
        """Change state by one operation: used by live writes and by replay alike.

        *plain* tells whether an insert/update after-image is plain (see
        `dictdb._values.own_record`); tables keep the keys of rows that are not.
        """
        kind = op[2]
        if kind == INSERT:  # the hot path: one branch per question
            key, after = op[4], op[5]
            table = self.tables[op[3]]
            if table.indexes:  # the only index cost of a table without indexes
                table.index_write(key, after)
            table.rows[key] = after
            changed = table.changed
            # Deleted since the cut (there at it): written; else new since the cut.
            changed[key] = _THERE if key in changed else _NEW
            if not plain:
                table.special.add(key)
            elif table.special:
                table.special.discard(key)
            if type(key) is int and key >= table.next_pk:
                table.next_pk = key + 1
            self.lsn = op[0]
            return
        lsn, _, kind, name, key, after = op[:6]
        if kind == UPDATE:
            table = self.tables[name]
            pre = table.pre
            if pre is not None and key not in pre:
                pre[key] = row_hash(op[6], key not in table.special)
            if table.indexes:
                table.index_write(key, after)
            table.rows[key] = after
            changed = table.changed
            if key not in changed:  # an update of a row there at the cut
                changed[key] = _THERE
            if not plain:
                table.special.add(key)
            elif table.special:
                table.special.discard(key)
            # (no next_pk step: an updated key exists, and next_pk exceeds every int key)
        elif kind == DELETE:
            table = self.tables[name]
            pre = table.pre
            if pre is not None and key not in pre:
                pre[key] = row_hash(op[6], key not in table.special)
            if table.indexes:
                table.index_delete(key)
            del table.rows[key]
            if table.changed.get(key) == _NEW:  # inserted and deleted since the cut: nothing
                del table.changed[key]
            else:
                table.changed[key] = _GONE
            if table.special:
                table.special.discard(key)
        elif kind == CREATE:
            primary_key, schema = normalize_definition(name, after)
            self.tables[name] = TableState(
                name, primary_key, schema, pre=None if self.pre_from is None else {}
            )
        elif kind == DROP:
            del self.tables[name]
        else:  # pragma: no cover - kinds are checked before an operation gets here
            raise ReplayError(f"unknown operation kind {kind!r}")
        self.lsn = lsn

    def cut_pre(self, lsn: int) -> tuple[int | None, dict[str, dict[Any, int] | None]]:
        """Start tracking before-image hashes afresh from *lsn* (a backup cut; the caller
        holds the lock); return since when the previous maps tracked, and them by table."""
        old = self.pre_from, {name: t.pre for name, t in self.tables.items()}
        self.pre_from = lsn
        for table in self.tables.values():
            table.pre = {}
            table.changed = {}
        return old

    def commit(
        self,
        kind: str,
        table: str,
        key: Any,
        after: Any,
        before: Any,
        plain: bool = True,
    ) -> None:
        """Number, log, apply and journal one operation (a one-operation statement).

        The caller holds the lock and has validated everything. *plain* says the images need
        no tags (see `apply`); the log also needs the meta to need none.
        """
        meta = self.audit.get() if self.audit_depth else None
        op = (self.lsn + 1, _time(), kind, table, key, after, before, meta)
        sink = self.sink
        if sink is not None:
            try:
                sink.submit_one(op, plain and meta is None)
            except LogFailedError as exc:
                raise self.log_failed(exc) from exc
            if self.sync_lock is not None:
                self.sync_lock.pending = op[0]
        self.apply(op, plain)
        self.journal_append(op)

    def commit_many(
        self, changes: Iterable[tuple[str, str, Any, Any, Any, bool]], ts: float | None = None
    ) -> None:
        """One statement's operations: consecutive LSNs, one timestamp, applied under one
        lock. The caller has validated every change, so applying cannot stop half-way.

        *ts* is the statement's time (default: now); replaying a file of the reference
        DictDB gives the time its name records.
        """
        ts = _time() if ts is None else ts
        lsn = self.lsn
        meta = self.audit.get() if self.audit_depth else None
        apply = self.apply
        append = self.journal_append
        if self.sink is not None:
            # The whole statement enters the durable log before any of it is applied.
            ops: list[OpTuple] = []
            plains: list[bool] = []
            for kind, table, key, after, before, plain in changes:
                lsn += 1
                ops.append((lsn, ts, kind, table, key, after, before, meta))
                plains.append(plain)
            if not ops:
                return
            self.log(ops, plains if meta is None else [False] * len(plains))
            for op, plain in zip(ops, plains, strict=True):
                apply(op, plain)
                append(op)
            return
        for kind, table, key, after, before, plain in changes:
            lsn += 1
            op = (lsn, ts, kind, table, key, after, before, meta)
            apply(op, plain)
            append(op)

    def commit_inserts(
        self, table: TableState, keys: Sequence[Any], rows: list[Record], plains: list[bool] | None
    ) -> None:
        """One insert statement of many rows into *table*: what `commit_many` does with
        ``(INSERT, name, key, row, None, plain)`` for each, applied in bulk.

        The caller holds the lock and has validated every row: the keys are distinct, of key
        types and not in the table. *plains* is None when every row is plain. A table with
        indexes takes `commit_many` (each row indexed by `apply`); otherwise `apply_inserts`
        changes the state as applying each operation would, and no operation tuple is made
        unless the log or the journal keeps it.
        """
        count = len(keys)
        if not count:
            return
        name = table.name
        if table.indexes:
            self.commit_many(
                zip(
                    repeat(INSERT),
                    repeat(name),
                    keys,
                    rows,
                    repeat(None),
                    repeat(True) if plains is None else plains,
                )
            )
            return
        ts = _time()
        first = self.lsn + 1
        last = first + count - 1
        meta = self.audit.get() if self.audit_depth else None
        journal = self.journal
        ops: list[OpTuple] | None = None
        if self.sink is not None or journal.retain:
            ops = list(
                zip(
                    range(first, last + 1),
                    repeat(ts),
                    repeat(INSERT),
                    repeat(name),
                    keys,
                    rows,
                    repeat(None),
                    repeat(meta),
                )
            )
            if self.sink is not None:
                # The whole statement enters the durable log before any of it is applied.
                self.log(
                    ops,
                    [False] * count
                    if meta is not None
                    else [True] * count
                    if plains is None
                    else plains,
                )
        self.apply_inserts(table, keys, rows, plains, last)
        if ops is not None and journal.retain:
            append = self.journal_append
            for op in ops:
                append(op)
        else:
            # A journal that keeps nothing only numbers: appending these operations one by
            # one would leave it exactly so (last LSN and time, nothing held).
            journal.advance(last, ts)

    def apply_inserts(
        self,
        table: TableState,
        keys: Sequence[Any],
        rows: list[Record],
        plains: list[bool] | None,
        last_lsn: int,
    ) -> None:
        """`apply` of consecutive INSERT operations into *table* (which has no index) ending
        at LSN *last_lsn*, in bulk; the state after it is the state after applying each.

        *keys* are distinct and not in the table; *plains* is None when every row is plain.
        """
        assert not table.indexes
        table.rows.update(zip(keys, rows, strict=True))
        changed = table.changed
        if not changed:
            table.changed = dict.fromkeys(keys, _NEW)
        elif changed.keys().isdisjoint(keys):
            changed.update(zip(keys, repeat(_NEW)))
        else:
            for key in keys:
                # Deleted since the cut (there at it): written; else new since the cut.
                changed[key] = _THERE if key in changed else _NEW
        special = table.special
        if plains is None:
            if special:
                special.difference_update(keys)
        else:
            for key, plain in zip(keys, plains, strict=True):
                if not plain:
                    special.add(key)
                elif special:
                    special.discard(key)
        if type(keys) is range:
            top = keys[-1]
        else:
            kinds = set(map(type, keys))
            if int not in kinds:
                top = None
            elif len(kinds) == 1:
                top = max(keys)
            else:
                top = max(key for key in keys if type(key) is int)
        if top is not None and top >= table.next_pk:
            table.next_pk = top + 1
        self.lsn = last_lsn

    def log(self, ops: list[OpTuple], plains: list[bool]) -> None:
        """Queue a statement in the log sink; with a sync lock, its outermost release then
        waits until the statement is on disk (group commit, `dictdb.durable`)."""
        assert self.sink is not None
        try:
            self.sink.submit(ops, plains)
        except LogFailedError as exc:
            raise self.log_failed(exc) from exc
        if self.sync_lock is not None:
            self.sync_lock.pending = ops[-1][0]

    def attach_log(self, sink: LogSink, sync_lock: SyncLock | None = None) -> None:
        """From now on, send every operation to *sink* before applying it.

        *sync_lock* is the engine's own lock when writers wait for the disk (it must be the
        lock the engine was built with).
        """
        if sync_lock is not None and sync_lock is not self.lock:
            raise ValueError("sync_lock must be the engine's lock")
        self.sink = sink
        self.sync_lock = sync_lock

    def log_failed(self, exc: BaseException) -> StateError:
        """The error for a statement the log refused or lost. After a log failure the engine
        refuses every read and write: memory may be ahead of the disk."""
        sink = self.sink
        if sink is not None and sink.failed is not None:
            durable = sink.durable_lsn
            lost = (durable + 1, self.lsn) if self.lsn > durable else None
            where = (
                ""
                if lost is None
                else f"; operations {lost[0]}..{lost[1]} were applied (with fsync='everysec' "
                "or 'off', maybe acknowledged) but are not known to be on disk"
            )
            self.broken = DurableLogError(
                f"the durable log failed ({sink.failed!r}): the last operation on disk is "
                f"LSN {durable}{where}; reopen the database to recover what is on disk",
                durable_lsn=durable,
                lost=lost,
            )
            return self.broken
        return DurableLogError("the database is closed")

    def check_live(self, table: TableState) -> None:
        """Raise unless *table* may be read or written: the log has not failed, and the
        table has not been dropped. The caller holds the lock."""
        if self.broken is not None:
            raise self.broken
        sink = self.sink
        if sink is not None and sink.failed is not None:
            raise self.log_failed(sink.failed)
        if self.tables.get(table.name) is not table:
            raise TableNotFoundError(f"table {table.name!r} was dropped")

    def want_journal(self) -> bool:
        """Keep the operations appended from now on, for a consumer that will cut deltas
        from them (unless the database was made with ``retain_journal=False``). Returns
        whether the journal retains.

        A journal kept only for such a consumer (not asked for by ``retain_journal=True``)
        needs only their net effect per key between backups: it folds them as it goes,
        told by the tables' dirty maps how many keys changed since the cut (R7)."""
        journal = self.journal
        if self.journal_on_demand and not journal.compacting:
            journal.retain_from_now()
            tables = self.tables
            journal.distinct_hint = lambda: sum(len(t.changed) for t in tables.values())
            journal.compacting = True
        return journal.retain

    def changed_keys(self, table: TableState) -> tuple[set[Any], set[Any]]:
        """Keys of *table* written, and keys deleted (and absent now), since the last backup
        cut or `Table.clear_dirty_tracking`: the reference's dirty sets. The caller holds the
        lock."""
        written = {k for k, w in table.changed.items() if w != _GONE and k in table.rows}
        deleted = {k for k, w in table.changed.items() if w == _GONE and k not in table.rows}
        return written, deleted

    def audit_block(self, meta: dict[str, Any]) -> AuditBlock:
        """A context manager attaching *meta* to the operations made inside it."""
        return AuditBlock(self, meta)

    # -- tables ------------------------------------------------------------------------------

    def create(self, name: str, primary_key: str, schema: Mapping[str, Any] | None) -> TableState:
        """Create an empty table (DDL goes through the journal like any operation).

        Raises:
            DuplicateTableError: a table of that name exists.
            SchemaValidationError: the schema names an unsupported type.
        """
        check_name("table name", name)
        check_name("primary_key", primary_key)
        definition = {
            "primary_key": primary_key,
            "schema": schema_to_names(normalize_schema(name, primary_key, schema)),
        }
        with self.lock:
            if name in self.tables:
                raise DuplicateTableError(f"table {name!r} already exists")
            # plain=False: a definition may hold field names that read like tags
            self.commit(CREATE, name, None, definition, None, False)
            return self.tables[name]

    def drop(self, name: str) -> None:
        """Drop a table and its rows.

        Raises:
            TableNotFoundError: no such table.
        """
        with self.lock:
            table = self.tables.get(name)
            if table is None:
                raise TableNotFoundError(f"table {name!r} does not exist")
            self.commit(DROP, name, None, None, table.definition(), False)

    # -- replay --------------------------------------------------------------------------------

    def apply_operation(self, op: Operation) -> None:
        """Replay one operation from outside (another journal, a file).

        The operation is checked as a live write would be (value domain, keys, schema, table
        existence, LSN continuity), then applied through the same path as live writes.

        Raises:
            ReplayError: the operation does not follow `lsn` or does not fit the state.
            ValueDomainError, SchemaValidationError, PrimaryKeyError: a bad after-image.
        """
        with self.lock:
            if op.lsn != self.lsn + 1:
                raise ReplayError(f"operation {op.lsn} does not follow {self.lsn}")
            kind, name = op.kind, op.table
            table = self.tables.get(name) if type(name) is str else None
            after = op.after
            plain = True
            if kind == CREATE:
                if table is not None:
                    raise ReplayError(f"operation {op.lsn}: table {name!r} already exists")
                check_name("table name", name)
                normalize_definition(name, after)
            elif kind in (INSERT, UPDATE, DELETE, DROP):
                if table is None:
                    raise ReplayError(f"operation {op.lsn}: no table {name!r}")
                if kind != DROP:
                    _check_item(op, table)
                    if kind != DELETE:
                        after, plain = own_record(name, after)
            else:
                raise ReplayError(f"operation {op.lsn}: unknown kind {kind!r}")
            owned = (op.lsn, op.ts, kind, name, op.key, after, op.before, op.meta)
            if self.sink is not None:
                # A durable engine logs it first, like a live write (else the log would
                # resume past a hole, and the directory would no longer open). Tagged as
                # needed: nothing here says what the before-image or the meta hold.
                self.log([owned], [False])
            self.apply(owned, plain)
            self.journal_append(owned)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The whole state as plain data: per table its definition, next key and row copies."""
        with self.lock:
            return {
                name: {
                    "primary_key": t.primary_key,
                    "schema": schema_to_names(t.schema),
                    "next_pk": t.next_pk,
                    "records": {k: copy_row(r) for k, r in t.rows.items()},
                }
                for name, t in self.tables.items()
            }


def _check_item(op: Operation, table: TableState) -> None:
    key, kind = op.key, op.kind
    check_primary_key(table.name, table.primary_key, key)
    present = key in table.rows
    if kind == INSERT and present:
        raise DuplicateKeyError(f"operation {op.lsn}: key {key!r} already exists")
    if kind != INSERT and not present:
        raise RecordNotFoundError(f"operation {op.lsn}: no key {key!r} in {table.name!r}")
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
        validate_record(table.name, table.schema, after)

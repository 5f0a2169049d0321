"""Tables: the reference DictDB's CRUD API over journaled, copy-on-write rows.

Every mutation method validates everything first (value domain, primary key, schema), then
hands operations to the database's single apply path, so a refused call changes nothing and
journals nothing. Stored rows are never mutated in place; readers get copies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast, overload

from dictdb._engine import Engine, Lock, TableState
from dictdb._select import Columns, OrderBy, run_select
from dictdb._values import (
    INT64_MAX,
    PK_TYPES,
    Record,
    check_primary_key,
    copy_row,
    own_record,
    own_records,
)
from dictdb.aggregate import Agg, check_aggregations, run_aggregate
from dictdb.errors import (
    DuplicateKeyError,
    IndexNotFoundError,
    PrimaryKeyError,
    RecordNotFoundError,
)
from dictdb.index import Index, candidates, make_index, matching_rows
from dictdb.query import Compare, Field, Predicate, as_predicate
from dictdb.schema import Schema, validate_record
from wal import DELETE, INSERT, UPDATE

OnConflict = Literal["update", "ignore", "error"]


class RecordsView(Mapping[Any, Record]):
    """A read-only mapping primary key → copy of the row (the reference's ``records``)."""

    __slots__ = ("_lock", "_t")

    def __init__(self, lock: Lock, state: TableState) -> None:
        self._lock = lock
        self._t = state

    def __getitem__(self, key: Any) -> Record:
        with self._lock:
            return copy_row(self._t.rows[key])

    def __iter__(self) -> Iterator[Any]:
        with self._lock:
            return iter(list(self._t.rows))

    def __len__(self) -> int:
        return len(self._t.rows)

    def __contains__(self, key: object) -> bool:
        return key in self._t.rows


class Table:
    """A table of dict records keyed by a primary key field.

    Built by `DictDB.create_table`; ``Table(name, primary_key, schema)`` on its own also works
    (it then lives in a private database of its own).

    Args:
        name: the table's name.
        primary_key: the name of the key field (default ``"id"``).
        schema: optional mapping field → type; see `dictdb.schema`.
    """

    # __dict__: a table accepts attributes of its own, e.g. a replaced validate_record.
    __slots__ = ("__dict__", "_engine", "_standalone", "_t", "primary_key", "schema", "table_name")

    _engine: Engine
    _t: TableState
    table_name: str
    primary_key: str
    schema: Schema | None

    def __init__(
        self, name: str, primary_key: str = "id", schema: Mapping[str, Any] | None = None
    ) -> None:
        engine = Engine()
        self._bind(engine, engine.create(name, primary_key, schema))
        self._standalone = True

    @classmethod
    def of(cls, engine: Engine, state: TableState) -> Table:
        """The table that speaks for *state* in *engine* (made once, then the same object)."""
        table = state.facade
        if table is None:
            table = cls.__new__(cls)
            cls._bind(table, engine, state)
            table._standalone = False
        return table  # type: ignore[no-any-return]

    def _bind(self, engine: Engine, state: TableState) -> None:
        self._engine = engine
        self._t = state
        self.table_name = state.name
        self.primary_key = state.primary_key
        self.schema = state.schema
        state.facade = self

    def move_to(self, engine: Engine, name: str) -> None:
        """Make this standalone table the table *name* of *engine*: ``db.tables[name] = t``.

        The reference's way to give a table a schema (``db.tables["users"] = Table("users",
        schema=...)``). The table is created in *engine* (one operation), its rows inserted
        as one atomic batch, its indexes built again; from then on this object speaks for
        that table. The auto-key counter continues after the highest int key moved.

        Raises:
            DuplicateTableError: *engine* already has a table *name*.
            ValueError: this table already belongs to a database.
        """
        if self._engine is engine and self.table_name == name:
            return
        if not self._standalone:
            raise ValueError(
                f"table {self.table_name!r} belongs to a database; only a table made with "
                "Table(...) can be added to one"
            )
        old_engine, old_state = self._engine, self._t
        with old_engine.lock:
            rows = list(old_state.rows.values())
            indexes = [(field, index.index_type) for field, index in old_state.indexes.items()]
        with engine.lock:
            self._bind(engine, engine.create(name, self.primary_key, self.schema))
            try:
                if rows:
                    self._insert_many(rows)
            except BaseException:
                engine.drop(name)
                self._bind(old_engine, old_state)
                raise
            self._standalone = False
            for field, index_type in indexes:
                self.create_index(field, index_type)

    # -- the fields DSL -------------------------------------------------------------------

    def __getattr__(self, name: str) -> Field:
        # Only reached for names that are not real attributes, so members are never shadowed.
        if name.startswith("_"):
            raise AttributeError(name)
        # Kept as an attribute: the next ``table.name`` is a plain lookup, not a failed one
        # (half a microsecond) then this call. A Field holds only its name: sharing it is safe.
        field = self.__dict__[name] = Field(name)
        return field

    def __getitem__(self, name: str) -> Field:
        """``table["count"]``: the field named *name*, even if a member has that name."""
        return Field(name)

    # -- state ----------------------------------------------------------------------------

    def _live(self) -> None:
        self._engine.check_live(self._t)

    def definition(self) -> dict[str, Any]:
        """The table's definition as stored in the journal: primary key and schema."""
        return self._t.definition()

    @property
    def next_pk(self) -> int:
        """The smallest auto key the next insert may take (it skips keys in use)."""
        return self._t.next_pk

    # -- writes ------------------------------------------------------------------------------

    def _check_row(self, row: Record, key: Any) -> None:
        if type(key) not in PK_TYPES:
            check_primary_key(self.table_name, self.primary_key, key)
        if self.schema is not None:
            self._check_schema(row, self._extra_check())

    def _extra_check(self) -> Callable[[Record], None] | None:
        """A `validate_record` replaced on this table or overridden by a subclass, if any."""
        hook: Callable[[Record], None] | None = self.__dict__.get("validate_record")
        if hook is None and type(self).validate_record is not Table.validate_record:
            hook = self.validate_record
        return hook

    def _check_schema(self, row: Record, hook: Callable[[Record], None] | None) -> None:
        # The schema always holds (a stored row must load back); a replaced validate_record
        # may only refuse more, and sees a copy, so it cannot change what is stored.
        validate_record(self.table_name, cast(Schema, self.schema), row)
        if hook is not None:
            hook(copy_row(row))

    def _auto_key(self) -> int:
        key = self._t.next_pk
        rows = self._t.rows
        while key in rows:
            key += 1
        return key

    @overload
    def insert(self, record: Record, *, skip_validation: bool = False) -> Any: ...

    @overload
    def insert(
        self,
        record: list[Record],
        *,
        batch_size: int | None = None,
        skip_validation: bool = False,
    ) -> list[Any]: ...

    def insert(
        self,
        record: Record | list[Record],
        *,
        batch_size: int | None = None,
        skip_validation: bool = False,
    ) -> Any:
        """Insert one record (returns its key) or a list of records (returns their keys).

        A missing or None primary key is assigned: the next free integer. A list is inserted
        atomically: every record is checked before any is stored.

        Args:
            record: a dict, or a list of dicts.
            batch_size: accepted for compatibility; a list is always one atomic batch.
            skip_validation: accepted for compatibility; the schema is always enforced, since
                a row that broke it could not be restored from a backup.

        Returns:
            The primary key, or the list of primary keys.

        Raises:
            DuplicateKeyError: the key (or a key twice in the list) is taken.
            ValueDomainError: a value is outside the value domain.
            SchemaValidationError: the record breaks the schema.
            PrimaryKeyError: the key has a refused type.
        """
        if type(record) is list:
            return self._insert_many(record)
        # The hot path of the library: measured in benchmarks/, kept flat on purpose.
        engine = self._engine
        t = self._t
        name = self.table_name
        lock = engine.lock
        lock.acquire()
        try:
            if engine.tables.get(name) is not t or engine.broken is not None:
                self._live()
            row, plain = own_record(name, record)
            pk_name = self.primary_key
            key = row.get(pk_name)
            if key is None:
                key = t.next_pk
                if key in t.rows:
                    key = self._auto_key()
                row[pk_name] = key
                # The row now holds a value that needs a tag: an auto key past int64 (after a
                # huge explicit key), or it is the key alone, named "$...": it reads as a tag.
                if key > INT64_MAX or (len(row) == 1 and pk_name[0] == "$"):
                    plain = False
            else:
                if type(key) not in PK_TYPES:  # before any lookup: [1] is unhashable
                    check_primary_key(name, pk_name, key)
                if key in t.rows:
                    raise DuplicateKeyError(
                        f"table {name!r}: a record with {pk_name}={key!r} already exists"
                    )
            if self.schema is not None:
                self._check_row(row, key)
            engine.commit(INSERT, name, key, row, None, plain)
            return key
        finally:
            lock.release()

    def _insert_many(self, records: list[Record]) -> list[Any]:
        engine = self._engine
        with engine.lock:
            self._live()
            t = self._t
            name, pk_name, rows = self.table_name, self.primary_key, t.rows
            # Auto keys: the next free integers, when none of them is taken (the counter is
            # past every int key, so only a state built by hand could take one).
            first = t.next_pk
            last = first + len(records) - 1
            auto: list[Any] = []
            if last <= INT64_MAX and (not rows or rows.keys().isdisjoint(range(first, last + 1))):
                auto = list(range(first, last + 1))  # one int object per key, shared
            owned, plains, keyed = own_records(name, records, pk_name if auto else None, auto)
            keys: list[Any]
            if auto and not keyed:
                keys = auto  # every row got its auto key
            else:
                flags = [True] * len(owned) if plains is None else plains
                keys = self._batch_keys(owned, flags)
                plains = None if all(flags) else flags
            if self.schema is not None:
                hook = self._extra_check()
                for row in owned:
                    self._check_schema(row, hook)
            engine.commit_inserts(t, keys, owned, plains)
            return keys

    def _batch_keys(self, owned: list[Record], plains: list[bool]) -> list[Any]:
        """The keys of a batch of owned rows, auto keys assigned (and *plains* updated)."""
        name, pk_name, rows = self.table_name, self.primary_key, self._t.rows
        explicit: set[Any] = set()
        for row in owned:
            key = row.get(pk_name)
            if key is None:
                continue
            if type(key) not in PK_TYPES:
                check_primary_key(name, pk_name, key)
            if key in rows or key in explicit:
                raise DuplicateKeyError(
                    f"table {name!r}: a record with {pk_name}={key!r} already exists"
                    + ("" if key in rows else " earlier in the same batch")
                )
            explicit.add(key)
        keys: list[Any] = []
        next_key = self._t.next_pk
        # Keys as the same records inserted one by one would get them (an explicit int
        # key moves the counter past it), skipping keys named anywhere in the batch.
        for position, row in enumerate(owned):
            key = row.get(pk_name)
            if type(key) is int:
                if key >= next_key:
                    next_key = key + 1
            elif key is None:
                while next_key in rows or next_key in explicit:
                    next_key += 1
                key = row[pk_name] = next_key
                next_key += 1
                if key > INT64_MAX or (len(row) == 1 and pk_name[0] == "$"):
                    plains[position] = False  # the row needs a tag (see `insert`)
            keys.append(key)
        return keys

    def upsert(self, record: Record, on_conflict: OnConflict = "update") -> tuple[Any, str]:
        """Insert a record, or deal with an existing one of the same key.

        Args:
            record: the record; a missing or None key means insert with an auto key.
            on_conflict: ``"update"`` merges *record*'s fields into the existing row (fields
                it does not name are kept), ``"ignore"`` leaves the row, ``"error"`` raises.

        Returns:
            ``(primary_key, action)`` with action ``"inserted"``, ``"updated"`` or
            ``"ignored"``.

        Raises:
            ValueError: an unknown *on_conflict*.
            DuplicateKeyError: the key exists and *on_conflict* is ``"error"``.
            ValueDomainError, SchemaValidationError, PrimaryKeyError: as for insert; a
                refused upsert leaves the old row as it was.
        """
        if on_conflict not in ("update", "ignore", "error"):
            raise ValueError(
                f"on_conflict must be 'update', 'ignore' or 'error', got {on_conflict!r}"
            )
        engine = self._engine
        t = self._t
        name = self.table_name
        lock = engine.lock
        lock.acquire()
        try:
            if engine.tables.get(name) is not t or engine.sink is not None:
                self._live()  # (a durable engine checks its log first, as reads do)
            pk_name = self.primary_key
            key = record.get(pk_name) if type(record) is dict else None
            if key is not None and type(key) not in PK_TYPES:
                check_primary_key(name, pk_name, key)
            old = None if key is None else t.rows.get(key)
            if old is None:
                return self.insert(record), "inserted"
            if on_conflict != "update":
                if on_conflict == "ignore":
                    return key, "ignored"
                raise DuplicateKeyError(
                    f"table {name!r}: a record with {pk_name}={key!r} already exists"
                )
            changes, plain = own_record(name, record)
            row = {**old, **changes}
            if self.schema is not None:
                self._check_row(row, key)
            engine.commit(UPDATE, name, key, row, old, plain and key not in t.special)
            return key, "updated"
        finally:
            lock.release()

    def update(self, changes: Record, where: Predicate | None = None) -> int:
        """Merge *changes* into every row matching *where* (all rows when None).

        Atomic: every new row is checked before any is stored.

        Returns:
            The number of rows updated.

        Raises:
            RecordNotFoundError: no row matched.
            PrimaryKeyError: *changes* would give a row a different primary key.
            ValueDomainError, SchemaValidationError: as for insert.
        """
        engine = self._engine
        t = self._t
        name = self.table_name
        with engine.lock:
            if engine.tables.get(name) is not t or engine.sink is not None:
                self._live()
            owned, changes_plain = own_record(name, changes)
            matches = self._matching(where)
            if not matches:
                raise RecordNotFoundError(f"table {name!r}: no record matches {where!r} to update")
            pk_name = self.primary_key
            new_key = owned.get(pk_name, _MISSING)
            special = t.special
            if len(matches) == 1 and self.schema is None:
                # One row (an update by key): one operation, no batch around it.
                key, old = matches[0]
                if new_key is not _MISSING:
                    self._keep_key(key, new_key)
                row = {**old, **owned}
                if new_key is not _MISSING:
                    row[pk_name] = key  # keep the key's own type (1 == 1.0 == True)
                engine.commit(UPDATE, name, key, row, old, changes_plain and key not in special)
                return 1
            ops = []
            hook = self._extra_check() if self.schema is not None else None
            for key, old in matches:
                if new_key is not _MISSING:
                    self._keep_key(key, new_key)
                row = {**old, **owned}
                if new_key is not _MISSING:
                    row[pk_name] = key
                if self.schema is not None:
                    self._check_schema(row, hook)
                plain = changes_plain and key not in special
                ops.append((UPDATE, name, key, row, old, plain))
            engine.commit_many(ops)
            return len(ops)

    def _keep_key(self, key: Any, new_key: Any) -> None:
        """Refuse an update that would give the row of *key* the key *new_key*."""
        if new_key != key:
            raise PrimaryKeyError(
                f"table {self.table_name!r}: update cannot change primary key "
                f"{self.primary_key} from {key!r} to {new_key!r}; delete and insert instead",
                table=self.table_name,
                field=self.primary_key,
            )

    def delete(self, where: Predicate | None = None) -> int:
        """Delete every row matching *where* (all rows when None).

        Returns:
            The number of rows deleted.

        Raises:
            RecordNotFoundError: no row matched.
        """
        engine = self._engine
        with engine.lock:
            self._live()
            matches = self._matching(where)
            if not matches:
                raise RecordNotFoundError(
                    f"table {self.table_name!r}: no record matches {where!r} to delete"
                )
            special = self._t.special
            engine.commit_many(
                [
                    (DELETE, self.table_name, key, None, old, key not in special)
                    for key, old in matches
                ]
            )
            return len(matches)

    # -- reads -------------------------------------------------------------------------------

    def _matching_rows(self, where: Any) -> list[Record]:
        """The stored rows matching *where*, in table order, with no (key, row) pair built:
        a tuple holding a dict stays tracked by the garbage collector, and a large result
        set off collections that cost more than the select (decision record of 2026-12-06,
        index builds and range scans). The caller holds the lock."""
        t = self._t
        if where is None:
            return list(t.rows.values())
        return matching_rows(as_predicate(where), t.indexes, t.rows, t.positions, self.primary_key)

    def _matching(self, where: Any) -> list[tuple[Any, Record]]:
        """(key, stored row) pairs matching *where*; the caller holds the lock."""
        t = self._t
        rows = t.rows
        if where is None:
            return list(rows.items())
        if type(where) is Compare and where.op == "==" and where.field == self.primary_key:
            # ``pk == value``: one lookup in the row map (as the planner would), for a value
            # of a key type (distinct key types never compare equal; 1.0 or True must not
            # find key 1). The row's own key is returned, as writes journal it.
            value = where.value
            if type(value) in PK_TYPES:
                row = rows.get(value)
                if row is None:
                    return []
                key = row[self.primary_key]
                return [(key, row)] if key == value else []
        pred = as_predicate(where)
        test = pred.fn
        keys = candidates(pred, t.indexes, rows, self.primary_key)
        if keys is None:
            return [(key, row) for key, row in rows.items() if test(row)]
        # Every candidate is tested with the full predicate, and results keep table order.
        count = len(keys)
        positions = t.positions
        if count <= 1 or (positions and count * 8 <= len(rows)):
            ordered = list(keys) if count <= 1 else sorted(keys, key=positions.__getitem__)
            found = []
            for key in ordered:
                row = rows[key]
                if test(row):
                    found.append((key, row))
            return found
        return [(key, row) for key, row in rows.items() if key in keys and test(row)]

    def select(
        self,
        columns: Columns | None = None,
        where: Predicate | None = None,
        *,
        order_by: OrderBy | None = None,
        limit: int | None = None,
        offset: int = 0,
        copy: bool = True,
        distinct: bool = False,
    ) -> list[Record]:
        """Rows matching *where*, ordered, paged and projected; each an owned copy.

        Args:
            columns: None (all fields), a list of field names, a dict alias → field, or a list
                of (alias, field) pairs; a missing field projects as None.
            where: a condition; None selects every row.
            order_by: a field, ``"-field"`` for descending, or a list of those. None and
                missing values sort first (last when descending); values of different kinds
                sort by kind, never raising.
            limit: at most this many rows; None or a negative number means no limit.
            offset: rows to skip first; a negative number counts as 0.
            copy: accepted for compatibility; rows are always copies the caller owns.
            distinct: drop duplicate projected rows (before paging, as SQL does).

        Returns:
            The rows, in insertion order unless *order_by* says otherwise.
        """
        if isinstance(columns, Predicate):
            raise TypeError(
                "select's first argument is the columns; pass the condition as where=..."
            )
        with self._engine.lock:
            self._live()
            rows = self._matching_rows(where)
        return run_select(rows, columns, order_by, limit, offset, distinct)

    def all(self) -> list[Record]:
        """Copies of every row, in insertion order."""
        with self._engine.lock:
            self._live()
            rows = list(self._t.rows.values())
        return [copy_row(r) for r in rows]

    def copy(self) -> dict[Any, Record]:
        """A dict primary key → copy of the row."""
        with self._engine.lock:
            self._live()
            items = list(self._t.rows.items())
        return {k: copy_row(r) for k, r in items}

    @property
    def records(self) -> RecordsView:
        """Read-only mapping primary key → copy of the row."""
        return RecordsView(self._engine.lock, self._t)

    def get(self, key: Any, default: Any = None) -> Any:
        """A copy of the row with primary key *key*, or *default*."""
        with self._engine.lock:
            self._live()
            try:
                row = self._t.rows.get(key)
            except TypeError:  # an unhashable key is no key of this table
                return default
        return default if row is None else copy_row(row)

    def count(self, where: Predicate | None = None) -> int:
        """The number of rows (matching *where* when given)."""
        with self._engine.lock:
            self._live()
            if where is None:
                return len(self._t.rows)
            return len(self._matching_rows(where))

    def size(self) -> int:
        """The number of rows."""
        return self.count()

    def __len__(self) -> int:
        return self.count()

    def __contains__(self, key: object) -> bool:
        with self._engine.lock:
            self._live()
            try:
                return key in self._t.rows
            except TypeError:
                return False

    def __iter__(self) -> Iterator[Record]:
        return iter(self.all())

    # -- the reference's dirty tracking ------------------------------------------------------

    def has_changes(self) -> bool:
        """Whether rows were written or deleted since the last backup cut (a snapshot or
        delta this database wrote or loaded) or `clear_dirty_tracking`."""
        written, deleted = self._changes()
        return bool(written or deleted)

    def get_dirty_records(self) -> list[Record]:
        """Copies of the rows written since the last backup cut or `clear_dirty_tracking`."""
        with self._engine.lock:
            written, _ = self._changes()
            rows = [self._t.rows[k] for k in written if k in self._t.rows]
        return [copy_row(r) for r in rows]

    def get_deleted_pks(self) -> list[Any]:
        """Keys deleted since the last backup cut or `clear_dirty_tracking` (and absent now)."""
        return list(self._changes()[1])

    def clear_dirty_tracking(self) -> None:
        """Forget the changes made so far in the three views above (backups are not affected:
        deltas are cut from the journal by LSN)."""
        with self._engine.lock:
            self._live()
            self._t.changed = {}

    def _changes(self) -> tuple[set[Any], set[Any]]:
        with self._engine.lock:
            self._live()
            return self._engine.changed_keys(self._t)

    def columns(self) -> list[str]:
        """The schema's fields, or else the sorted union of the rows' fields."""
        if self.schema is not None:
            return list(self.schema)
        with self._engine.lock:
            names: set[str] = set()
            for row in self._t.rows.values():
                names.update(row)
        return sorted(names)

    def schema_fields(self) -> list[str]:
        """The schema's fields ([] without a schema)."""
        return [] if self.schema is None else list(self.schema)

    def primary_key_name(self) -> str:
        """The primary key field's name."""
        return self.primary_key

    def validate_record(self, record: Record) -> None:
        """Check *record* against the schema (nothing to check without one).

        Every write on a table with a schema checks each new row with it. Replacing it (on
        one table, or in a subclass) adds checks: the replacement runs after the schema check,
        on a copy of the row, and what it raises refuses the whole statement. It cannot admit
        a row the schema refuses.

        Raises:
            SchemaValidationError: the record breaks the schema.
        """
        if self.schema is not None:
            validate_record(self.table_name, self.schema, record)

    # -- aggregation and export -------------------------------------------------------------

    def aggregate(
        self,
        where: Predicate | None = None,
        group_by: str | Sequence[str] | None = None,
        **aggregations: Agg,
    ) -> dict[str, Any] | list[Record]:
        """Compute `Count`, `Sum`, `Avg`, `Min`, `Max` over the rows matching *where*.

        Args:
            where: a condition; None aggregates every row.
            group_by: a field or a list of fields; None aggregates all rows as one group.
            aggregations: result name → aggregate, e.g. ``total=Sum("price")``.

        Returns:
            Without *group_by*, one dict name → value. With it, one dict per group (the
            group's field values, then the aggregates), groups in first-seen order; a row
            lacking a group field groups under None.

        Raises:
            TypeError: an aggregation is not an `Agg`; a `Sum`/`Avg` met a value it cannot
                add.
        """
        check_aggregations(aggregations)
        with self._engine.lock:
            self._live()
            rows = self._matching_rows(where)
        return run_aggregate(rows, group_by, aggregations)

    def export_csv(
        self,
        filepath: str | Path,
        *,
        records: list[Record] | None = None,
        columns: list[str] | None = None,
        where: Predicate | None = None,
        delimiter: str = ",",
        encoding: str = "utf-8",
    ) -> int:
        """Write rows to a CSV file, atomically; see `dictdb.csv_io.write_csv`.

        Args:
            filepath: the file to write (replaced if it exists).
            records: rows to write instead of the table's (*where* is then ignored).
            columns: the columns and their order; default: every field, in first-seen order.
            where: a condition selecting the rows to write.
            delimiter: the field separator.
            encoding: the text encoding.

        Returns:
            The number of rows written.
        """
        from dictdb.csv_io import write_csv

        if records is None:
            records = self.select(where=where)
        return write_csv(filepath, records, columns=columns, delimiter=delimiter, encoding=encoding)

    # -- indexes --------------------------------------------------------------------------------

    def create_index(self, field: str, index_type: str = "hash") -> None:
        """Index *field*: queries on it test fewer rows; results never change.

        ``"hash"`` answers ``==``, `is_in` and `is_null`; ``"sorted"`` also ``<``, ``<=``,
        ``>``, ``>=``, `between`, case-sensitive ``like("prefix%")`` and `startswith`. Rows
        lacking the field are indexed as None. Creating again an index of the same type on
        the same field does nothing (as in the reference). Indexes are not persisted: a
        loaded or restored database has none (see `dictdb.index`).

        Args:
            field: the field to index.
            index_type: ``"hash"`` or ``"sorted"``, in any case.

        Raises:
            ValueError: an unknown index type, or *field* already has an index of the other
                type (drop it first).
            TypeError: *field* is not a str.
        """
        if type(field) is not str:
            raise TypeError(f"an index field must be a str, got {field!r}")
        index = make_index(field, index_type)
        with self._engine.lock:
            self._live()
            existing = self._t.indexes.get(field)
            if existing is not None:
                if existing.index_type == index.index_type:
                    return
                raise ValueError(
                    f"table {self.table_name!r}: field {field!r} already has a "
                    f"{existing.index_type} index; drop_index({field!r}) first"
                )
            if not self._t.indexes:
                self._t.positions = {key: i for i, key in enumerate(self._t.rows)}
                self._t.next_position = len(self._t.positions)
            index.build(self._t.rows.items())
            self._t.indexes[field] = index

    def drop_index(self, field: str) -> None:
        """Remove the index on *field*.

        Raises:
            IndexNotFoundError: *field* has no index.
        """
        with self._engine.lock:
            if field not in self._t.indexes:
                raise IndexNotFoundError(f"table {self.table_name!r}: no index on field {field!r}")
            del self._t.indexes[field]
            if not self._t.indexes:
                self._t.positions = {}
                self._t.next_position = 0

    def indexed_fields(self) -> list[str]:
        """The indexed fields, in creation order."""
        return list(self._t.indexes)

    def has_index(self, field: str) -> bool:
        """Whether *field* has an index."""
        return field in self._t.indexes

    @property
    def indexes(self) -> dict[str, Index]:
        """Field → index (a copy; use `create_index` / `drop_index` to change it)."""
        return dict(self._t.indexes)

    def __repr__(self) -> str:
        return f"<Table {self.table_name!r} pk={self.primary_key!r} rows={len(self._t.rows)}>"


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()

"""Replaying a durable log at open, one decoded payload (`wal.framing.Batch`) at a time.

`Engine.apply_operation` checks an operation from outside as a live write would, copies its
after-image (`own_record`) and takes the lock, for each operation: ~2.5 µs of a replay's ~5 µs
per operation. A log's payload decoded column by column tells more at once: a *plain* batch
(`Batch.plain`) holds only fresh JSON objects, flat and untagged, that the value domain
accepts as they are and that nobody else holds. So a plain batch is replayed under one lock
hold, without copies, with the checks that tell whether the log fits the state (the LSN
follows, the table exists, an insert's key is new, an update's or delete's key is there, the
after-image carries its key, the schema) made column-wise when the batch is one table's
inserts, else operation by operation. State changes only through `Engine.apply`, the one
apply path, and every operation is journaled. Anything else (a batch with tags, DDL, an
operation that does not fit) goes through `Engine.apply_operation`, which raises the same
errors as before; so does every batch once the engine logs (`Engine.sink`): it logs first.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Final

from dictdb.errors import ReplayError, SchemaValidationError
from dictdb.schema import validate_record
from wal import DELETE, INSERT, UPDATE, Operation, OpTuple

if TYPE_CHECKING:
    from dictdb._engine import Engine, TableState
    from wal.framing import Batch

_INSERTS_ONLY: Final = {INSERT}
#: Key types a plain batch's column checks accept (the other key types arrive tagged).
_INT_KEYS: Final = {int}
_STR_KEYS: Final = {str}
_new_tuple = tuple.__new__


def replay_batch(engine: Engine, batch: Batch) -> None:
    """Apply the operations of *batch* to *engine*, checked, through `Engine.apply`.

    Raises:
        ReplayError: an operation does not follow `Engine.lsn` or does not fit the state.
        ValueDomainError, SchemaValidationError, PrimaryKeyError: a bad after-image.
    """
    with engine.lock:
        if engine.sink is not None or not batch.plain:
            for checked in batch.operations():
                engine.apply_operation(checked)
            return
        if batch.first != engine.lsn + 1:
            raise ReplayError(f"operation {batch.first} does not follow {engine.lsn}")
        if batch.kind_set == _INSERTS_ONLY and len(batch.table_set) == 1:
            table = engine.tables.get(batch.tables[0])
            if table is not None and _inserts_fit(table, batch):
                _insert(engine, table, batch)
                return
        _replay_each(engine, batch)


def _insert(engine: Engine, table: TableState, batch: Batch) -> None:
    # Apply a batch of plain inserts into *table*, all checked, and journal them, as a live
    # insert statement is (`Engine.commit_inserts`): in bulk (`Engine.apply_inserts`) unless
    # the table has indexes, and numbered without tuples unless the journal keeps them.
    journal = engine.journal
    if table.indexes:
        apply = engine.apply
        for op in batch.tuples():
            apply(op)
            journal.append_held(op)
        return
    engine.apply_inserts(table, batch.keys, batch.afters, None, batch.last)
    if journal.retain:
        for op in batch.tuples():
            journal.append_held(op)
    else:
        # What appending each would leave: the last LSN and time, nothing held.
        journal.advance(batch.last, batch.ts[-1])


def _inserts_fit(table: TableState, batch: Batch) -> bool:
    """Whether every operation of *batch*, all inserts into *table*, fits: keys of one key
    type, new and distinct, each after-image carrying its key, the schema kept. False
    sends the batch operation by operation, which names the first that does not."""
    keys = batch.keys
    key_types = batch.key_types
    if key_types not in (_INT_KEYS, _STR_KEYS):
        return False
    try:
        fields = list(map(itemgetter(table.primary_key), batch.afters))
    except (KeyError, TypeError):  # an image without its key, or not a record
        return False
    if set(map(type, fields)) != key_types or fields != keys:
        return False
    if len(set(keys)) != len(keys) or not table.rows.keys().isdisjoint(keys):
        return False
    schema = table.schema
    if schema is not None:
        try:
            for after in batch.afters:
                validate_record(table.name, schema, after)
        except SchemaValidationError:
            return False
    return True


def _replay_each(engine: Engine, batch: Batch) -> None:
    # A plain batch operation by operation: an insert, update or delete that fits the state
    # is applied as it is (its after-image is plain and fresh); anything else is left to
    # `apply_operation` (DDL, or an operation it refuses with the right error).
    tables = engine.tables
    apply = engine.apply
    append = engine.journal_append
    for op in batch.tuples():
        kind = op[2]
        table = tables.get(op[3])
        key = op[4]
        if table is not None and (type(key) is int or type(key) is str):
            if kind == DELETE:
                fits = key in table.rows
            elif kind in (INSERT, UPDATE):
                fits = (key in table.rows) is (kind == UPDATE) and _carries(table, key, op[5])
            else:
                fits = False
            if fits:
                apply(op)
                append(op)
                continue
        engine.apply_operation(_operation(op))


def _carries(table: TableState, key: Any, after: Any) -> bool:
    # Whether *after* is a record holding *key* as its primary key, within the schema.
    if type(after) is not dict:
        return False
    field = after.get(table.primary_key)
    if type(field) is not type(key) or field != key:
        return False
    if table.schema is not None:
        try:
            validate_record(table.name, table.schema, after)
        except SchemaValidationError:
            return False
    return True


def _operation(op: OpTuple) -> Operation:
    return _new_tuple(Operation, op)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (process-wide) while inside, if it runs.

    Replaying a log allocates a few containers per operation (the decoded rows, which the
    tables keep) and no cycles; the collector, triggered by those allocations, walked all the
    rows replayed so far at each full collection: measured ~0.8 µs per operation of a 1M
    insert log (2.9-3.2 µs with it, 2.1-2.35 without). Cycles other threads make meanwhile
    are collected once it resumes.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()

"""Compaction: fold a contiguous run of operations into its net effect.

For each collection that exists at the end of the run, the result holds, per changed key, the
item as it was at the *start* of the run (``before``, None if absent) and as it is at the
*end* (``after``, None if deleted): full images, never merges. Collection creations and drops
are kept in order as `Compaction.ddl`. A drop discards everything pending for that
collection, so a drop followed by a re-create never resurrects old items; keys of a collection
created inside the run have ``before`` None.

Applying a compaction: replay ``ddl`` in order, then for each collection put every ``after``
that is not None and delete every key whose ``after`` is None.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from wal.errors import JournalError
from wal.operation import CREATE, DELETE, DROP, INSERT, UPDATE, Operation, OpTuple

_ABSENT: Any = None


@attrs.frozen
class DDLEvent:
    """A collection created or dropped inside a compacted run.

    Attributes:
        lsn: the operation's number.
        kind: ``"create"`` or ``"drop"``.
        table: the collection's name.
        definition: what the create carried (None for a drop).
    """

    lsn: int
    kind: str
    table: str
    definition: Any = None


@attrs.frozen
class Compaction:
    """The net effect of operations ``from_lsn .. to_lsn``.

    Attributes:
        from_lsn: first operation covered.
        to_lsn: last operation covered.
        ddl: creations and drops, in order.
        changes: per collection (existing at ``to_lsn``), key → ``(before, after)``.
        last_ts: the timestamp of the last operation.
    """

    from_lsn: int
    to_lsn: int
    ddl: tuple[DDLEvent, ...]
    changes: dict[str, dict[Any, tuple[Any, Any]]]
    last_ts: float

    @property
    def operation_count(self) -> int:
        """How many operations the compaction covers."""
        return self.to_lsn - self.from_lsn + 1


def compact(ops: Iterable[OpTuple | Operation], from_lsn: int) -> Compaction:
    """Fold operations ``from_lsn, from_lsn + 1, ...`` into their net effect.

    Args:
        ops: the operations, in LSN order, starting at *from_lsn*, with no gap.
        from_lsn: the first LSN expected.

    Returns:
        The compaction (empty changes and ``to_lsn = from_lsn - 1`` for no operations).

    Raises:
        JournalError: a gap or an unknown operation kind.
    """
    ddl: list[DDLEvent] = []
    changes: dict[str, dict[Any, tuple[Any, Any]]] = {}
    expected = from_lsn
    last_ts = 0.0
    for op in ops:
        lsn, ts, kind, table, key, after, before = op[:7]
        if lsn != expected:
            raise JournalError(f"operation {lsn} found where {expected} was expected")
        expected += 1
        last_ts = ts
        if kind in (INSERT, UPDATE, DELETE):
            per_key = changes.get(table)
            if per_key is None:
                per_key = changes[table] = {}
            known = per_key.get(key)
            start = (None if kind == INSERT else before) if known is None else known[0]
            per_key[key] = (start, None if kind == DELETE else after)
        elif kind == CREATE:
            ddl.append(DDLEvent(lsn, CREATE, table, after))
            changes[table] = {}
        elif kind == DROP:
            ddl.append(DDLEvent(lsn, DROP, table))
            changes.pop(table, None)
        else:
            raise JournalError(f"operation {lsn}: unknown kind {kind!r}")
    # Keys that were absent at the start and are absent at the end changed nothing.
    net = {
        table: {k: ba for k, ba in per_key.items() if ba[0] is not None or ba[1] is not None}
        for table, per_key in changes.items()
    }
    return Compaction(from_lsn, expected - 1, tuple(ddl), net, last_ts)

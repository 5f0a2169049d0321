"""Operation records: the one event type of the journal.

An operation is one change of one keyed item of one named collection (``insert``, ``update``,
``delete``), or a change of a collection itself (``create``, ``drop``). `wal` gives the fields
no further meaning: the database above decides what ``after`` holds for a ``create``.

Operations are `typing.NamedTuple` instances. They are built on every mutation, so the
representation was measured (ARCHITECTURE.md, "Journal cost"): a plain tuple costs ~0.03 µs to
build, a NamedTuple ~0.1-0.2 µs, a frozen attrs instance ~0.4 µs. So the write path builds
plain tuples in `Operation`'s field order (`OpTuple`), and readers get `Operation` views.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

INSERT: Final = "insert"
UPDATE: Final = "update"
DELETE: Final = "delete"
CREATE: Final = "create"
DROP: Final = "drop"

#: Every operation kind, in no particular order.
KINDS: Final = frozenset({INSERT, UPDATE, DELETE, CREATE, DROP})
#: Kinds that change one item of a collection (they carry a key).
ITEM_KINDS: Final = frozenset({INSERT, UPDATE, DELETE})


class Operation(NamedTuple):
    """One journaled change.

    Attributes:
        lsn: the operation's number: 1 for the first operation, then +1 each, never reused.
        ts: when it was applied, in seconds since the epoch.
        kind: one of `KINDS`.
        table: the name of the collection it changes.
        key: the item's key for item kinds; None for ``create``/``drop``.
        after: the full item after the change (insert/update), or the collection's
            definition (create); None otherwise.
        before: the full item before the change (update/delete), or the dropped collection's
            definition (drop); None otherwise.
        meta: optional audit metadata (e.g. actor, reason); None when absent.
    """

    lsn: int
    ts: float
    kind: str
    table: str
    key: Any
    after: Any
    before: Any
    meta: Any = None


#: An operation as the journal holds it: a plain tuple in `Operation`'s field order.
OpTuple = tuple[int, float, str, str, Any, Any, Any, Any]

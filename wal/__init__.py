"""A generic, event-sourced write-ahead-log engine: operations, journal, codecs.

`wal` knows operations on keyed items of named collections; it gives them no further meaning
and never imports `dictdb`.
"""

from wal.codec import (
    MAX_NESTING,
    Codec,
    check_plain,
    converter,
    from_plain,
    own_value,
    plain_items,
    to_plain,
)
from wal.errors import CodecError, JournalError, UnsupportedValueError, WALError
from wal.journal import Journal
from wal.operation import (
    CREATE,
    DELETE,
    DROP,
    INSERT,
    ITEM_KINDS,
    KINDS,
    UPDATE,
    Operation,
    OpTuple,
    as_operation,
    make_operation,
)

__all__ = [
    "CREATE",
    "DELETE",
    "DROP",
    "INSERT",
    "ITEM_KINDS",
    "KINDS",
    "MAX_NESTING",
    "UPDATE",
    "Codec",
    "CodecError",
    "Journal",
    "JournalError",
    "OpTuple",
    "Operation",
    "UnsupportedValueError",
    "WALError",
    "as_operation",
    "check_plain",
    "own_value",
    "converter",
    "from_plain",
    "make_operation",
    "plain_items",
    "to_plain",
]

"""dictdb: an in-memory database of dict tables with a write-ahead journal.

Every mutation is an operation in a journal; snapshots, deltas, the durable log and restore are
derived from it. The API keeps the reference DictDB's names.
"""

from dictdb._version import __version__
from dictdb.database import DictDB, ReplayError
from dictdb.errors import (
    DictDBError,
    DuplicateKeyError,
    DuplicateTableError,
    PrimaryKeyError,
    RecordNotFoundError,
    SchemaValidationError,
    StateError,
    TableNotFoundError,
    ValueDomainError,
)
from dictdb.query import And, Condition, Field, Not, Or, PredicateExpr
from dictdb.table import Table

__all__ = [
    "And",
    "Condition",
    "DictDB",
    "DictDBError",
    "DuplicateKeyError",
    "DuplicateTableError",
    "Field",
    "Not",
    "Or",
    "PredicateExpr",
    "PrimaryKeyError",
    "RecordNotFoundError",
    "ReplayError",
    "SchemaValidationError",
    "StateError",
    "Table",
    "TableNotFoundError",
    "ValueDomainError",
    "__version__",
]

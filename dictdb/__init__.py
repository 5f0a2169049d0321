"""dictdb: an in-memory database of dict tables with a write-ahead journal.

Every mutation is an operation in a journal; snapshots, deltas, the durable log and restore are
derived from it. The API keeps the reference DictDB's names.
"""

from dictdb._version import __version__
from dictdb.aggregate import Avg, Count, Max, Min, Sum
from dictdb.audit import diff, events, history, verify
from dictdb.database import DictDB, restore
from dictdb.errors import (
    CorruptFileError,
    DatabaseLockedError,
    DictDBError,
    DuplicateKeyError,
    DuplicateTableError,
    DurableLogError,
    IndexNotFoundError,
    PrimaryKeyError,
    RecordNotFoundError,
    ReplayError,
    RestoreError,
    SchemaValidationError,
    StateError,
    TableNotFoundError,
    ValueDomainError,
)
from dictdb.query import And, Condition, Field, Not, Or, PredicateExpr
from dictdb.reference_logging import configure_logging, logger
from dictdb.storage.backup import BackupManager
from dictdb.storage.catalog import scan as list_backups
from dictdb.storage.restore import RestorePlan, plan_restore
from dictdb.table import Table

__all__ = [
    "And",
    "Avg",
    "BackupManager",
    "Condition",
    "CorruptFileError",
    "Count",
    "DatabaseLockedError",
    "DictDB",
    "DictDBError",
    "DuplicateKeyError",
    "DuplicateTableError",
    "DurableLogError",
    "Field",
    "IndexNotFoundError",
    "Max",
    "Min",
    "Not",
    "Or",
    "PredicateExpr",
    "PrimaryKeyError",
    "RecordNotFoundError",
    "ReplayError",
    "RestoreError",
    "RestorePlan",
    "SchemaValidationError",
    "StateError",
    "Sum",
    "Table",
    "TableNotFoundError",
    "ValueDomainError",
    "__version__",
    "configure_logging",
    "diff",
    "events",
    "history",
    "list_backups",
    "logger",
    "plan_restore",
    "restore",
    "verify",
]

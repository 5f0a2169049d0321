"""The reference's module path for its exceptions: re-exports them from `dictdb.errors`."""

from dictdb.errors import (
    DictDBError,
    DuplicateKeyError,
    DuplicateTableError,
    RecordNotFoundError,
    SchemaValidationError,
    TableNotFoundError,
)

__all__ = [
    "DictDBError",
    "DuplicateKeyError",
    "DuplicateTableError",
    "RecordNotFoundError",
    "SchemaValidationError",
    "TableNotFoundError",
]

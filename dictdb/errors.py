"""The exceptions of `dictdb`: one root, the reference's names, natural builtins mixed in."""

from __future__ import annotations

import json
import pickle

from wal import LogFailedError


class DictDBError(Exception):
    """Root of every error raised by `dictdb`."""


class _KeyErrorMessage(KeyError):
    # KeyError.__str__ shows the repr of its argument; keep plain messages readable.
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TableNotFoundError(DictDBError, _KeyErrorMessage):
    """No table of that name."""


class RecordNotFoundError(DictDBError, _KeyErrorMessage):
    """No record matched (update or delete touched nothing)."""


class DuplicateTableError(DictDBError, ValueError):
    """A table of that name already exists."""


class DuplicateKeyError(DictDBError, ValueError):
    """A record with that primary key already exists."""


class SchemaValidationError(DictDBError, ValueError):
    """A record does not match its table's schema.

    Attributes:
        table: the table's name.
        field: the offending field, or None when the record as a whole is wrong.
    """

    def __init__(self, message: str, *, table: str = "", field: str | None = None) -> None:
        super().__init__(message)
        self.table = table
        self.field = field


class PrimaryKeyError(SchemaValidationError):
    """A primary key of a refused type, or an update that would change a row's key."""


class ValueDomainError(DictDBError, TypeError):
    """A value outside the documented value domain, refused at the mutation.

    Attributes:
        table: the table's name.
        field: the top-level field holding the value.
        path: where the value sits inside the field (e.g. ``"tags[2]"``); equals field when
            the value is the field's own.
        value_type: the refused value's type name.
    """

    def __init__(self, table: str, field: str, path: str, value_type: str, reason: str) -> None:
        super().__init__(f"table {table!r}, field {field!r}: {reason}")
        self.table = table
        self.field = field
        self.path = path
        self.value_type = value_type


class StateError(DictDBError, RuntimeError):
    """The object cannot do that in its current state (e.g. closed)."""


class PathError(DictDBError):
    """An error about one file or directory, said as ``"<path>: <reason>"``.

    Attributes:
        path: the file or directory.
        reason: what is wrong, in one line.
    """

    def __init__(self, path: object, reason: str) -> None:
        # Not super(): subclasses mix in builtins whose __init__ takes other arguments.
        Exception.__init__(self, f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[type[PathError], tuple[str, str]]:
        return type(self), (self.path, self.reason)


class CorruptFileError(PathError, ValueError):
    """A snapshot or delta file that cannot be trusted: truncated, damaged, wrong type,
    unknown version, or inconsistent with what it is applied to.

    Attributes:
        path: the file.
        reason: what is wrong, in one line.
    """


# The reference's callers catch whatever its parser raised for a damaged file; these are
# still `CorruptFileError` (one error for every damage, R18), each also that builtin kind.


class CorruptJSONError(CorruptFileError, json.JSONDecodeError):
    """A file that is not valid JSON (truncated, empty, damaged): also a
    `json.JSONDecodeError`, with ``msg``, ``doc``, ``pos``, ``lineno`` and ``colno``."""

    def __init__(self, path: object, reason: str, doc: str = "", pos: int = 0) -> None:
        super().__init__(path, reason)
        self.msg = reason
        self.doc = doc
        self.pos = pos
        self.lineno = doc.count("\n", 0, pos) + 1
        self.colno = pos - doc.rfind("\n", 0, pos)


class CorruptPickleError(CorruptFileError, pickle.UnpicklingError, EOFError):
    """A pickle file that is truncated, damaged, or reaches what is not allowed: also a
    `pickle.UnpicklingError` and an `EOFError`."""


class CorruptShapeError(CorruptFileError, KeyError, TypeError, AttributeError):
    """A well-formed document of the wrong shape (a member missing or of the wrong type):
    also a `KeyError`, `TypeError` and `AttributeError`."""


class LegacyFileError(CorruptFileError):
    """A file of the reference DictDB 1.x where a dictdb file was expected: it has no header
    (read it with `DictDB.load`, `apply_delta` or `restore`, or migrate it)."""


class ReplayError(DictDBError, ValueError):
    """An operation that cannot be applied to this database (wrong LSN, missing table...)."""


class IndexNotFoundError(DictDBError, _KeyErrorMessage):
    """No index on that field (`Table.drop_index`)."""


class DatabaseLockedError(StateError):
    """The database directory is open in another process (or elsewhere in this one)."""


class DurableLogError(StateError, LogFailedError):
    """The durable log cannot take the operation (it failed, or the database is closed).

    After a log failure the database refuses reads and writes alike: its memory may hold a
    statement the disk does not, and nobody may observe (or back up) that. Reopen the
    directory to recover exactly what is on disk.

    Attributes:
        durable_lsn: the last operation known to be on disk (None: the database is closed).
        lost: the operations applied, and (with ``fsync="everysec"`` or ``"off"``) maybe
            already acknowledged, that are not known to be on disk, as ``(first, last)``;
            None when there are none.
    """

    def __init__(
        self,
        message: str,
        *,
        durable_lsn: int | None = None,
        lost: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(message)
        self.durable_lsn = durable_lsn
        self.lost = lost


class RestoreError(DictDBError, ValueError):
    """The directory cannot rebuild the state asked for.

    Attributes:
        path: the file at fault, when one is (else None).
        reason: what is wrong, in one line.
    """

    def __init__(self, reason: str, path: object | None = None) -> None:
        super().__init__(f"{path}: {reason}" if path is not None else reason)
        self.path = None if path is None else str(path)
        self.reason = reason


class UsageError(DictDBError):
    """A bad command-line argument value (the CLI's exit code 2)."""

"""The exceptions of the `wal` package: one root, leaves carrying structured fields."""

from __future__ import annotations


class WALError(Exception):
    """Root of every error raised by `wal`."""


class JournalError(WALError, ValueError):
    """An operation does not fit the journal (wrong LSN, released range)."""


class CodecError(WALError, ValueError):
    """Bytes or values that a codec cannot encode or decode.

    Attributes:
        reason: what is wrong, in one line.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsupportedValueError(CodecError, TypeError):
    """A value outside the documented value domain.

    Attributes:
        path: where in the document the value sits (e.g. ``"tags[2]"``).
        value_type: the type name of the refused value.
    """

    def __init__(self, path: str, value_type: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.value_type = value_type

"""The exceptions of the `wal` package: one root, leaves carrying structured fields."""

from __future__ import annotations


class WALError(Exception):
    """Root of every error raised by `wal`."""


class NotRegularFileError(WALError, OSError):
    """A path to read is not a regular file (a FIFO, a device, a directory)."""


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


def brief(value: object, limit: int = 40) -> str:
    """A short repr of *value* for an error message about data read from a file: never long,
    never recursive (a container is described, not shown: a file can nest 1,000 levels), and
    never failing (an int past `str`'s digit limit is described by its size)."""
    if type(value) is str:
        return repr(value[:limit]) + ("..." if len(value) > limit else "")
    if type(value) is int:
        bits = value.bit_length()
        return repr(value) if bits <= 128 else f"an int of {bits} bits"
    if type(value) is float or type(value) is bool or value is None:
        return repr(value)
    if type(value) is list or type(value) is dict:
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"

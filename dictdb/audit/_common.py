"""What the audit tools share: granularities, the log's place, points and times, exact
comparison, progress in bytes."""

from __future__ import annotations

import datetime as _dt
import decimal
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from dictdb.errors import RestoreError
from dictdb.storage.catalog import iso_utc
from dictdb.storage.restore import to_epoch
from dictdb.storage.target import Target
from wal import RecoveryError

#: How fine a result is: one operation, the net change of one delta, or a snapshot's state.
OPERATION: Final = "operation"
DELTA: Final = "delta"
SNAPSHOT: Final = "snapshot"

#: *ts* (epoch seconds) as ISO 8601 in UTC, to the microsecond (as the catalog writes them).
iso: Final = iso_utc

#: ``progress(bytes_done, bytes_total)``: called as files and log segments are read.
Progress = Callable[[int, int], None]

_INTEGER: Final = re.compile(r"[+-]?\d+")


def log_dir(target: Target) -> Path | None:
    """The durable log of *target*, read where it is written: a local directory's ``wal/``."""
    local = target.local_directory()
    wal_dir = None if local is None else local / "wal"
    return wal_dir if wal_dir is not None and wal_dir.is_dir() else None


def log_start(target: Target) -> int | None:
    """The first LSN of *target*'s durable log (None: no log, or an empty one)."""
    from wal import list_segments

    wal_dir = log_dir(target)
    if wal_dir is None:
        return None
    segments = list_segments(wal_dir)
    return segments[0][0] if segments else None


def log_damage(exc: RecoveryError) -> RestoreError:
    """The audit tools' error for damage in a durable log (raise it ``from None``)."""
    return RestoreError(f"log damaged at offset {exc.offset}: {exc.reason}", Path(exc.segment))


def segment_bytes(wal_dir: Path | None) -> int:
    """The bytes of every segment of the log in *wal_dir* (0 without a log)."""
    from wal import list_segments

    if wal_dir is None:
        return 0
    total = 0
    for _, path in list_segments(wal_dir):
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            continue  # trimmed meanwhile: it will not be read either
    return total


def parse_point(text: str) -> tuple[int | None, float | None]:
    """A point written as text: ``lsn:N`` (right after operation N), ``@SECONDS`` or a
    number with a decimal point (epoch seconds), or an ISO 8601 time (naive: local time).

    Returns:
        ``(lsn, None)`` or ``(None, epoch seconds)``.

    Raises:
        ValueError: a bare integer (an LSN or epoch seconds? it is refused rather than
            guessed), a bad LSN, or neither form.
    """
    text = text.strip()
    if text.startswith("lsn:"):
        digits = text[4:]
        if not _INTEGER.fullmatch(digits):
            raise ValueError(f"not an LSN: {text!r} (lsn:N, N an integer >= 0)")
        lsn = int(digits)
        if lsn < 0:
            raise ValueError(f"an LSN is >= 0: {text!r}")
        return lsn, None
    if _INTEGER.fullmatch(text):
        raise ValueError(
            f"{text!r} is ambiguous: write lsn:{text.lstrip('+')} for the state after "
            f"operation {text.lstrip('+')}, or a time: ISO 8601 (2026-11-27T10:00:00+00:00) "
            f"or epoch seconds as @{text.lstrip('+')}"
        )
    if text.startswith("@"):
        return None, _seconds(text[1:], text)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(nan|inf|infinity)", text, re.I):
        return None, _seconds(text, text)
    try:
        return None, to_epoch(text)
    except ValueError:
        raise ValueError(
            f"not a point: {text!r} (lsn:N, an ISO 8601 time, or epoch seconds as @N)"
        ) from None


def _seconds(number: str, text: str) -> float:
    try:
        return to_epoch(float(number))
    except ValueError:
        raise ValueError(f"not a time in epoch seconds: {text!r}") from None


def resolve_point(
    side: str, value: Any = None, *, lsn: int | None = None, at: Any = None
) -> tuple[int | None, float | None]:
    """One end of a range given in any of the accepted forms: *value* (``"lsn:N"``, an ISO
    8601 string, ``"@SECONDS"``, a datetime or date, or epoch seconds as a float), or the
    keywords *lsn* (an int) or *at* (a datetime, date, epoch seconds, or a string as
    `parse_point` reads it that names a time).

    Returns:
        ``(lsn, None)``, ``(None, epoch seconds)`` or ``(None, None)`` (no point given).

    Raises:
        ValueError: more than one form, a negative LSN, a bare int *value* (an LSN or epoch
            seconds? write ``lsn=`` or ``at=``), a string that is no point.
        TypeError: a value of another type.
    """
    given = [name for name, v in (("point", value), ("lsn", lsn), ("at", at)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"{side}: give one of a point, {side}_lsn= or {side}_at=, not several")
    if lsn is not None:
        if type(lsn) is not int or lsn < 0:
            raise ValueError(f"{side}_lsn must be an int >= 0, got {lsn!r}")
        return lsn, None
    if isinstance(at, str):
        point_lsn, ts = parse_point(at)
        if point_lsn is not None:
            raise ValueError(f"{side}_at is a time, got {at!r}: write {side}_lsn={point_lsn}")
        return None, ts
    if at is not None:
        return None, to_epoch(at)
    if value is None:
        return None, None
    if isinstance(value, str):
        return parse_point(value)
    if type(value) is int:
        raise ValueError(
            f"{side} point {value!r} is ambiguous: pass {side}_lsn={value} (or "
            f'"lsn:{value}") for an operation, or {side}_at={value} for epoch seconds'
        )
    if isinstance(value, float | _dt.date):
        return None, to_epoch(value)
    raise TypeError(
        f"{side} point must be 'lsn:N', a time (datetime, ISO 8601 string, float epoch "
        f"seconds), got {type(value).__name__}"
    )


def same(a: Any, b: Any) -> bool:
    """Equal *and* of the same types all the way down (1 != 1.0 != True for an audit)."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) in (float, _dt.datetime, decimal.Decimal):
        # repr tells apart what == does not: -0.0, the exponent of a Decimal, a tz offset.
        return repr(a) == repr(b) and (type(a) is not _dt.datetime or a.fold == b.fold)
    return bool(a == b)


class _Absent:
    # The one value standing for a field absent on one side of a change.
    __slots__ = ()

    def __repr__(self) -> str:
        return "<absent>"


#: The value `field_changes` and `diff` use for a field absent on one side.
MISSING: Final = _Absent()


def field_changes(before: Any, after: Any) -> dict[str, tuple[Any, Any]]:
    """Field -> (before, after) for each field that differs (type included); a row that is
    None counts as having no fields, and an absent field is `MISSING`."""
    a = before if isinstance(before, dict) else {}
    b = after if isinstance(after, dict) else {}
    return {
        f: (a.get(f, MISSING), b.get(f, MISSING))
        for f in sorted(a.keys() | b.keys())
        if not same(a.get(f, MISSING), b.get(f, MISSING))
    }

"""What the audit tools share: granularities, the log's place, times, exact comparison."""

from __future__ import annotations

import datetime as _dt
import decimal
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from dictdb.storage.target import Target

#: How fine a result is: one operation, the net change of one delta, or a snapshot's state.
OPERATION: Final = "operation"
DELTA: Final = "delta"
SNAPSHOT: Final = "snapshot"

Progress = Callable[[int, int], None]


def iso(ts: float) -> str:
    """*ts* (epoch seconds) as ISO 8601 in UTC, to the microsecond."""
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat(timespec="microseconds")


def log_dir(target: Target) -> Path | None:
    """The durable log of *target*, read where it is written: a local directory's ``wal/``."""
    local = target.local_directory()
    wal_dir = None if local is None else local / "wal"
    return wal_dir if wal_dir is not None and wal_dir.is_dir() else None


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

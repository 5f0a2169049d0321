"""Audit tooling over a backup directory: a record's history, the difference between two
points, the operations in a range, and the verification of everything a directory holds.

`events` and `history` (`dictdb.audit.changes`), `diff` (`dictdb.audit.comparison`) and
`verify` (`dictdb.audit.verification`) read one file or log segment at a time, so memory
stays bounded by the largest single file (or, for `diff`, by two restored states).
"""

from dictdb.audit._common import DELTA, OPERATION, SNAPSHOT, parse_point
from dictdb.audit.changes import (
    Event,
    History,
    events,
    history,
    index_log,
    replay,
    table_names,
)
from dictdb.audit.comparison import Diff, RowChange, TableDiff, diff, missing_marker
from dictdb.audit.export import ExportError, ExportReport, MissingExtraError, export_parquet
from dictdb.audit.snapshot_keys import index_snapshots
from dictdb.audit.verification import Finding, TimelineWindow, VerifyReport, verify

__all__ = [
    "DELTA",
    "OPERATION",
    "SNAPSHOT",
    "Diff",
    "Event",
    "ExportError",
    "ExportReport",
    "Finding",
    "History",
    "MissingExtraError",
    "RowChange",
    "TableDiff",
    "TimelineWindow",
    "VerifyReport",
    "diff",
    "events",
    "export_parquet",
    "history",
    "index_log",
    "index_snapshots",
    "missing_marker",
    "parse_point",
    "replay",
    "table_names",
    "verify",
]

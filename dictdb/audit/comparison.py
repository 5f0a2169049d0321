"""The difference between two points of a backup directory, row by row."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from dictdb.audit._common import (
    MISSING,
    Progress,
    field_changes,
    log_dir,
    resolve_point,
    segment_bytes,
)
from dictdb.errors import TableNotFoundError
from dictdb.storage.restore import plan_restore, restore_engine
from dictdb.storage.target import Target, as_target


@attrs.frozen
class RowChange:
    """A row present at both points with different contents: field → (before, after)."""

    key: Any
    fields: dict[str, tuple[Any, Any]]


@attrs.frozen
class TableDiff:
    """What changed in one table between two points."""

    added: dict[Any, dict[str, Any]]
    removed: dict[Any, dict[str, Any]]
    changed: list[RowChange]
    created: bool = False
    dropped: bool = False


@attrs.frozen
class Diff(Mapping[str, TableDiff]):
    """What changed between two points: a mapping of table name → `TableDiff` (only tables
    that changed), and the two states compared.

    Attributes:
        tables: table name → what changed in it.
        from_lsn: the LSN of the older state compared (a restore without the log stops at
            the last backup point at or before the target: this says where).
        to_lsn: the LSN of the newer state compared.
    """

    tables: dict[str, TableDiff]
    from_lsn: int
    to_lsn: int

    def __getitem__(self, name: str) -> TableDiff:
        return self.tables[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tables)

    def __len__(self) -> int:
        return len(self.tables)


def diff(
    backup_dir: str | Path | Target,
    a: Any = None,
    b: Any = None,
    *,
    from_lsn: int | None = None,
    to_lsn: int | None = None,
    from_at: Any = None,
    to_at: Any = None,
    table: str | None = None,
    timeline: int | None = None,
    progress: Progress | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Diff:
    """What changed between two points, per table.

    Each point is given once: ``from_lsn=N`` (the state right after operation N) or
    ``from_at=T`` (the state as of time T: a datetime, an ISO 8601 string or epoch seconds),
    likewise ``to_lsn``/``to_at``; or positionally as *a* and *b*: ``"lsn:N"``, an ISO 8601
    string, ``"@SECONDS"``, a datetime, or epoch seconds as a float. A bare int is refused
    there (an LSN or epoch seconds?): say ``from_lsn=`` or ``from_at=``. No older point
    means the empty state before operation 1; no newer one, the newest state.

    Equal by construction to the difference of the two restores (``restore(dir, lsn=...)``
    or ``restore(dir, at=...)``): both are rebuilt and compared.

    Args:
        backup_dir: the directory (or a URL, or a storage target).
        a: the older point, positionally.
        b: the newer point, positionally.
        from_lsn: the older point as an LSN.
        to_lsn: the newer point as an LSN.
        from_at: the older point as a time.
        to_at: the newer point as a time.
        table: only this table.
        timeline: the timeline to follow (default: the newest).
        progress: called as ``progress(bytes_read, bytes_total)`` as each state is rebuilt.
        storage_options: for a URL, passed to fsspec.

    Raises:
        ValueError: a point given twice, a bare int point, a negative LSN.
        TableNotFoundError: *table* exists at neither point.
        RestoreError: a point nothing restorable reaches, damage on the way.
    """
    target = as_target(backup_dir, storage_options)
    old_point = resolve_point("from", a, lsn=from_lsn, at=from_at)
    new_point = resolve_point("to", b, lsn=to_lsn, at=to_at)
    if old_point == (None, None):
        old_point = (0, None)  # the empty state before operation 1
    reads = _planned_bytes(target, (old_point, new_point), timeline) if progress else (0, 0)
    total = sum(reads)
    old_lsn, old = _state(target, old_point, timeline)
    if progress is not None:
        progress(reads[0], total)
    new_lsn, new = _state(target, new_point, timeline)
    if progress is not None:
        progress(total, total)
    names = sorted(set(old) | set(new))
    if table is not None:
        if table not in names:
            known = ", ".join(names) or "none"
            raise TableNotFoundError(f"no table {table!r} at either point (tables: {known})")
        names = [table]
    out: dict[str, TableDiff] = {}
    for name in names:
        rows_a = old.get(name, {}).get("records", {})
        rows_b = new.get(name, {}).get("records", {})
        added = {k: v for k, v in rows_b.items() if k not in rows_a}
        removed = {k: v for k, v in rows_a.items() if k not in rows_b}
        changed = []
        for k in rows_a.keys() & rows_b.keys():
            fields = field_changes(rows_a[k], rows_b[k])
            if fields:
                changed.append(RowChange(k, fields))
        if added or removed or changed or (name in old) != (name in new):
            out[name] = TableDiff(
                added, removed, changed, created=name not in old, dropped=name not in new
            )
    return Diff(out, old_lsn, new_lsn)


def _state(
    target: Target, point: tuple[int | None, float | None], timeline: int | None
) -> tuple[int, dict[str, Any]]:
    # A point's state: LSN 0 is the empty state (restorable or not); (None, None) the newest.
    lsn, at = point
    if lsn == 0:
        return 0, {}
    engine = restore_engine(target, lsn=lsn, at=at, timeline=timeline)
    return engine.lsn, engine.to_dict()


def _planned_bytes(
    target: Target, points: tuple[tuple[int | None, float | None], ...], timeline: int | None
) -> tuple[int, int]:
    # What each restore reads, from the plans alone (headers): its files, and the log's
    # bytes when it replays some.
    sizes = []
    for lsn, at in points:
        if lsn == 0:
            sizes.append(0)
            continue
        plan = plan_restore(target, lsn=lsn, at=at, timeline=timeline)
        log_bytes = segment_bytes(log_dir(target)) if plan.log_from is not None else 0
        sizes.append(sum(f.size for f in plan.files) + log_bytes)
    return sizes[0], sizes[1]


def missing_marker() -> object:
    """The value `diff` (and `Event.changes`) use for a field absent on one side."""
    return MISSING

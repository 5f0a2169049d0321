"""The difference between two points of a backup directory, row by row."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from dictdb.audit._common import same
from dictdb.storage.restore import restore_engine
from dictdb.storage.target import Target, as_target

if TYPE_CHECKING:
    from dictdb._engine import Engine


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


_MISSING: Final = object()


def _point(target: Target, point: Any) -> Engine:
    # A diff point: "lsn:N", or a time `restore` accepts.
    if isinstance(point, str) and point.startswith("lsn:"):
        return restore_engine(target, lsn=int(point[4:]))
    return restore_engine(target, at=point)


def diff(
    backup_dir: str | Path | Target,
    a: Any,
    b: Any,
    *,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, TableDiff]:
    """What changed between two points (times, or ``"lsn:N"``), per table.

    Equal by construction to the difference of ``restore(dir, at=a)`` and
    ``restore(dir, at=b)``: both are rebuilt and compared.
    """
    target = as_target(backup_dir, storage_options)
    old = _point(target, a).to_dict()
    new = _point(target, b).to_dict()
    out: dict[str, TableDiff] = {}
    for name in sorted(set(old) | set(new)):
        rows_a = old.get(name, {}).get("records", {})
        rows_b = new.get(name, {}).get("records", {})
        added = {k: v for k, v in rows_b.items() if k not in rows_a}
        removed = {k: v for k, v in rows_a.items() if k not in rows_b}
        changed = []
        for k in rows_a.keys() & rows_b.keys():
            ra, rb = rows_a[k], rows_b[k]
            if same(ra, rb):
                continue
            fields = {
                f: (ra.get(f, _MISSING), rb.get(f, _MISSING))
                for f in sorted(ra.keys() | rb.keys())
                if not same(ra.get(f, _MISSING), rb.get(f, _MISSING))
            }
            changed.append(RowChange(k, fields))
        if added or removed or changed or (name in old) != (name in new):
            out[name] = TableDiff(
                added, removed, changed, created=name not in old, dropped=name not in new
            )
    return out


def missing_marker() -> object:
    """The value `diff` uses for a field absent on one side."""
    return _MISSING

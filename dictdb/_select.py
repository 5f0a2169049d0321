"""What `Table.select` does after matching: order, project, distinct, page, copy.

Ordering never raises: each value sorts within its *kind* (None first, then numbers, strings,
bytes, naive datetimes, aware datetimes, dates, UUIDs, then lists and dicts by their repr), so
mixed or missing values give one deterministic order. DISTINCT applies before LIMIT/OFFSET, as
in SQL.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import gc
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from dictdb._values import Record, copy_row, copy_value

Columns = Sequence[str] | Mapping[str, str] | Sequence[tuple[str, str]]
OrderBy = str | Sequence[str]

_RANK: Final[dict[type, int]] = {
    bool: 1,
    int: 1,
    float: 1,
    decimal.Decimal: 1,
    str: 2,
    bytes: 3,
    _dt.datetime: 4,
    _dt.date: 6,
    uuid.UUID: 7,
}


def sort_key(value: Any) -> tuple[Any, ...]:
    """A key that orders any two domain values without raising."""
    if value is None:
        return (0,)
    t = type(value)
    rank = _RANK.get(t)
    if rank is None:
        return (8, repr(value))
    if t is _dt.datetime and value.tzinfo is not None:
        return (5, value)
    return (rank, value)


def _field_key(field: str) -> Callable[[Record], tuple[Any, ...]]:
    return lambda row: sort_key(row.get(field))


def _order(rows: list[Record], order_by: OrderBy) -> list[Record]:
    keys = [order_by] if isinstance(order_by, str) else list(order_by)
    for spec in keys:
        if type(spec) is not str or not spec.lstrip("-"):
            raise ValueError(f"order_by entries must be field names, got {spec!r}")
    out = list(rows)
    # Stable sorts from the last key to the first give a multi-key order with mixed directions.
    for spec in reversed(keys):
        desc = spec.startswith("-")
        field = spec[1:] if desc else spec
        out.sort(key=_field_key(field), reverse=desc)
    return out


def _projector(columns: Columns) -> Callable[[Record], Record]:
    if isinstance(columns, Mapping):
        pairs = list(columns.items())
    else:
        pairs = []
        for col in columns:
            if isinstance(col, str):
                pairs.append((col, col))
            elif isinstance(col, tuple) and len(col) == 2:
                pairs.append((col[0], col[1]))
            else:
                raise ValueError(f"columns entries must be names or (alias, field), got {col!r}")
    return lambda row: {alias: copy_value(row.get(field)) for alias, field in pairs}


#: Whether `gc.is_tracked` tells a flat row (CPython's collector never leaves untracked a dict
#: that holds a list or a dict: such a dict could be part of a cycle).
_TRACKING_TELLS: Final = sys.implementation.name == "cpython"
_is_tracked = gc.is_tracked
_copy_dict = dict.copy


def copy_rows(rows: list[Record]) -> list[Record]:
    """`copy_row` of each row, with one C-level pass when none holds a container.

    Every value of the domain besides a list or a dict is immutable, so a row the collector
    does not track is copied whole by ``dict.copy`` (35 ns against `copy_row`'s 230 for a
    4-field row). A row it tracks (a container, or a UUID value) goes through `copy_row`.
    """
    if not _TRACKING_TELLS:
        return [copy_row(r) for r in rows]
    if not any(map(_is_tracked, rows)):
        return list(map(_copy_dict, rows))
    return [copy_row(r) if _is_tracked(r) else r.copy() for r in rows]


def _freeze(value: Any) -> Any:
    t = type(value)
    if t is dict:
        return (dict, tuple(sorted((k, _freeze(v)) for k, v in value.items())))
    if t is list:
        return (list, tuple(_freeze(v) for v in value))
    return (t, value)


def run_select(
    rows: list[Record],
    columns: Columns | None,
    order_by: OrderBy | None,
    limit: int | None,
    offset: int,
    distinct: bool,
) -> list[Record]:
    """Order, project, de-duplicate and page matched stored rows into owned copies."""
    if columns is None and order_by is None and limit is None and not offset and not distinct:
        return copy_rows(rows)  # the plain select
    if order_by is not None:
        rows = _order(rows, order_by)
    start = max(offset or 0, 0)
    stop = None if limit is None or limit < 0 else start + limit
    if distinct:
        project = copy_row if columns is None else _projector(columns)
        seen: set[Any] = set()
        out: list[Record] = []
        for row in rows:
            projected = project(row)
            marker = _freeze(projected)
            if marker not in seen:
                seen.add(marker)
                out.append(projected)
        return out[start:stop]
    if start or stop is not None:
        rows = rows[start:stop]
    if columns is None:
        return copy_rows(rows)
    project = _projector(columns)
    return [project(r) for r in rows]

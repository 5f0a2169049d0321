"""The value domain at the table boundary: records are checked and copied in, copied out.

A record is a dict with str keys. Values: None, bool, int, float (not NaN), str, bytes, list,
dict (str keys), datetime (naive or fixed-offset timezone), date, Decimal (not NaN), UUID —
nested up to `wal.tags.MAX_NESTING` (100) lists and dicts deep, the record counting as one.
Anything else is refused at the mutation with `ValueDomainError` naming the table and the
field, so that no backup can fail on it later.

Rows stored in a table are never mutated in place: a change builds a new dict. So a stored row
can be shared by the table, the journal and a snapshot at no cost; only the caller-facing edges
copy (in: `own_record`; out: `copy_row`).
"""

from __future__ import annotations

import datetime as _dt
import uuid
import zlib
from collections.abc import Mapping
from typing import Any, Final

import orjson

from dictdb.errors import PrimaryKeyError, ValueDomainError
from wal import UnsupportedValueError, brief, is_text, own_value, to_plain

Record = dict[str, Any]

# Checked by type alone (hot path); float, datetime, Decimal and containers need a closer look.
_SHARED: Final = frozenset({str, int, bool, type(None), bytes, _dt.date, uuid.UUID})
#: The ints a plain row holds (JSON tools read 64-bit ints exactly).
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
_INF: Final = float("inf")
_CONTAINERS: Final = frozenset({list, dict})
_SURROGATE: Final = (
    "a str with a lone surrogate is refused: UTF-8 (every file format) cannot hold it"
)
#: Types a primary key may have. Floats, Decimals and bools are excluded: they compare equal
#: across types (1 == 1.0 == True == Decimal(1)) and would make distinct keys collide.
PK_TYPES: Final = frozenset({int, str, bytes, uuid.UUID, _dt.date, _dt.datetime})


def own_record(table: str, record: Any) -> tuple[Record, bool]:
    """Check *record* against the value domain and return an owned deep copy.

    Args:
        table: the table's name, for error messages.
        record: what the caller passed.

    Returns:
        ``(row, plain)``: a new dict the caller cannot reach, and whether the row is *plain*:
        flat, with only str, bool, None, 64-bit int and finite float values, and not a
        one-field dict whose field starts with ``$``. A plain row is its own JSON plain tree
        (`wal.to_plain` would return it unchanged), so snapshots encode it without a walk.
        False is always safe; True is exact.

    Raises:
        ValueDomainError: the record is not a dict, has a non-str key, or holds a value
            outside the domain.
    """
    if type(record) is not dict:
        raise ValueDomainError(
            table,
            "",
            "",
            type(record).__name__,
            f"a record must be a dict, got {type(record).__name__}",
        )
    row = record.copy()
    plain = True
    for field, value in row.items():
        if type(field) is not str:
            raise ValueDomainError(
                table,
                repr(field),
                repr(field),
                type(field).__name__,
                f"field names must be str, got {type(field).__name__} {field!r}",
            )
        if not field.isascii() and not is_text(field):
            raise ValueDomainError(
                table, repr(field), repr(field), "str", f"field name: {_SURROGATE}"
            )
        t = type(value)
        if t is str:
            if value.isascii() or is_text(value):
                continue
            raise ValueDomainError(table, field, field, "str", _SURROGATE)
        if t is bool or value is None:
            continue
        if t is int:
            if INT64_MIN <= value <= INT64_MAX:
                continue
        elif t is float and -_INF < value < _INF:
            continue
        plain = False
        if t not in _SHARED:
            try:
                row[field] = own_value(value, field, 1)  # the record is one level
            except UnsupportedValueError as exc:
                raise ValueDomainError(table, field, exc.path, exc.value_type, exc.reason) from None
    if plain and len(row) == 1 and next(iter(row)).startswith("$"):
        plain = False
    return row, plain


def check_primary_key(table: str, field: str, key: Any) -> None:
    """Refuse a primary key of a type outside `PK_TYPES`.

    Raises:
        PrimaryKeyError: the key's type is not allowed.
    """
    if type(key) not in PK_TYPES:
        raise PrimaryKeyError(
            f"table {table!r}: primary key {field!r} must be int, str, bytes, UUID, date or "
            f"datetime, got {type(key).__name__} {brief(key)}",
            table=table,
            field=field,
        )


def copy_value(value: Any) -> Any:
    """Deep-copy the containers of a domain value (scalars are immutable and shared)."""
    t = type(value)
    if t is dict:
        return {k: copy_value(v) for k, v in value.items()}
    if t is list:
        return [copy_value(v) for v in value]
    return value


def copy_row(row: Record) -> Record:
    """A copy of a stored row that the caller may mutate freely."""
    if _CONTAINERS.isdisjoint(map(type, row.values())):
        return row.copy()
    return {k: copy_value(v) for k, v in row.items()}


_dumps = orjson.dumps
_crc32 = zlib.crc32


def canonical(row: Mapping[str, Any], plain: bool) -> bytes:
    """The canonical bytes of a row: ``orjson.dumps(wal.to_plain(row))`` (fields in stored
    order, non-JSON values tagged), which for a plain row is ``orjson.dumps(row)``."""
    return _dumps(row if plain else to_plain(row))


def row_hash(row: Mapping[str, Any], plain: bool = False) -> int:
    """The hash of one row in the state digest (`dictdb.storage._digest`): CRC-32 of its
    canonical bytes."""
    return _crc32(canonical(row, plain))

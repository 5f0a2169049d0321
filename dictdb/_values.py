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
from collections.abc import Mapping, Sequence
from itertools import repeat
from math import isfinite
from operator import itemgetter
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


#: Records per chunk of `own_records`: small enough that a chunk's rows stay in cache between
#: its passes (copy, columns, key), large enough that the per-chunk calls cost nothing.
_CHUNK: Final = 1024
_NONE: Final = type(None)
_FLAT: Final = frozenset({str, int, bool, float, _NONE})


def own_records(
    table: str,
    records: list[Any],
    key_field: str | None = None,
    auto_keys: Sequence[Any] = (),
) -> tuple[list[Record], list[bool] | None, bool]:
    """`own_record` for each of *records*, in bulk: the write path of a bulk insert.

    Records are taken a chunk at a time. A chunk of flat rows of plain scalars (str, int,
    float, bool, None) with the same fields, the common case, is checked a column at a time
    by built-ins (no Python code per row); any other chunk goes through `own_record` row by
    row, which also names the first value outside the domain. Rows and plains are those
    `own_record` gives, row for row.

    Args:
        table: the table's name, for error messages.
        records: what the caller passed (a list).
        key_field: when given, and while no record has a non-None value there, each row gets
            ``key_field = auto_keys[its position]`` (the auto keys of a bulk insert), set
            while the chunk is still in cache.
        auto_keys: one key per record. The rows hold these very objects: a table whose row
            map, dirty map and rows share one int object per key compares keys by identity,
            without reading another object from memory.

    Returns:
        ``(rows, plains, keyed)``: the owned rows; None when every row is plain, else one
        flag per row as `own_record` gives it (a row whose auto key makes it ``{"$...":
        key}`` counted as not plain); and whether some record has a non-None *key_field*,
        in which case no row got an auto key.

    Raises:
        ValueDomainError: as `own_record`, for the first record refused.
    """
    owned: list[Record] = []
    plains: list[bool] | None = None
    auto = key_field is not None
    keyed = False
    fields_seen: tuple[Any, ...] = ()
    for lo in range(0, len(records), _CHUNK):
        chunk = records[lo : lo + _CHUNK]
        rows = _own_flat(chunk, fields_seen)
        if rows is not None:
            fields_seen = tuple(rows[0])
            if auto:
                assert key_field is not None
                if key_field in fields_seen and list(
                    map(type, map(itemgetter(key_field), rows))
                ).count(_NONE) != len(rows):
                    auto, keyed = False, True
                    _take_back(owned, plains, records, key_field)
                else:
                    for row, key in zip(rows, auto_keys[lo : lo + len(rows)], strict=True):
                        row[key_field] = key
            owned += rows
            if plains is not None:
                plains += repeat(True, len(rows))
            continue
        if plains is None:
            plains = [True] * lo
        for position, record in enumerate(chunk, lo):
            row, plain = own_record(table, record)
            if auto:
                assert key_field is not None
                if row.get(key_field) is not None:
                    auto, keyed = False, True
                    _take_back(owned, plains, records, key_field)
                else:
                    row[key_field] = auto_keys[position]
                    if len(row) == 1 and key_field[:1] == "$":
                        plain = False  # the row is the key alone, named like a tag
            owned.append(row)
            plains.append(plain)
    return owned, plains, keyed


def _take_back(
    owned: list[Record], plains: list[bool] | None, records: list[Any], key_field: str
) -> None:
    """Undo the auto keys `own_records` gave *owned* (the first rows of *records*)."""
    for position, (row, record) in enumerate(zip(owned, records, strict=False)):
        if key_field in record:
            row[key_field] = None  # where the record had it, as None
        else:
            del row[key_field]
            if plains is not None and not row:
                plains[position] = True  # as `own_record` gives {} (the key made it False)


def _own_flat(chunk: list[Any], fields_seen: tuple[Any, ...]) -> list[Record] | None:
    """Owned copies of *chunk* when every record is a dict with the same fields (those of
    its first, named by valid str) and plain scalar values that are all plain; else None."""
    count = len(chunk)
    if list(map(type, chunk)).count(dict) != count:
        return None
    rows = list(map(dict.copy, chunk))
    fields = tuple(rows[0])
    width = len(fields)
    if not width:
        return None
    if fields != fields_seen:
        for field in fields:
            if type(field) is not str or not (field.isascii() or is_text(field)):
                return None
        if width == 1 and fields[0][:1] == "$":
            return None  # a one-field dict named like a tag is not plain
    try:
        columns = [list(map(itemgetter(field), rows)) for field in fields]
    except KeyError:  # a row lacks a field of the first
        return None
    # Each row has the first row's fields: the same number means no other field.
    if sum(map(len, rows)) != width * count:
        return None
    for column in columns:
        if not _plain_column(column, count):
            return None
    return rows


def _plain_column(column: list[Any], count: int) -> bool:
    """Whether every value of *column* (of *count* values) is a plain scalar (see
    `own_record`)."""
    kinds = list(map(type, column))
    kind = kinds[0]
    if kinds.count(kind) != count:
        mixed = set(kinds)
        return mixed <= _FLAT and all(
            _plain_column(part, len(part))
            for part in ([v for v in column if type(v) is k] for k in mixed)
        )
    if kind is str:
        text = "".join(column)
        return text.isascii() or is_text(text)
    if kind is int:
        return bool(min(column) >= INT64_MIN and max(column) <= INT64_MAX)
    if kind is float:
        # A finite sum means every term is finite (an inf or NaN term makes it inf or NaN);
        # an overflowing sum of finite terms takes the slow look.
        return isfinite(sum(column)) or all(map(isfinite, column))
    return kind is bool or kind is _NONE


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

"""CSV import and export: `read_csv`, `write_csv`, `infer_types`.

Import (`read_csv`, `DictDB.import_csv`), as in the reference:

- Column names come from the header row, or are ``col_0 .. col_{n-1}`` (n: the first row's
  length) when ``has_header=False``. Short rows are padded with ``""``, long rows truncated.
- With a schema, each column is converted to its type: int, float, bool (``true/1/yes`` and
  ``false/0/no``, any case), Decimal, datetime and date (ISO 8601), UUID; ``""`` becomes None
  for every type but str; a value that does not convert stays a str, which the schema then
  refuses (so the import fails, leaving nothing behind). list, dict and bytes columns are not
  converted.
- Without a schema and with ``infer_types``, each column takes the narrowest of int < float
  < str that parses all its non-empty cells (Python's `int`/`float` parsing: ``"1_000"`` is
  1000, leading zeros are dropped); ``""`` becomes None in int and float columns. A NaN is
  not a float here, since the value domain refuses NaN: a column holding ``"nan"`` stays str.

`import_csv` is atomic: the file is read and converted first; then, under the database
lock, the table is created and every row inserted as one batch; if the batch is refused
(schema, duplicate key, value domain), the table is dropped again. No reader ever sees the
half-built table and none is left behind (the journal holds the create and the drop).
``skip_validation`` is accepted for compatibility: the schema is always enforced, since a row
that broke it could not be restored from a backup.

Export (`write_csv`, `Table.export_csv`): the columns given, or every field in first-seen
order; a missing field or None is an empty cell, a str is written as is, anything else by
``str()`` (datetimes as ``2024-01-02 03:04:05``, which import reads back; lists and dicts as
Python literals). The file is published atomically (`dictdb._atomic.write_atomic`).
With no rows the file holds just the header when columns are given, else it is empty (the
reference wrote no file at all).
"""

from __future__ import annotations

import csv
import datetime as _dt
import decimal
import io
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from dictdb._atomic import write_atomic
from dictdb._values import Record

if TYPE_CHECKING:
    pass

_TRUE: Final = frozenset({"true", "1", "yes"})
_FALSE: Final = frozenset({"false", "0", "no"})


def _to_bool(text: str) -> bool:
    lower = text.lower()
    if lower in _TRUE:
        return True
    if lower in _FALSE:
        return False
    raise ValueError(text)


def _to_float(text: str) -> float:
    value = float(text)
    if value != value:
        raise ValueError(text)  # NaN is outside the value domain
    return value


def _to_decimal(text: str) -> decimal.Decimal:
    value = decimal.Decimal(text)
    if value.is_nan():
        raise ValueError(text)
    return value


_CONVERTERS: Final[dict[type, Callable[[str], Any]]] = {
    int: int,
    float: _to_float,
    bool: _to_bool,
    decimal.Decimal: _to_decimal,
    _dt.datetime: _dt.datetime.fromisoformat,
    _dt.date: _dt.date.fromisoformat,
    uuid.UUID: uuid.UUID,
}


def _convert(text: str, typ: type) -> Any:
    if typ is str:
        return text
    if text == "":
        return None
    converter = _CONVERTERS.get(typ)
    if converter is None:
        return text
    try:
        return converter(text)
    except (ValueError, ArithmeticError):  # Decimal raises InvalidOperation
        return text


def _parses(converter: Callable[[str], Any], text: str) -> bool:
    try:
        converter(text)
    except ValueError:
        return False
    return True


def infer_types(records: list[Record]) -> dict[str, type]:
    """The narrowest of int < float < str that parses every non-empty cell, per column."""
    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(record))
    types: dict[str, type] = {}
    for column in columns:
        kind: type = int
        for record in records:
            text = record.get(column)
            if type(text) is not str or text == "":
                continue
            if kind is int and not _parses(int, text):
                kind = float
            if kind is float and not _parses(_to_float, text):
                kind = str
                break
        types[column] = kind
    return types


def _convert_all(records: list[Record], types: Mapping[str, type]) -> list[Record]:
    return [
        {
            column: _convert(text, types[column]) if column in types else text
            for column, text in record.items()
        }
        for record in records
    ]


def read_csv(
    filepath: str | Path,
    *,
    delimiter: str = ",",
    has_header: bool = True,
    encoding: str = "utf-8",
    schema: Mapping[str, type] | None = None,
    infer_types_enabled: bool = True,
) -> tuple[list[str], list[Record]]:
    """Read a CSV file into column names and converted records.

    Args:
        filepath: the file.
        delimiter: the field separator.
        has_header: the first row names the columns.
        encoding: the text encoding.
        schema: column → type to convert to (see the module docstring).
        infer_types_enabled: without a schema, infer int/float/str per column.

    Returns:
        ``(columns, records)``.

    Raises:
        OSError: the file cannot be read.
        UnicodeDecodeError: the file is not in *encoding*.
        csv.Error: malformed CSV.
    """
    with Path(filepath).open(encoding=encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        first = next(reader, None)
        if first is None:
            return [], []
        rows: Iterable[list[str]] = reader
        if has_header:
            columns = first
        else:
            columns = [f"col_{i}" for i in range(len(first))]
            rows = [first, *reader]
        width = len(columns)
        records = [
            dict(zip(columns, row[:width] + [""] * (width - len(row)), strict=True)) for row in rows
        ]
    if schema:
        records = _convert_all(records, schema)
    elif infer_types_enabled and records:
        records = _convert_all(records, infer_types(records))
    return columns, records


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if type(value) is str else str(value)


def write_csv(
    filepath: str | Path,
    records: list[Record],
    *,
    columns: list[str] | None = None,
    delimiter: str = ",",
    encoding: str = "utf-8",
) -> int:
    """Write *records* to a CSV file, published atomically.

    Args:
        filepath: the file (replaced if it exists).
        records: the rows.
        columns: the columns and their order; default: every field, in first-seen order.
            Fields not listed are left out.
        delimiter: the field separator.
        encoding: the text encoding.

    Returns:
        The number of rows written (the header not counted).

    Raises:
        OSError: the file cannot be written; nothing is left under its name.
        UnicodeEncodeError: a value cannot be written in *encoding*; nothing is written.
    """
    if columns is None:
        seen: dict[str, None] = {}
        for record in records:
            seen.update(dict.fromkeys(record))
        columns = list(seen)
    buffer = io.StringIO(newline="")
    if columns:
        writer = csv.writer(buffer, delimiter=delimiter)
        writer.writerow(columns)
        writer.writerows([_cell(record.get(c)) for c in columns] for record in records)
    write_atomic(Path(filepath), buffer.getvalue().encode(encoding))
    return len(records)

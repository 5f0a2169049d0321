"""Table schemas: field name → type, checked at every write.

Semantics follow the reference DictDB: every schema field must be present, its value an
instance of the declared type (so ``bool`` passes for ``int``, as ``isinstance`` says), and no
field outside the schema may appear. The primary key is added as ``int`` when the schema does
not name it. Schemas travel in snapshots, deltas and the journal by type *name*.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import uuid
from collections.abc import Mapping
from typing import Any, Final

from dictdb.errors import SchemaValidationError
from wal import brief

Schema = dict[str, type]

#: The types a schema may name, by their stored name.
SCHEMA_TYPES: Final[dict[str, type]] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "list": list,
    "dict": dict,
    "bytes": bytes,
    "datetime": _dt.datetime,
    "date": _dt.date,
    "Decimal": decimal.Decimal,
    "UUID": uuid.UUID,
}
_NAMES: Final = {t: name for name, t in SCHEMA_TYPES.items()}


def normalize_schema(
    table: str, primary_key: str, schema: Mapping[str, Any] | None
) -> Schema | None:
    """Check a user schema and return the table's own copy (primary key added as int).

    Types may be given as types or as their names (``"int"``, ``"datetime"``...).

    Raises:
        SchemaValidationError: a field name is not a str or a type is not supported.
    """
    if schema is None:
        return None
    if not isinstance(schema, Mapping):
        raise SchemaValidationError(
            f"table {table!r}: schema must be a mapping of field → type", table=table
        )
    out: Schema = {}
    for field, typ in schema.items():
        if type(field) is not str:
            raise SchemaValidationError(
                f"table {table!r}: schema field names must be str, got {brief(field)}",
                table=table,
            )
        resolved = SCHEMA_TYPES.get(typ) if isinstance(typ, str) else typ
        if not isinstance(resolved, type) or resolved not in _NAMES:
            shown = typ.__name__ if isinstance(typ, type) else brief(typ)
            raise SchemaValidationError(
                f"table {table!r}: field {field!r} has unsupported schema type {shown} "
                f"(supported: {', '.join(SCHEMA_TYPES)})",
                table=table,
                field=field,
            )
        out[field] = resolved
    out.setdefault(primary_key, int)
    return out


def schema_to_names(schema: Schema | None) -> dict[str, str] | None:
    """The stored form of a schema: field → type name."""
    if schema is None:
        return None
    return {field: _NAMES[typ] for field, typ in schema.items()}


def validate_record(table: str, schema: Schema, record: Mapping[str, Any]) -> None:
    """Check one full record against *schema*.

    Raises:
        SchemaValidationError: a field is missing, of the wrong type, or not in the schema.
    """
    for field, typ in schema.items():
        if field not in record:
            raise SchemaValidationError(
                f"table {table!r}: Missing field '{field}' as defined in schema.",
                table=table,
                field=field,
            )
        value = record[field]
        if not isinstance(value, typ):
            raise SchemaValidationError(
                f"table {table!r}: Field '{field}' expects type '{typ.__name__}', "
                f"got '{type(value).__name__}'.",
                table=table,
                field=field,
            )
    if len(record) != len(schema):
        for field in record:
            if field not in schema:
                raise SchemaValidationError(
                    f"table {table!r}: Field '{field}' is not defined in the schema.",
                    table=table,
                    field=field,
                )

"""The reference DictDB 1.x files: recognised, read into dictdb's value domain, written back.

The reference (PyPI ``dctdb``, which imports as ``dictdb`` too) writes, under the same names as
ours (`dictdb.storage.names`):

- a JSON snapshot: ``{"tables": {name: {"primary_key": "id", "schema": null | {field: "int" |
  "str" | "float" | "bool" | "list" | "dict"}, "records": [record, ...]}}}`` (Python's
  ``json``: ``NaN``/``Infinity`` may appear as bare tokens);
- a pickle snapshot: its ``DictDB`` object pickled (`dictdb.storage._legacy_pickle`);
- a JSON delta: ``{"type": "delta", "timestamp": <epoch>, "tables": {name: {"upserts":
  [record, ...], "deletes": [key, ...]}}}``; it always writes deltas as JSON.

None carries a format name, a version, a checksum, an LSN or a table definition in a delta.
They are recognised by shape: a file without dictdb's checksum trailer that opens like one of
these (`looks_legacy`). Each read logs a WARNING naming the file: damage that still parses
cannot be detected. What is checked: the shape, every record against dictdb's value domain,
the primary keys, the schema; anything else raises `CorruptFileError` naming the file.

Values dictdb does not hold are converted as the reference's own JSON would have stored them
(tuple and set → list, a non-str dict key → its JSON text), and NaN → None; each file's
conversions are counted in one WARNING. A tuple or other non-scalar primary key is refused.

Reading is `read_legacy`; building an engine and applying a delta are `dictdb.storage.persist`'s
(`load`, `apply_delta`), which call here. Writing back is `save_legacy`.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from dictdb._engine import HasEngine, check_name, normalize_definition
from dictdb._values import PK_TYPES, own_record
from dictdb.errors import (
    CorruptFileError,
    CorruptJSONError,
    CorruptPickleError,
    CorruptShapeError,
    SchemaValidationError,
    ValueDomainError,
)
from dictdb.schema import validate_record
from dictdb.storage._legacy_pickle import (
    SCHEMA_TYPE_NAMES,
    Holder,
    TypeName,
    dumps_reference_pickle,
    read_reference_pickle,
    walk_budget,
)
from dictdb.storage.names import name_kind, name_stamp
from dictdb.storage.target import Located, Where, locate
from wal import MAX_NESTING, MAX_TS, CodecError, brief

log = logging.getLogger("dictdb")

#: What every legacy read warns.
UNVERIFIED: Final = (
    "read as a reference DictDB 1.x file: legacy files carry no checksum, so damage that "
    "still parses cannot be detected"
)

_JSON_OPENING: Final = re.compile(rb'\A\s*\{\s*"(?:tables|type)"\s*:')
_OURS_PICKLE: Final = re.compile(rb"\A\x80\x05(?:\x95[\s\S]{8})?\}")


def looks_legacy(content: bytes | bytearray | memoryview, file_format: str) -> bool:
    """Whether *content* (a file without dictdb's trailer) opens like a reference file.

    JSON: an object whose first member is ``tables`` or ``type`` (dictdb's open with
    ``format``). Pickle: anything but dictdb's header stream (protocol 5, then a dict), so
    that a foreign pickle meets the legacy reader, which names what it refuses.
    """
    head = bytes(content[:64])
    if file_format == "json":
        return _JSON_OPENING.match(head) is not None
    return head.startswith(b"\x80") and _OURS_PICKLE.match(head) is None


_OURS_JSON: Final = b'{"format":"dictdb"'


def is_ours(content: bytes | bytearray | memoryview, file_format: str) -> bool:
    """Whether *content* opens like a dictdb file, or like the start of one (a truncated
    file is ours, and damaged: it is not read as the reference's)."""
    head = bytes(content[:18])
    if file_format == "json":
        return bool(head) and (head.startswith(_OURS_JSON) or _OURS_JSON.startswith(head))
    if len(head) >= 12:
        return _OURS_PICKLE.match(head) is not None
    return len(head) >= 2 and head.startswith(b"\x80\x05")


class _Shape(CodecError):
    """A member missing or of the wrong type (`CorruptShapeError`)."""


@attrs.frozen
class LegacyTable:
    """One table of a reference snapshot, in dictdb's domain.

    Attributes:
        name, primary_key, schema: its definition (`dictdb._engine.normalize_definition`).
        rows: key → owned row.
        special: keys of rows that are not plain (see `dictdb._values.own_record`).
        next_pk: the next automatic key (after the largest int key, and the reference's own
            counter when its pickle holds one).
    """

    name: str
    primary_key: str
    schema: Any
    rows: dict[Any, dict[str, Any]]
    special: frozenset[Any]
    next_pk: int


@attrs.frozen
class LegacySnapshot:
    """A reference snapshot: its tables, and the time its name says (None: another name)."""

    path: Path
    tables: tuple[LegacyTable, ...]
    stamp: float | None


@attrs.frozen
class LegacyChange:
    """One table's part of a reference delta: rows to put whole, then keys to delete."""

    upserts: tuple[tuple[dict[str, Any], bool], ...]  # (owned row, plain)
    deletes: tuple[Any, ...]


@attrs.frozen
class LegacyDelta:
    """A reference delta; *stamp* is its name's time, else its ``timestamp`` member."""

    path: Path
    tables: dict[str, LegacyChange]
    stamp: float | None


def read_legacy(
    where: Located, content: bytes | bytearray | memoryview, file_format: str
) -> LegacySnapshot | LegacyDelta:
    """Read a reference file whose bytes are *content* (see the module docstring).

    Raises:
        CorruptFileError: not a well-formed reference file, or holding what dictdb refuses.
    """
    path = where.path
    if looks_legacy(content, file_format):
        log.warning("%s: %s", path, UNVERIFIED)
    converted: Counter[str] = Counter()
    try:
        if file_format == "pickle":
            try:
                result: LegacySnapshot | LegacyDelta = _from_pickle(path, content, converted)
            except (_Shape, ValueDomainError, SchemaValidationError):
                raise
            except CodecError as exc:
                raise CorruptPickleError(path, f"reference DictDB pickle: {exc}") from None
        else:
            result = _from_json(path, content, converted)
    except _Shape as exc:
        raise CorruptShapeError(path, f"reference DictDB file: {exc}") from None
    except (CodecError, ValueDomainError, SchemaValidationError) as exc:
        raise CorruptFileError(path, f"reference DictDB file: {exc}") from None
    kind = name_kind(path.name)
    found = "full" if isinstance(result, LegacySnapshot) else "delta"
    if kind is not None and kind != found:
        raise CorruptFileError(path, f"named as a {kind}, but holds a reference {found}")
    if converted:
        what = ", ".join(f"{n} {k}" for k, n in sorted(converted.items()))
        log.warning("%s: converted values dictdb does not hold: %s", path, what)
    return result


# -- JSON ---------------------------------------------------------------------------------------


def _nan(token: str) -> float:
    return math.nan if token == "NaN" else float(token.replace("Infinity", "inf"))


def _float(text: str) -> float:
    # Python's json writes infinity as the token Infinity; a number past float range is
    # damage (or a hand edit) that would silently become infinity.
    value = float(text)
    if math.isinf(value):
        raise CodecError(f"the number {text[:40]} is past float range")
    return value


def _members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Python's json keeps the last of repeated members silently: a sign of damage here.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise CodecError(f"member {key!r} appears twice in one object")
            seen.add(key)
    return obj


def _from_json(
    path: Path, content: bytes | bytearray | memoryview, converted: Counter[str]
) -> LegacySnapshot | LegacyDelta:
    text = ""
    try:
        text = bytes(content).decode("utf-8")
        doc = json.loads(text, parse_constant=_nan, parse_float=_float, object_pairs_hook=_members)
    except UnicodeDecodeError as exc:
        raise CorruptFileError(path, f"reference DictDB file: not UTF-8: {exc}") from None
    except RecursionError:
        raise CorruptFileError(path, "reference DictDB file: nested too deep") from None
    except CodecError as exc:
        raise CorruptFileError(path, f"reference DictDB file: {exc}") from None
    except json.JSONDecodeError as exc:
        raise CorruptJSONError(path, f"not valid JSON: {exc}", text, exc.pos) from None
    except ValueError as exc:  # ints past Python's digit limit
        raise CorruptFileError(path, f"reference DictDB file: not valid JSON: {exc}") from None
    if type(doc) is not dict:
        raise _Shape(f"not a snapshot or delta object but {type(doc).__name__}")
    if doc.keys() & {"format", "version", "checksum"}:
        raise _Shape("a dictdb header without its checksum trailer: truncated or damaged")
    stamp = name_stamp(path.name)
    if "type" in doc and (doc["type"] != "delta" or doc.keys() - {"type", "timestamp", "tables"}):
        raise _Shape(
            "not a valid delta file: a delta has exactly 'type': 'delta', 'timestamp' and 'tables'"
        )
    if "tables" not in doc:
        raise _Shape("no 'tables' member")
    tables = doc["tables"]
    if type(tables) is not dict:
        raise _Shape(f"'tables' must be an object, not {type(tables).__name__}")
    if "type" in doc:
        timestamp: Any = doc.get("timestamp")
        if stamp is None and type(timestamp) in (int, float) and 0 <= timestamp < MAX_TS:
            stamp = float(timestamp)
        return LegacyDelta(path, _delta_tables(tables, converted), stamp)
    if doc.keys() != {"tables"}:
        raise _Shape("a snapshot has exactly one member, 'tables'")
    out = []
    for name, tdoc in tables.items():
        if type(tdoc) is not dict or tdoc.keys() != {"primary_key", "schema", "records"}:
            raise _Shape(f"table {name!r} must hold exactly primary_key, schema and records")
        records = tdoc["records"]
        if type(records) is not list:
            raise _Shape(f"table {name!r}: records must be a list, not {type(records).__name__}")
        out.append(_table(name, tdoc["primary_key"], tdoc["schema"], records, None, converted))
    return LegacySnapshot(path, tuple(out), stamp)


def _delta_tables(tables: dict[str, Any], converted: Counter[str]) -> dict[str, LegacyChange]:
    out: dict[str, LegacyChange] = {}
    for name, change in tables.items():
        if type(change) is not dict or change.keys() - {"upserts", "deletes"}:
            raise _Shape(f"table {name!r}: a change holds upserts and deletes only")
        upserts, deletes = change.get("upserts", []), change.get("deletes", [])
        if type(upserts) is not list or type(deletes) is not list:
            raise _Shape(f"table {name!r}: upserts and deletes must be lists")
        rows = tuple(_own(name, r, converted, None) for r in upserts)
        keys = tuple(_key(name, k) for k in deletes)
        out[name] = LegacyChange(rows, keys)
    return out


# -- pickle -------------------------------------------------------------------------------------


def _from_pickle(
    path: Path, content: bytes | bytearray | memoryview, converted: Counter[str]
) -> LegacySnapshot:
    root = read_reference_pickle(bytes(content))
    if type(root) is not Holder or root.marker.name != "DictDB" or root.state is None:
        raise CodecError("the pickle does not hold the reference's DictDB")
    state = root.state
    tables = state.get("tables")
    if state.keys() != {"tables"} or type(tables) is not dict:
        raise CodecError("the reference DictDB's state must be exactly {'tables': {...}}")
    budget = [walk_budget(len(content))]
    out = []
    for name, holder in tables.items():
        if type(holder) is not Holder or holder.marker.name != "Table" or holder.state is None:
            raise CodecError(f"table {brief(name)} is not the reference's Table")
        tstate = holder.state
        required = {"table_name", "primary_key", "records", "schema"}
        if not required <= tstate.keys() or tstate.keys() - required - {"_next_pk"}:
            raise CodecError(f"table {brief(name)}: unexpected state {sorted(map(str, tstate))}")
        if tstate["table_name"] != name:
            raise CodecError(f"table {brief(name)} says it is {brief(tstate['table_name'])}")
        records = tstate["records"]
        if type(records) is not dict:
            raise CodecError(f"table {brief(name)}: records must be a dict")
        next_pk = tstate.get("_next_pk")
        out.append(
            _table(
                name,
                tstate["primary_key"],
                tstate["schema"],
                records,
                next_pk if type(next_pk) is int else None,
                converted,
                budget,
            )
        )
    return LegacySnapshot(path, tuple(out), name_stamp(path.name))


# -- tables, rows and values --------------------------------------------------------------------


def _table(
    name: Any,
    primary_key: Any,
    schema: Any,
    records: list[Any] | dict[Any, Any],
    next_pk: int | None,
    converted: Counter[str],
    budget: list[int] | None = None,
) -> LegacyTable:
    if type(name) is not str:
        raise CodecError(f"a table name must be a str, got {brief(name)}")
    try:
        check_name("table name", name)
    except (TypeError, ValueError) as exc:
        raise CodecError(str(exc)) from None
    if schema is not None:
        if type(schema) is not dict or not all(
            type(t) in (str, TypeName) and t in SCHEMA_TYPE_NAMES for t in schema.values()
        ):
            raise CodecError(
                f"table {name!r}: a schema maps fields to one of "
                f"{', '.join(sorted(SCHEMA_TYPE_NAMES))}"
            )
        schema = {field: str(t) for field, t in schema.items()}
    try:
        pk, checked_schema = normalize_definition(
            name, {"primary_key": primary_key, "schema": schema}
        )
    except SchemaValidationError as exc:
        raise CodecError(str(exc)) from None
    rows: dict[Any, dict[str, Any]] = {}
    special: set[Any] = set()
    items = records.items() if type(records) is dict else ((None, r) for r in records)
    for stored_key, record in items:
        row, plain = _own(name, record, converted, budget)
        if pk not in row:
            raise CodecError(f"table {name!r}: a record lacks its primary key {pk!r}")
        key = _key(name, row[pk])
        if stored_key is not None and (type(stored_key) is not type(key) or stored_key != key):
            raise CodecError(
                f"table {name!r}: the record stored under {brief(stored_key)} has "
                f"{pk!r} = {brief(key)}"
            )
        if key in rows:
            raise CodecError(f"table {name!r}: primary key {brief(key)} twice")
        if checked_schema is not None:
            validate_record(name, checked_schema, row)
        rows[key] = row
        if not plain:
            special.add(key)
    largest = max((k for k in rows if type(k) is int), default=0)
    counter = max(largest + 1, next_pk or 1, 1)
    return LegacyTable(name, pk, checked_schema, rows, frozenset(special), counter)


def _key(table: str, key: Any) -> Any:
    if type(key) not in PK_TYPES or type(key) is bool:
        raise CodecError(
            f"table {table!r}: primary key {brief(key)} is a {type(key).__name__}; dictdb keys "
            "are int, str, bytes, UUID, date or datetime"
        )
    return key


def _own(
    table: str, record: Any, converted: Counter[str], budget: list[int] | None
) -> tuple[dict[str, Any], bool]:
    # JSON records need converting only when they hold NaN (rare): try the direct way first.
    # A pickled record may share containers (the memo), so only a flat one skips the walk,
    # which counts every value it visits against the file's budget.
    if budget is None:
        try:
            return own_record(table, record)
        except ValueDomainError:
            pass
        budget = [walk_budget(len(repr(record)))]
    elif type(record) is dict and all(type(v) in _FLAT for v in record.values()):
        budget[0] -= len(record) + 1
        if budget[0] >= 0:
            try:
                return own_record(table, record)
            except ValueDomainError:
                pass  # NaN, say: converted below
    return own_record(table, _convert(record, converted, budget, 0))


#: Value types that hold no other value (NaN aside: `own_record` refuses it, and the caller
#: converts it).
_FLAT: Final = frozenset({str, int, float, bool, type(None), bytes})


def _convert(value: Any, converted: Counter[str], budget: list[int], depth: int) -> Any:
    """A copy of *value* with what dictdb does not hold converted (module docstring)."""
    budget[0] -= 1
    if budget[0] < 0:
        raise CodecError("the file shares objects far beyond its size (a memo bomb?)")
    if depth > MAX_NESTING + 1:
        raise CodecError(f"values nest more than {MAX_NESTING} deep (or refer to themselves)")
    t = type(value)
    if t is dict:
        out = {}
        for k, v in value.items():
            name = k
            if type(k) is not str:
                name = _json_key(k)
                converted["dict keys → str"] += 1
                if name in value or name in out:
                    raise CodecError(f"dict keys {brief(k)} and {name!r} would be one key")
            out[name] = _convert(v, converted, budget, depth + 1)
        return out
    if t is list or t is tuple:
        if t is tuple:
            converted["tuples → lists"] += 1
        return [_convert(v, converted, budget, depth + 1) for v in value]
    if t is set or t is frozenset:
        converted["sets → lists"] += 1
        items = [_convert(v, converted, budget, depth + 1) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if t is float and math.isnan(value):
        converted["NaN → None"] += 1
        return None
    if t in (Holder, TypeName):
        raise CodecError(f"a record holds {brief(value)}")
    return value


def _json_key(key: Any) -> str:
    # What `json.dumps` writes for a dict key (the reference's JSON did this to them).
    if type(key) in (int, float, bool) or key is None:
        return str(json.dumps(key))
    raise CodecError(f"a dict key of {type(key).__name__} ({brief(key)})")


# -- writing back -------------------------------------------------------------------------------

#: The value types the reference's files hold, by format (its restricted unpickler refuses
#: datetime, date, Decimal and UUID; JSON holds none of them, nor bytes).
_REFERENCE_TYPES: Final[dict[str, frozenset[type]]] = {
    "json": frozenset({str, int, float, bool, type(None), list, dict}),
    "pickle": frozenset({str, int, float, bool, type(None), list, dict, bytes}),
}


def legacy_tables(db: HasEngine, file_format: str) -> dict[str, dict[str, Any]]:
    """The state of *db* as the reference's table states, checked against what its
    *file_format* holds.

    Raises:
        ValueDomainError: a value, key or schema type the reference's format cannot hold
            (naming table and field).
    """
    engine = db.engine
    allowed = _REFERENCE_TYPES[file_format]
    with engine.lock:
        cut = [
            (name, t.primary_key, t.schema, t.rows.copy(), t.next_pk)
            for name, t in engine.tables.items()
        ]
    out: dict[str, dict[str, Any]] = {}
    for name, pk, schema, rows, next_pk in cut:
        if schema is not None:
            for field, typ in schema.items():
                if typ.__name__ not in SCHEMA_TYPE_NAMES:
                    raise ValueDomainError(
                        name,
                        field,
                        field,
                        typ.__name__,
                        f"the reference's schemas cannot name {typ.__name__}",
                    )
        for row in rows.values():
            for field, value in row.items():
                _check_reference_value(name, field, value, allowed, file_format)
        out[name] = {
            "table_name": name,
            "primary_key": pk,
            "records": rows,
            "schema": None if schema is None else dict(schema),
            "_next_pk": next_pk,
        }
    return out


def _check_reference_value(
    table: str, field: str, value: Any, allowed: frozenset[type], file_format: str
) -> None:
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t not in allowed:
            raise ValueDomainError(
                table,
                field,
                field,
                t.__name__,
                f"the reference's {file_format} files cannot hold a {t.__name__}",
            )
        if t is dict:
            stack.extend(v.values())
        elif t is list:
            stack.extend(v)


def encode_legacy(tables: Mapping[str, dict[str, Any]], file_format: str) -> bytes:
    """The bytes of a reference snapshot of *tables* (from `legacy_tables`)."""
    if file_format == "pickle":
        return dumps_reference_pickle(tables)
    doc = {
        "tables": {
            name: {
                "primary_key": t["primary_key"],
                "schema": None
                if t["schema"] is None
                else {f: typ.__name__ for f, typ in t["schema"].items()},
                "records": list(t["records"].values()),
            }
            for name, t in tables.items()
        }
    }
    return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"


def save_legacy(
    db: HasEngine, filename: Where, file_format: str = "json", *, overwrite: bool = True
) -> Path:
    """Write the current state of *db* as a reference DictDB 1.x snapshot, atomically.

    The reference's own ``DictDB.load(filename, file_format)`` reads it. Nothing about
    history travels (no LSN, no lineage, no checksum: the reference has none).

    Args:
        db: the database.
        filename: where to write.
        file_format: ``"json"`` or ``"pickle"``.
        overwrite: replace an existing file (False: refuse with FileExistsError).

    Returns:
        The path written.

    Raises:
        ValueDomainError: a value the reference's format cannot hold; no file is written.
        FileExistsError: the file exists and *overwrite* is False.
        OSError: the write failed; no file is left.
    """
    fmt = file_format.lower() if isinstance(file_format, str) else file_format
    if fmt not in _REFERENCE_TYPES:
        raise ValueError(f"unsupported file_format {file_format!r}: use 'json' or 'pickle'")
    data = encode_legacy(legacy_tables(db, fmt), fmt)
    where = locate(filename)
    writer = where.target.create(where.name, overwrite=overwrite)
    try:
        writer.write(data)
        writer.publish()
    except BaseException:
        writer.discard()
        raise
    return where.path

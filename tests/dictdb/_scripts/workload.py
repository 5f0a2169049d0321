"""A random workload: statements drawn by hypothesis and run against a real `DictDB`.

Every statement the library refuses (a duplicate key, a schema violation...) changes nothing
by contract, so refusals are simply skipped: the journal holds only what was applied.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

from hypothesis import strategies as st

from dictdb import DictDB, DictDBError, Field
from tests import strategies as s
from wal import MAX_NESTING

#: Table names, few enough that drops and re-creations of one name are frequent.
TABLE_NAMES = ("a", "b", "$t", "é x")

#: A schema exercising the non-JSON types; its rows are drawn by `schema_rows`.
TYPED_SCHEMA = {"n": "int", "amount": "Decimal", "when": "datetime", "blob": "bytes"}


def explicit_keys() -> st.SearchStrategy[Any]:
    """Primary keys of every allowed type, ints bounded (see the huge-int xfail test)."""
    return st.one_of(
        st.integers(-5, 40),
        st.integers(-(2**63), 2**62),
        st.text(max_size=5),
        st.binary(max_size=4),
        st.uuids(),
        st.dates(),
        s.datetimes(),
    )


def free_rows(pk: str) -> st.SearchStrategy[dict[str, Any]]:
    """Rows of a schema-less table, without their key."""
    return s.records(max_size=4).map(lambda r: {k: v for k, v in r.items() if k != pk})


def schema_rows() -> st.SearchStrategy[dict[str, Any]]:
    """Rows of a `TYPED_SCHEMA` table, without their key."""
    return st.fixed_dictionaries(
        {
            "n": st.one_of(st.integers(), s.huge_ints(), st.booleans()),
            "amount": s.decimals(),
            "when": s.datetimes(),
            "blob": st.binary(max_size=6),
        }
    )


def _rows_for(db: DictDB, name: str) -> st.SearchStrategy[dict[str, Any]]:
    table = db.get_table(name)
    return schema_rows() if table.schema is not None else free_rows(table.primary_key)


STATEMENTS = (
    "insert",
    "insert",
    "insert_key",
    "insert_key",
    "insert_many",
    "upsert",
    "upsert",
    "update",
    "update_all",
    "delete",
    "delete",
    "reinsert",
    "create",
    "drop",
)


def random_statement(data: st.DataObject, db: DictDB) -> str:
    """Draw one statement, run it on *db*, and return its name (suffixed when refused)."""
    names = db.list_tables()
    kind = data.draw(st.sampled_from(STATEMENTS if names else ("create",)), label="statement")
    try:
        _run(data, db, kind, names)
    except DictDBError:
        return kind + " (refused)"
    return kind


def _run(data: st.DataObject, db: DictDB, kind: str, names: list[str]) -> None:
    if kind == "create":
        free = [n for n in TABLE_NAMES if n not in names]
        if not free:
            kind = "drop"
        else:
            name = data.draw(st.sampled_from(free), label="table")
            shape = data.draw(st.sampled_from(["id", "key", "schema"]), label="shape")
            if shape == "schema":
                db.create_table(name, "id", dict(TYPED_SCHEMA))
            else:
                db.create_table(name, shape)
            return
    name = data.draw(st.sampled_from(names), label="table")
    if kind == "drop":
        db.drop_table(name)
        return
    table = db.get_table(name)
    pk = table.primary_key
    keys = list(table.records)
    rows = _rows_for(db, name)
    if kind == "insert":
        table.insert(data.draw(rows, label="row"))
    elif kind == "insert_key":
        key = data.draw(explicit_keys(), label="key")
        table.insert({**data.draw(rows, label="row"), pk: key})
    elif kind == "insert_many":
        batch = data.draw(st.lists(rows, max_size=4), label="rows")
        table.insert(batch)
    elif not keys:
        table.insert(data.draw(rows, label="row"))
    else:
        key = data.draw(st.sampled_from(keys), label="existing key")
        if kind == "upsert":
            table.upsert({**data.draw(rows, label="row"), pk: key})
        elif kind == "update":
            changes = data.draw(rows, label="changes")
            if table.schema is None:
                changes = dict(list(changes.items())[:2])
            table.update(changes, where=Field(pk) == key)
        elif kind == "update_all":
            # Scalars only: nested values shared by several rows hit the bug shown by
            # test_persist.py::test_a_pickle_delta_of_rows_sharing_a_nested_value_applies.
            changes = data.draw(rows, label="changes")
            table.update({k: v for k, v in changes.items() if type(v) not in (list, dict)})
        elif kind == "delete":
            table.delete(where=Field(pk) == key)
        else:  # reinsert: delete, then insert the same key with other fields (defect A3)
            table.delete(where=Field(pk) == key)
            table.insert({**data.draw(rows, label="row"), pk: key})


def sample_values(around: int = 1) -> dict[str, Any]:
    """One value of each awkward kind, for hand-written tests; *around*: the lists and dicts
    the values will sit in (1: spread into a record), for the deepest value allowed."""
    return {
        "dec": decimal.Decimal("-1.500"),
        "when": dt.datetime(2024, 2, 29, 23, 59, 59, 1, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
        "day": dt.date(1999, 12, 31),
        "blob": b"\x00\xff",
        "big": 2**100,
        "neg0": -0.0,
        "inf": float("-inf"),
        "nested": {"$date": "not a tag", "l": [{"$int": "1"}, 1.0, True]},
        "deepest": deepest_value(around),
    }


def deepest_value(around: int) -> Any:
    """A value as deep as the domain allows inside *around* lists and dicts, at its deepest
    when tagged: dicts of one ``$`` key (each escaped by a ``$dict`` tag), bytes at the
    bottom."""
    value: Any = b"\x01"
    for _ in range(MAX_NESTING - around):
        value = {"$d": value}
    return value

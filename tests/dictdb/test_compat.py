"""The reference's module paths and call forms, kept without weakening our guarantees."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

import dictdb
from dictdb import DictDB, DuplicateTableError, SchemaValidationError, Table
from dictdb.index import HashIndex, SortedIndex, create


@pytest.mark.parametrize(
    ("path", "name", "ours"),
    [
        ("dictdb.core.table", "Table", dictdb.Table),
        ("dictdb.core.condition", "PredicateExpr", dictdb.PredicateExpr),
        ("dictdb.core.condition", "And", dictdb.And),
        ("dictdb.core.field", "Field", dictdb.Field),
        ("dictdb.query.aggregate", "Sum", dictdb.Sum),
        ("dictdb.obs.logging", "logger", dictdb.logger),
        ("dictdb.exceptions", "DuplicateTableError", dictdb.DuplicateTableError),
        ("dictdb.index.hash", "HashIndex", HashIndex),
        ("dictdb.index.sorted", "SortedIndex", SortedIndex),
        ("dictdb.index.base", "IndexBase", dictdb.index.Index),
        ("dictdb.storage.csv_io", "read_csv", dictdb.csv_io.read_csv),
    ],
)
def test_each_reference_path_re_exports_our_object(path: str, name: str, ours: Any) -> None:
    assert ours is getattr(importlib.import_module(path), name)


def test_a_standalone_table_assigned_to_db_tables_joins_the_database_rows_and_all() -> None:
    db = DictDB()
    users = Table("users", schema={"id": int, "name": str})
    users.insert({"name": "ann"})
    users.create_index("name")
    db.tables["users"] = users
    users.insert({"name": "bob"})  # the same object now writes into db
    assert [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}] == db.get_table("users").all()
    assert db.get_table("users") is users
    assert ["name"] == users.indexed_fields()
    assert ["create", "insert", "insert"] == [op.kind for op in db.journal.read(1)]
    with pytest.raises(SchemaValidationError):
        users.insert({"name": 3})


def test_assigning_a_table_refuses_a_taken_name_and_a_table_of_another_database() -> None:
    db, other = DictDB(), DictDB()
    db.create_table("t")
    with pytest.raises(DuplicateTableError):
        db.tables["t"] = Table("t")
    with pytest.raises(ValueError, match="belongs to a database"):
        db.tables["u"] = other.create_table("u")
    assert ["t"] == db.list_tables()


def test_a_replaced_validate_record_refuses_more_and_never_admits_a_bad_row() -> None:
    t = Table("t", schema={"id": int, "age": int})
    t.insert([{"id": 1, "age": 30}, {"id": 2, "age": 25}])
    seen: list[dict[str, Any]] = []

    def no_two(record: dict[str, Any]) -> None:
        seen.append(record)
        record["age"] = -1  # a copy: cannot change what is stored
        if record["id"] == 2:
            raise SchemaValidationError("not 2")

    t.validate_record = no_two  # type: ignore[method-assign]
    with pytest.raises(SchemaValidationError, match="not 2"):
        t.update({"age": 99})
    assert [{"id": 1, "age": 30}, {"id": 2, "age": 25}] == t.all()
    t.validate_record = lambda record: None  # type: ignore[method-assign]
    with pytest.raises(SchemaValidationError):
        t.insert({"id": 3, "age": "old"})
    t.insert({"id": 3, "age": 5})
    assert {"id": 3, "age": 5} == t.get(3)


def test_a_batch_gets_the_keys_its_records_would_get_one_by_one() -> None:
    one_by_one, batch = Table("a"), Table("b")
    records = [{"id": 5}, {"v": 1}, {"id": 10}, {"v": 2}]
    assert [one_by_one.insert(dict(r)) for r in records] == batch.insert(records)
    assert [2, 1, 3] == Table("c").insert([{"v": 0}, {"id": 1}, {"v": 2}])


def test_indexes_answer_the_reference_value_level_calls() -> None:
    hashed = HashIndex()
    hashed.insert(1, "x")
    hashed.insert(2, "x")
    assert {1, 2} == hashed.search("x")
    hashed.delete(1, "x")
    hashed.delete(2, "x")
    hashed.delete(3, "absent")
    assert "x" not in hashed.index
    ordered = create("sorted")
    for pk, age in [(1, 30), (2, 25), (3, 40)]:
        ordered.insert(pk, age)
    ordered.update(3, 40, 20)
    assert ({3, 2}, {1}, {2, 1}) == (
        ordered.search_lt(30),
        ordered.search_gte(30),
        ordered.search_multi([25, 30]),
    )
    assert {2, 1} == SortedIndex().search_between(0, 1) | ordered.search_between(25, 30)
    with pytest.raises(ValueError, match="unknown index type"):
        create("avl")

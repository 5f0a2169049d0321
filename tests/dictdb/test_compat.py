"""The reference's module paths and call forms, kept without weakening our guarantees."""

from __future__ import annotations

import importlib
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

import dictdb
from dictdb import (
    CorruptFileError,
    DictDB,
    DuplicateTableError,
    SchemaValidationError,
    Table,
)
from dictdb.index import HashIndex, SortedIndex, create
from dictdb.storage import persist


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
    db = DictDB(retain_journal=True)
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


# -- the reference's dirty tracking, as views of the journal --------------------------------


def test_dirty_views_follow_inserts_updates_deletes_and_clearing() -> None:
    db = DictDB()
    db.create_table("t")
    t = db.get_table("t")
    assert (False, [], []) == (t.has_changes(), t.get_dirty_records(), t.get_deleted_pks())
    t.insert({"id": 1, "v": "a"})
    t.insert({"id": 2, "v": "b"})
    assert [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}] == sorted(
        t.get_dirty_records(), key=lambda r: r["id"]
    )
    t.clear_dirty_tracking()
    assert not t.has_changes()
    t.update({"v": "c"}, where=t.id == 1)
    t.delete(where=t.id == 2)
    assert ([{"id": 1, "v": "c"}], [2]) == (t.get_dirty_records(), t.get_deleted_pks())
    t.insert({"id": 2, "v": "again"})
    assert [] == t.get_deleted_pks()


def test_a_backup_cut_clears_the_dirty_views_and_persist_has_changes(tmp_path: Path) -> None:
    db = DictDB()
    db.create_table("t")
    db.get_table("t").insert({"id": 1})
    assert persist.has_changes(db)
    db.save(tmp_path / "full.json")
    assert (False, False) == (persist.has_changes(db), db.get_table("t").has_changes())
    db.get_table("t").insert({"id": 2})
    assert persist.has_changes(db)
    persist.save_delta(db, tmp_path / "delta.json")
    assert not persist.has_changes(db)


def test_a_table_dropped_and_created_again_shows_only_its_own_changes() -> None:
    db = DictDB()
    db.create_table("t")
    db.get_table("t").insert({"id": 1})
    db.drop_table("t")
    db.create_table("t")
    db.get_table("t").insert({"id": 2})
    assert [{"id": 2}] == db.get_table("t").get_dirty_records()


@pytest.mark.parametrize("retain", [None, False, True])
def test_dirty_views_need_no_journal_and_hold_one_entry_per_key(retain: bool | None) -> None:
    db = DictDB(retain_journal=retain)
    db.create_table("t")
    t = db.get_table("t")
    for i in range(1000):
        t.upsert({"id": i % 10, "v": i})
    assert (True, 10) == (t.has_changes(), len(t.get_dirty_records()))
    assert 10 == len(db.engine.tables["t"].changed)


# -- the reference's persist call forms ---------------------------------------------------------


def test_allowed_dir_refuses_paths_outside_it_by_parts_not_by_prefix(tmp_path: Path) -> None:
    allowed = tmp_path / "data"
    allowed.mkdir()
    (tmp_path / "data2").mkdir()
    db = DictDB()
    db.create_table("t")
    inside = persist.save(db, allowed / "ok.json", "json", allowed)
    assert DictDB.load(inside).list_tables() == ["t"]
    for path in (allowed / ".." / "escaped.json", tmp_path / "data2" / "x.json"):
        with pytest.raises(ValueError, match="outside the allowed directory"):
            persist.save(db, path, "json", allowed)
        with pytest.raises(ValueError, match="outside the allowed directory"):
            persist.load(path, "json", allowed)
    assert not (tmp_path / "escaped.json").exists()
    with pytest.raises(ValueError, match="outside the allowed directory"):
        persist.apply_delta(db, tmp_path / "d.json", allowed)
    with pytest.raises(ValueError, match="outside the allowed directory"):
        persist.save_delta(db, tmp_path / "d.json", allowed)


def test_load_refuses_an_unknown_format_before_touching_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported file_format 'ini'"):
        persist.load(tmp_path / "missing.json", "ini")


@pytest.mark.parametrize(
    ("content", "name", "kinds"),
    [
        (b"", "e.json", (json.JSONDecodeError,)),
        (b'{"tables": {oops', "s.json", (json.JSONDecodeError,)),
        (b'{"data": {}}', "m.json", (KeyError,)),
        (b'{"tables": null}', "n.json", (AttributeError, TypeError)),
        (b"[]", "a.json", (KeyError, TypeError)),
        (b"", "e.pickle", (EOFError, pickle.UnpicklingError)),
        (b"\x80\x04cos\nsystem\n.", "g.pickle", (pickle.UnpicklingError,)),
    ],
)
def test_damage_raises_corrupt_file_error_that_is_also_the_parsers_kind(
    tmp_path: Path, content: bytes, name: str, kinds: tuple[type[BaseException], ...]
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CorruptFileError) as info:
        DictDB.load(path)
    assert str(path) == info.value.path
    assert all(isinstance(info.value, kind) for kind in kinds)


def test_our_truncated_files_are_also_the_parsers_kind(tmp_path: Path) -> None:
    db = DictDB()
    db.create_table("t")
    for fmt, kind in (("json", json.JSONDecodeError), ("pickle", pickle.UnpicklingError)):
        path = db.save(tmp_path / f"s.{fmt}")
        path.write_bytes(path.read_bytes()[:-30])
        with pytest.raises(kind, match="checksum trailer is missing"):
            DictDB.load(path)


def test_rows_inserted_and_deleted_since_the_cut_leave_no_dirty_entry() -> None:
    # A queue-like churn of new keys must not grow the dirty map (flat memory, R7).
    db = DictDB()
    db.create_table("t")
    t = db.get_table("t")
    t.insert({"id": 0})
    t.clear_dirty_tracking()
    for i in range(1, 1001):
        t.insert({"id": i})
        t.delete(where=t.id == i)
    t.delete(where=t.id == 0)
    assert ({0: 0}, [0]) == (dict(db.engine.tables["t"].changed), t.get_deleted_pks())

"""CSV import and export (catalogue §9): options, conversion, atomicity."""

from __future__ import annotations

import datetime as dt
import decimal
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from dictdb import (
    DictDB,
    DuplicateKeyError,
    DuplicateTableError,
    Field,
    SchemaValidationError,
    Table,
)
from dictdb.csv_io import infer_types, read_csv, write_csv


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


# -- import ------------------------------------------------------------------------------------


def test_import_infers_int_float_and_str_per_column(tmp_path: Path) -> None:
    path = write(tmp_path / "u.csv", "id,name,score,code\n1,ann,1.5,007\n2,bob,2,x\n3,,,\n")
    db = DictDB()
    assert db.import_csv(path, "users") == 3
    expected = [
        {"id": 1, "name": "ann", "score": 1.5, "code": "007"},
        {"id": 2, "name": "bob", "score": 2.0, "code": "x"},
        {"id": 3, "name": "", "score": None, "code": ""},
    ]
    assert expected == db.get_table("users").all()


def test_inference_follows_python_parsing_and_never_produces_nan() -> None:
    records: list[dict[str, Any]] = [
        {"a": "1_000", "b": "1e3", "c": "nan", "d": "inf", "e": ""},
        {"a": " 7 ", "b": "2", "c": "1", "d": "1", "e": ""},
    ]
    assert {"a": int, "b": float, "c": str, "d": float, "e": int} == infer_types(records)


def test_import_without_inference_keeps_text(tmp_path: Path) -> None:
    path = write(tmp_path / "u.csv", "k,v\n1,2\n")
    db = DictDB()
    db.import_csv(path, "t", primary_key="k", infer_types=False)
    assert db.get_table("t").all() == [{"k": "1", "v": "2"}]


def test_import_without_header_names_columns_and_pads_or_truncates(tmp_path: Path) -> None:
    path = write(tmp_path / "u.csv", "a;b;c\nd\ne;f;g;h\n")
    db = DictDB()
    assert db.import_csv(path, "t", delimiter=";", has_header=False) == 3
    expected = [
        {"col_0": "a", "col_1": "b", "col_2": "c", "id": 1},
        {"col_0": "d", "col_1": "", "col_2": "", "id": 2},
        {"col_0": "e", "col_1": "f", "col_2": "g", "id": 3},
    ]
    assert expected == db.get_table("t").all()


def test_import_with_schema_converts_each_type(tmp_path: Path) -> None:
    u = uuid.UUID(int=5)
    path = write(
        tmp_path / "u.csv",
        "id,ok,price,at,day,ref,name\n"
        f"1,Yes,1.10,2024-01-02 03:04:05+01:00,2024-01-02,{u},ann\n"
        "2,0,2,2024-01-02T00:00:00,2024-12-31," + str(u) + ",\n",
    )
    schema = {
        "ok": bool,
        "price": decimal.Decimal,
        "at": dt.datetime,
        "day": "date",
        "ref": uuid.UUID,
        "name": str,
    }
    db = DictDB()
    db.import_csv(path, "t", schema=schema)
    first, second = db.get_table("t").all()
    tz = dt.timezone(dt.timedelta(hours=1))
    assert {
        "id": 1,
        "ok": True,
        "price": decimal.Decimal("1.10"),
        "at": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=tz),
        "day": dt.date(2024, 1, 2),
        "ref": u,
        "name": "ann",
    } == first
    assert (second["ok"], second["name"]) == (False, "")


def test_a_cell_that_does_not_convert_fails_the_import_and_leaves_no_table(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "u.csv", "id,age\n1,30\n2,thirty\n")
    db = DictDB()
    with pytest.raises(SchemaValidationError, match="age"):
        db.import_csv(path, "t", schema={"age": int})
    assert db.list_tables() == []


def test_an_empty_cell_in_a_typed_column_is_none_and_the_schema_refuses_it(
    tmp_path: Path,
) -> None:
    """The reference stored such rows with skip_validation=True and could not reload them."""
    path = write(tmp_path / "u.csv", "id,age\n1,\n")
    _, records = read_csv(path, schema={"id": int, "age": int})
    assert records == [{"id": 1, "age": None}]
    db = DictDB()
    with pytest.raises(SchemaValidationError):
        db.import_csv(path, "t", schema={"age": int}, skip_validation=True)
    assert "t" not in db


def test_a_duplicate_key_fails_the_import_and_leaves_no_table(tmp_path: Path) -> None:
    path = write(tmp_path / "u.csv", "id,v\n1,a\n1,b\n")
    db = DictDB()
    with pytest.raises(DuplicateKeyError):
        db.import_csv(path, "t")
    assert (db.list_tables(), db.lsn) == ([], 2)  # the create and the drop


def test_an_existing_table_is_refused_before_the_file_is_read(tmp_path: Path) -> None:
    db = DictDB()
    db.create_table("t")
    with pytest.raises(DuplicateTableError):
        db.import_csv(tmp_path / "does-not-exist.csv", "t")


def test_an_unreadable_file_creates_nothing(tmp_path: Path) -> None:
    db = DictDB()
    with pytest.raises(FileNotFoundError):
        db.import_csv(tmp_path / "missing.csv", "t")
    path = tmp_path / "latin.csv"
    path.write_bytes("v\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(UnicodeDecodeError):
        db.import_csv(path, "t")
    assert (db.lsn, db.list_tables()) == (0, [])
    assert db.import_csv(path, "t", encoding="latin-1") == 1
    assert db.get_table("t").all() == [{"v": "café", "id": 1}]


def test_empty_key_cells_get_auto_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "u.csv", "id,v\n5,a\n,b\n")
    db = DictDB()
    db.import_csv(path, "t")
    first, second = (r["id"] for r in db.get_table("t").all())
    assert (first, type(second)) == (5, int)
    assert second != first


def test_a_header_only_file_creates_an_empty_table(tmp_path: Path) -> None:
    db = DictDB()
    assert db.import_csv(write(tmp_path / "u.csv", "a,b\n"), "t") == 0
    assert len(db.get_table("t")) == 0


# -- export ------------------------------------------------------------------------------------


def people() -> Table:
    t = Table("people")
    t.insert(
        [
            {"name": "ann", "age": 30, "tags": ["a"]},
            {"name": "bob", "age": None, "at": dt.datetime(2024, 1, 2, 3, 4, 5)},
            {"name": "cy, jr", "age": 5},
        ]
    )
    return t


def test_export_writes_every_field_in_first_seen_order(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    assert people().export_csv(path) == 3
    expected = (
        "name,age,tags,id,at\r\n"
        "ann,30,['a'],1,\r\n"
        "bob,,,2,2024-01-02 03:04:05\r\n"
        '"cy, jr",5,,3,\r\n'
    )
    assert expected == path.read_bytes().decode("utf-8")


def test_export_with_columns_where_and_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    assert (
        people().export_csv(
            path, columns=["age", "name"], where=Field("name") != "bob", delimiter=";"
        )
        == 2
    )
    assert path.read_bytes().decode("utf-8") == "age;name\r\n30;ann\r\n5;cy, jr\r\n"


def test_export_of_given_records_ignores_where(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    t = people()
    assert t.export_csv(path, records=[{"x": 1}], where=Field("name") == "nobody") == 1
    assert path.read_bytes().decode("utf-8") == "x\r\n1\r\n"


def test_export_of_no_rows_writes_the_header_or_an_empty_file(tmp_path: Path) -> None:
    """The reference wrote no file at all when there were no rows and no columns."""
    t = people()
    nothing = Field("name") == "nobody"
    assert t.export_csv(tmp_path / "a.csv", where=nothing, columns=["name"]) == 0
    assert t.export_csv(tmp_path / "b.csv", where=nothing) == 0
    assert (
        (tmp_path / "a.csv").read_bytes().decode("utf-8"),
        (tmp_path / "b.csv").read_bytes().decode("utf-8"),
    ) == ("name\r\n", "")


def test_export_replaces_a_file_atomically_and_a_failure_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out.csv"
    path.write_text("old\n", encoding="utf-8")

    def refuse(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        people().export_csv(path)
    assert os.listdir(tmp_path) == ["out.csv"]
    assert path.read_bytes().decode("utf-8") == "old\n"


def test_an_unencodable_value_writes_nothing(tmp_path: Path) -> None:
    t = Table("t")
    t.insert({"v": "café"})
    with pytest.raises(UnicodeEncodeError):
        t.export_csv(tmp_path / "out.csv", encoding="ascii")
    assert os.listdir(tmp_path) == []


def test_export_then_import_round_trips_flat_rows(tmp_path: Path) -> None:
    t = Table("t")
    t.insert(
        [{"name": "ann", "score": 1.5, "n": 3}, {"name": 'b,"q"\nline', "score": -2.0, "n": 0}]
    )
    path = tmp_path / "t.csv"
    write_csv(path, t.all())
    db = DictDB()
    db.import_csv(path, "copy")
    assert t.all() == db.get_table("copy").all()

"""Reference DictDB 1.x directories: restored as they are, migrated into dictdb chains, and
states exported back in the reference's format (`dictdb.storage.migrate`, `legacy`).

The legacy files here are written by hand in the reference's shapes (its JSON; its pickle via
our writer, which the reference's own loader is checked to read in test_legacy_reference), so
that these run offline.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

import dictdb
from dictdb import CorruptFileError, DictDB, RestoreError, StateError, ValueDomainError
from dictdb.audit import verify
from dictdb.cli import main
from dictdb.errors import UsageError
from dictdb.storage import persist
from dictdb.storage._legacy_pickle import dumps_reference_pickle
from dictdb.storage.legacy import save_legacy
from dictdb.storage.migrate import migrate

T0 = 1_700_000_000


def legacy_name(kind: str, stamp: float, ext: str = "json") -> str:
    sec = int(stamp)
    usec = round((stamp - sec) * 1_000_000)
    prefix = "dictdb_backup" if kind == "full" else "dictdb_delta"
    return f"{prefix}_{sec}_{usec:06d}.{ext}"


def write_full(d: Path, stamp: float, tables: dict[str, Any], ext: str = "json") -> Path:
    """A reference snapshot: *tables* maps name → (primary key, schema names, records)."""
    path = d / legacy_name("full", stamp, ext)
    if ext == "json":
        doc = {
            "tables": {
                name: {"primary_key": pk, "schema": schema, "records": records}
                for name, (pk, schema, records) in tables.items()
            }
        }
        path.write_text(json.dumps(doc, indent=4))
    else:
        types = {"int": int, "str": str, "float": float, "bool": bool, "list": list, "dict": dict}
        state = {
            name: {
                "table_name": name,
                "primary_key": pk,
                "records": {r[pk]: r for r in records},
                "schema": None if schema is None else {f: types[t] for f, t in schema.items()},
                "_next_pk": 1,
            }
            for name, (pk, schema, records) in tables.items()
        }
        path.write_bytes(dumps_reference_pickle(state))
    return path


def write_delta(d: Path, stamp: float, tables: dict[str, tuple[list[Any], list[Any]]]) -> Path:
    path = d / legacy_name("delta", stamp)
    doc = {
        "type": "delta",
        "timestamp": stamp + 0.5,
        "tables": {n: {"upserts": u, "deletes": x} for n, (u, x) in tables.items()},
    }
    path.write_text(json.dumps(doc, indent=2))
    return path


def rows(db: DictDB) -> dict[str, dict[Any, Any]]:
    return {name: t["records"] for name, t in db.engine.to_dict().items()}


@pytest.fixture
def legacy_dir(tmp_path: Path) -> Path:
    """Two reference chains; the second full drifted from the first chain (the reference's
    defects A1-A3), a table appears and one goes."""
    d = tmp_path / "legacy"
    d.mkdir()
    users = [{"id": i, "name": f"u{i}", "age": 20 + i} for i in range(1, 6)]
    write_full(d, T0, {"users": ("id", {"id": "int", "name": "str", "age": "int"}, users)})
    write_delta(
        d,
        T0 + 10,
        {
            "users": (
                [{"id": 2, "name": "u2", "age": 99}, {"id": 6, "name": "u6", "age": 26}],
                [3, 42],
            )
        },
    )
    write_delta(d, T0 + 20, {"users": ([{"id": 2, "name": "two", "age": 100}], [])})
    write_full(
        d,
        T0 + 30,
        {
            "users": ("id", {"id": "int", "name": "str", "age": "int"}, users[:2]),
            "orders": ("code", None, [{"code": "a", "items": [1, 2]}]),
        },
    )
    write_delta(
        d,
        T0 + 40,
        {"orders": ([{"code": "b", "items": []}], ["a"]), "gone": ([{"id": 1}], [])},
    )
    return d


def file_times(d: Path) -> list[float]:
    return sorted(
        int(p.name.split("_")[2]) + int(p.name.split("_")[3].split(".")[0]) / 1e6
        for p in d.glob("dictdb_*")
    )


def test_restore_follows_the_guides_recipe_over_a_legacy_directory(legacy_dir: Path) -> None:
    assert {
        "users": {1: {"id": 1, "name": "u1", "age": 21}, 2: {"id": 2, "name": "u2", "age": 22}},
        "orders": {"b": {"code": "b", "items": []}},
    } == rows(dictdb.restore(legacy_dir))
    at_20 = rows(dictdb.restore(legacy_dir, at=T0 + 25))["users"]
    assert {1, 2, 4, 5, 6} == set(at_20)
    assert {"id": 2, "name": "two", "age": 100} == at_20[2]


def test_a_legacy_delta_replaces_rows_whole_and_skips_absent_deletes(tmp_path: Path) -> None:
    write_full(tmp_path, T0, {"t": ("id", None, [{"id": 1, "secret": "s", "v": 1}])})
    delta = write_delta(tmp_path, T0 + 1, {"t": ([{"id": 1, "v": 2}], [7])})
    db = DictDB.load(tmp_path / legacy_name("full", T0), "json")
    assert 1 == db.apply_delta(delta)
    assert {"t": {1: {"id": 1, "v": 2}}} == rows(db)


def test_restore_by_lsn_over_legacy_files_is_refused_saying_why(legacy_dir: Path) -> None:
    with pytest.raises(RestoreError, match="carry no LSN"):
        dictdb.restore(legacy_dir, lsn=1)


def test_restore_before_the_first_legacy_full_names_it(legacy_dir: Path) -> None:
    with pytest.raises(RestoreError, match=legacy_name("full", T0)):
        dictdb.restore(legacy_dir, at=T0 - 1)


def test_legacy_deltas_without_a_full_restore_nothing_and_say_so(tmp_path: Path) -> None:
    write_delta(tmp_path, T0, {"t": ([{"id": 1}], [])})
    with pytest.raises(RestoreError, match="no full snapshot"):
        dictdb.restore(tmp_path)


def test_every_legacy_read_warns_that_it_is_unverified(
    legacy_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dictdb"):
        dictdb.restore(legacy_dir, at=T0 + 25)
    warned = [r.getMessage() for r in caplog.records if "no checksum" in r.getMessage()]
    assert 3 == len(warned)
    assert all("legacy" in m for m in warned)


def test_a_legacy_delta_for_a_missing_table_is_skipped_with_a_warning(
    legacy_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dictdb"):
        db = dictdb.restore(legacy_dir)
    assert "gone" not in db.list_tables()
    assert any("'gone' is not in the database" in r.getMessage() for r in caplog.records)


def test_a_legacy_delta_breaking_the_schema_changes_nothing(tmp_path: Path) -> None:
    write_full(tmp_path, T0, {"t": ("id", {"id": "int", "v": "int"}, [{"id": 1, "v": 1}])})
    delta = write_delta(tmp_path, T0 + 1, {"t": ([{"id": 1, "v": 5}, {"id": 2, "v": "x"}], [])})
    db = DictDB.load(tmp_path / legacy_name("full", T0), "json")
    with pytest.raises(CorruptFileError) as info:
        db.apply_delta(delta)
    assert str(delta) == info.value.path
    assert {"t": {1: {"id": 1, "v": 1}}} == rows(db)


def test_a_durable_database_refuses_a_legacy_delta(tmp_path: Path) -> None:
    delta = write_delta(tmp_path, T0, {"t": ([{"id": 1}], [])})
    with DictDB.open(tmp_path / "db") as db, pytest.raises(StateError):
        db.apply_delta(delta)


def test_the_next_auto_key_after_a_legacy_load_overwrites_nothing(tmp_path: Path) -> None:
    path = write_full(tmp_path, T0, {"t": ("id", None, [{"id": 5, "v": 1}, {"id": 2}])}, "pickle")
    db = DictDB.load(path, "pickle")
    key = db.get_table("t").insert({"v": 2})
    assert 6 == key
    assert 3 == db.get_table("t").count()


def test_a_directory_with_older_legacy_files_and_newer_ours_restores_across(
    legacy_dir: Path,
) -> None:
    db = dictdb.restore(legacy_dir)
    db.get_table("users").insert({"id": 10, "name": "new", "age": 1})
    db.save(legacy_dir / legacy_name("full", T0 + 100))
    assert 10 in rows(dictdb.restore(legacy_dir))["users"]
    assert 10 not in rows(dictdb.restore(legacy_dir, at=T0 + 45))["users"]
    assert {1, 2, 4, 5, 6} == set(rows(dictdb.restore(legacy_dir, at=T0 + 25))["users"])


# -- migrate -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "compression"), [("json", None), ("pickle", "zstd")])
def test_a_migrated_directory_restores_like_the_legacy_one_at_every_file_time(
    legacy_dir: Path, tmp_path: Path, fmt: str, compression: str | None
) -> None:
    dest = tmp_path / "dest"
    report = migrate(legacy_dir, dest, file_format=fmt, compression=compression)
    assert verify(dest).ok
    assert rows(dictdb.restore(legacy_dir)) == rows(dictdb.restore(dest))
    for t in file_times(legacy_dir):
        assert rows(dictdb.restore(legacy_dir, at=t)) == rows(dictdb.restore(dest, at=t)), t
    assert 1 == report.timeline
    assert all(p.name.endswith(f".{fmt}" + (".zst" if compression else "")) for p in report.written)


def test_migrated_lsns_order_the_history(legacy_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    report = migrate(legacy_dir, dest)
    assert report.lsn == dictdb.restore(dest).lsn
    assert {1, 2, 3, 4, 5, 6} - {3} == set(rows(dictdb.restore(dest, lsn=4))["users"])


def test_migrating_into_a_non_empty_directory_needs_force(legacy_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    first = migrate(legacy_dir, dest)
    names = sorted(p.name for p in dest.iterdir())
    with pytest.raises(UsageError, match="not empty"):
        migrate(legacy_dir, dest)
    again = migrate(legacy_dir, dest, force=True)
    assert names == sorted(p.name for p in dest.iterdir())
    assert (first.lsn, first.timeline) == (again.lsn, again.timeline)
    assert verify(dest).ok


def test_a_source_that_gained_files_migrates_again_in_place(
    legacy_dir: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    migrate(legacy_dir, dest)
    write_delta(legacy_dir, T0 + 50, {"users": ([{"id": 9, "name": "u9", "age": 9}], [])})
    migrate(legacy_dir, dest, force=True)
    assert verify(dest).ok
    assert 9 in rows(dictdb.restore(dest))["users"]
    assert 1 == len(verify(dest).timelines)


def test_migrate_refuses_a_source_without_legacy_files(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    with pytest.raises(UsageError, match="no reference DictDB backup files"):
        migrate(tmp_path / "src", tmp_path / "dest")


def test_migrate_refuses_to_write_into_its_source(legacy_dir: Path) -> None:
    with pytest.raises(UsageError, match="must not be SOURCE"):
        migrate(legacy_dir, legacy_dir, force=True)


def test_deltas_older_than_the_first_full_are_skipped_and_reported(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    early = write_delta(src, T0 - 5, {"t": ([{"id": 1}], [])})
    write_full(src, T0, {"t": ("id", None, [{"id": 2}])})
    report = migrate(src, tmp_path / "dest")
    assert [(early, "a delta older than the first full snapshot")] == list(report.skipped)
    assert {"t": {2: {"id": 2}}} == rows(dictdb.restore(tmp_path / "dest"))


def test_a_damaged_legacy_file_stops_the_migration_naming_it(
    legacy_dir: Path, tmp_path: Path
) -> None:
    bad = legacy_dir / legacy_name("delta", T0 + 20)
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(CorruptFileError) as info:
        migrate(legacy_dir, tmp_path / "dest")
    assert str(bad) == info.value.path


def test_migrate_reports_progress_in_bytes_per_file(legacy_dir: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    migrate(legacy_dir, tmp_path / "dest", progress=lambda done, total: seen.append((done, total)))
    total = sum(p.stat().st_size for p in legacy_dir.iterdir())
    assert 5 == len(seen)
    assert all(t == total for _, t in seen)
    assert [d for d, _ in seen] == sorted({d for d, _ in seen})
    assert total == seen[-1][0]


def test_the_migrate_command_converts_and_verify_passes(
    legacy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "dest"
    assert 0 == main(["migrate", str(legacy_dir), str(dest), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert 5 == len(report["written"])
    assert 0 == main(["verify", str(dest)])
    assert 2 == main(["migrate", str(legacy_dir), str(dest)])
    assert "--force" in capsys.readouterr().err
    assert 0 == main(["migrate", str(legacy_dir), str(dest), "--force"])


# -- export back ---------------------------------------------------------------------------------


def test_save_legacy_round_trips_through_our_legacy_reader(tmp_path: Path) -> None:
    db = DictDB()
    db.create_table("t", schema={"id": int, "name": str, "tags": list})
    db.get_table("t").insert({"name": "é", "tags": [1, {"$k": 2.5}]})
    db.create_table("raw", primary_key="code")
    db.get_table("raw").insert({"code": "x", "blob": b"\x00\xff", "n": 2**80})
    save_legacy(db, tmp_path / "s.pickle", "pickle")
    assert rows(db) == rows(DictDB.load(tmp_path / "s.pickle", "pickle"))
    db.drop_table("raw")
    save_legacy(db, tmp_path / "s.json", "json")
    assert rows(db) == rows(DictDB.load(tmp_path / "s.json", "json"))


def test_db_save_legacy_writes_the_same_file_as_the_function(tmp_path: Path) -> None:
    db = DictDB()
    db.create_table("t")
    db.get_table("t").insert({"name": "x"})
    a = db.save_legacy(tmp_path / "a.json")
    b = save_legacy(db, tmp_path / "b.json", "json")
    assert a.read_bytes() == b.read_bytes()


def test_save_legacy_refuses_what_the_reference_cannot_hold_and_leaves_no_file(
    tmp_path: Path,
) -> None:
    db = DictDB()
    db.create_table("t")
    db.get_table("t").insert({"blob": b"x"})
    with pytest.raises(ValueDomainError, match="'blob'"):
        save_legacy(db, tmp_path / "s.json", "json")
    assert [] == list(tmp_path.iterdir())


def test_the_export_command_writes_a_state_in_the_reference_format(
    legacy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "dest"
    migrate(legacy_dir, dest)
    out = tmp_path / "back.json"
    assert 0 == main(["export", str(dest), "--legacy", "--out", str(out), "--lsn", "4"])
    assert rows(dictdb.restore(dest, lsn=4)) == rows(DictDB.load(out, "json"))
    assert 2 == main(["export", str(dest), "--legacy", "--out", str(out)])
    assert "exists" in capsys.readouterr().err
    assert 0 == main(["export", str(dest), "--legacy", "--out", str(out), "--force"])
    assert rows(dictdb.restore(dest)) == rows(DictDB.load(out, "json"))
    assert 2 == main(["export", str(dest), "--out", str(tmp_path / "x.json")])
    assert "--legacy" in capsys.readouterr().err


def test_our_own_damaged_files_are_still_named_damaged_not_legacy(tmp_path: Path) -> None:
    db = DictDB()
    db.create_table("t")
    path = db.save(tmp_path / legacy_name("full", T0))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(CorruptFileError, match="checksum trailer is missing"):
        persist.load(path)


# -- the tools over a legacy directory -----------------------------------------------------------


def test_verify_reads_every_legacy_file_and_says_what_it_cannot_check(legacy_dir: Path) -> None:
    report = verify(legacy_dir)
    assert report.ok
    assert 5 == report.files_checked
    assert any("no checksum" in n and "migrate" in n for n in report.notes)


def test_verify_names_a_damaged_legacy_delta(legacy_dir: Path) -> None:
    bad = legacy_dir / legacy_name("delta", T0 + 10)
    bad.write_text('{"type": "delta", "timestamp": 1, "tables": {"users": {"upserts": 3}}}')
    report = verify(legacy_dir)
    assert [str(bad)] == [f.path for f in report.findings]
    assert any(legacy_name("delta", T0 + 20) in n for n in report.notes)


def test_ls_lists_legacy_files_apart(legacy_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["ls", str(legacy_dir)])
    out = capsys.readouterr().out
    assert "reference DictDB 1.x files" in out
    assert legacy_name("delta", T0 + 40) in out
    assert 0 == main(["ls", str(legacy_dir), "--json"])
    assert 5 == len(json.loads(capsys.readouterr().out)["legacy"])

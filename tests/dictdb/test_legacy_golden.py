"""The reference DictDB's own files (issue 19): read, restored and written back, offline.

The files under ``tests/data/legacy`` were written by the reference DictDB 1.11.0 and
``expected.json`` holds what the reference saw in them (`tests/data/legacy/make_legacy.py`);
`tests.dictdb.legacy_support` turns that into what our reader must give: the same rows, with
pickled tuples and sets as lists and NaN as None.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from dictdb import (
    BackupManager,
    CorruptFileError,
    DictDB,
    RestoreError,
    ValueDomainError,
    restore,
)
from dictdb.storage import persist
from dictdb.storage.legacy import save_legacy
from tests.dictdb.legacy_support import (
    CHAINS,
    LEGACY,
    actual_tables,
    chain_files,
    expected_doc,
    expected_tables,
    file_format,
    name_time,
    next_key,
    ours,
    untag,
)

FILES: dict[str, Any] = expected_doc()["files"]
REFUSED: dict[str, Any] = expected_doc()["refused"]
SNAPSHOTS = sorted(rel for rel in FILES if "/dictdb_backup_" in rel)
CHAIN_FILES = [(chain, path) for chain in CHAINS for path in chain_files(chain)]


def chain_id(case: tuple[str, Path]) -> str:
    return f"{case[0]}/{case[1].name}"


def expected_after(chain: str, path: Path) -> dict[str, Any]:
    """What a restore up to the chain's file *path* gives."""
    return expected_tables(FILES[f"{chain}/{path.name}"]["tables"])


def legacy_warnings(caplog: pytest.LogCaptureFixture, path: Path) -> list[str]:
    """The WARNING messages of the `dictdb` logger that name *path* as a legacy file without
    a checksum."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "dictdb"
        and r.levelno == logging.WARNING
        and path.name in r.getMessage()
        and "legacy" in r.getMessage()
        and "checksum" in r.getMessage()
    ]


# -- snapshots ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rel", SNAPSHOTS)
def test_every_legacy_snapshot_loads_with_the_rows_the_reference_saw(rel: str) -> None:
    path = LEGACY / rel
    db = DictDB.load(path, file_format(path))
    assert expected_tables(FILES[rel]["tables"]) == actual_tables(db)


@pytest.mark.parametrize("rel", SNAPSHOTS)
def test_the_next_auto_key_after_a_legacy_load_overwrites_no_row(rel: str) -> None:
    # After the largest int key, and after the counter the reference pickled (which its own
    # load ignores, A19): a key deleted before the save is not reused either.
    path = LEGACY / rel
    db = DictDB.load(path, file_format(path))
    state = db.to_dict()
    for name, table in FILES[rel]["tables"].items():
        rows = state[name]["records"]
        least = max(next_key(rows), table.get("pickled_next_pk", 1))
        assert (name, least) == (name, state[name]["next_pk"])
        if table["schema"] is None:
            key = db.get_table(name).insert({"added": True})
            assert (name, least) == (name, key)
            assert {**rows, key: {"added": True, table["primary_key"]: key}} == (
                db.to_dict()[name]["records"]
            )


@pytest.mark.parametrize("rel", SNAPSHOTS)
def test_loading_a_legacy_file_warns_that_it_has_no_checksum(
    rel: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = LEGACY / rel
    with caplog.at_level(logging.WARNING, logger="dictdb"):
        DictDB.load(path, file_format(path))
    assert 1 == len(legacy_warnings(caplog, path))


def test_the_values_converted_from_a_legacy_file_are_counted_in_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The pickle holds tuples, sets, frozensets, NaN and dict keys that are not str; the
    # JSON chain's first full holds none.
    pickled = LEGACY / "snapshots" / "dictdb_backup_1700000000_000000.pickle"
    clean = chain_files("chain-json")[0]
    with caplog.at_level(logging.WARNING, logger="dictdb"):
        DictDB.load(pickled, "pickle")
        DictDB.load(clean, "json")
    by_file = {
        path: [r.getMessage() for r in caplog.records if path.name in r.getMessage()]
        for path in (pickled, clean)
    }
    assert 1 == len(by_file[clean])
    assert 2 == len(by_file[pickled])
    conversions = next(m for m in by_file[pickled] if "checksum" not in m)
    assert all(word in conversions for word in ("tuple", "set", "NaN")), conversions


@pytest.mark.parametrize("rel", sorted(REFUSED))
def test_a_legacy_file_holding_what_dictdb_refuses_is_refused_naming_file_and_table(
    rel: str,
) -> None:
    # Written by the reference itself: a tuple or float key, a datetime (its own unpickler
    # refuses it), a row breaking its schema, a row stored under another key, a keyless row.
    path = LEGACY / rel
    with pytest.raises(CorruptFileError) as info:
        DictDB.load(path, file_format(path))
    assert str(path) == info.value.path
    assert path.name in str(info.value)
    table = REFUSED[rel]["table"]
    if table is not None:
        assert table in str(info.value)


# -- deltas and restore ------------------------------------------------------------------------


@pytest.mark.parametrize("case", CHAIN_FILES, ids=chain_id)
def test_a_legacy_chain_replayed_by_hand_gives_the_state_after_each_file(
    case: tuple[str, Path],
) -> None:
    # The seed guide's recipe with our API: the newest full at or before the file, then the
    # later deltas in name order, each applied with `apply_delta`.
    chain, path = case
    files = [p for p in chain_files(chain) if name_time(p) <= name_time(path)]
    base = [p for p in files if p.name.startswith("dictdb_backup_")][-1]
    db = DictDB.load(base, file_format(base))
    for delta in files[files.index(base) + 1 :]:
        persist.apply_delta(db, delta)
    assert expected_after(chain, path) == actual_tables(db)


@pytest.mark.parametrize("chain", CHAINS)
def test_a_legacy_delta_upsert_replaces_the_whole_row_not_merging_it_as_the_reference_did(
    chain: str,
) -> None:
    # A3: row 2 was deleted and re-inserted without its email in one window; the reference's
    # own apply_delta merged the old email back in.
    files = chain_files(chain)
    entry = FILES[f"{chain}/{files[2].name}"]
    assert "reference_tables" in entry
    db = DictDB.load(files[0], file_format(files[0]))
    persist.apply_delta(db, files[1])
    persist.apply_delta(db, files[2])
    old = untag(entry["reference_tables"]["users"]["rows"])
    assert [{"id": 2, "name": "Bob", "email": "bob@x"}] == [r for r in old if r["id"] == 2]
    assert {"id": 2, "name": "Bob"} == db.to_dict()["users"]["records"][2]


@pytest.mark.parametrize("chain", CHAINS)
def test_a_legacy_delta_naming_a_table_the_database_lacks_is_skipped_with_a_warning(
    chain: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A2: table "late" was created after the first full; the reference skips it too.
    files = chain_files(chain)
    db = DictDB.load(files[0], file_format(files[0]))
    with caplog.at_level(logging.WARNING, logger="dictdb"):
        persist.apply_delta(db, files[1])
    assert "late" not in db.list_tables()
    assert any(
        "late" in r.getMessage() and files[1].name in r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING
    )


@pytest.mark.parametrize("chain", CHAINS)
def test_restore_of_a_legacy_directory_gives_the_newest_state(
    chain: str, caplog: pytest.LogCaptureFixture
) -> None:
    files = chain_files(chain)
    with caplog.at_level(logging.WARNING, logger="dictdb"):
        db = restore(LEGACY / chain)
    assert expected_after(chain, files[-1]) == actual_tables(db)
    used = files[3:]  # the newest full and the deltas after it
    assert [1] * len(used) == [len(legacy_warnings(caplog, p)) for p in used]


@pytest.mark.parametrize("case", CHAIN_FILES, ids=chain_id)
def test_restore_of_a_legacy_directory_at_each_file_time_gives_the_state_after_that_file(
    case: tuple[str, Path],
) -> None:
    # The times are the file names' (``<sec>_<usec>``), never the deltas' "timestamp" member
    # (the wall clock when make_legacy.py ran, years after the names).
    chain, path = case
    t = name_time(path)
    expected = expected_after(chain, path)
    assert expected == actual_tables(restore(LEGACY / chain, at=t))
    assert expected == actual_tables(restore(LEGACY / chain, at=t + 1.0))
    aware = dt.datetime.fromtimestamp(t, dt.UTC)
    assert expected == actual_tables(restore(LEGACY / chain, at=aware))


@pytest.mark.parametrize("chain", CHAINS)
def test_restore_of_a_legacy_directory_before_its_first_full_is_refused(chain: str) -> None:
    with pytest.raises(RestoreError):
        restore(LEGACY / chain, at=name_time(chain_files(chain)[0]) - 1.0)


@pytest.mark.parametrize("chain", CHAINS)
def test_restore_of_a_legacy_directory_by_lsn_is_refused_as_legacy_files_carry_none(
    chain: str,
) -> None:
    with pytest.raises(RestoreError) as info:
        restore(LEGACY / chain, lsn=1)
    assert "legacy" in str(info.value).lower() or "reference" in str(info.value).lower()
    assert "lsn" in str(info.value).lower()


# -- damaged deltas ----------------------------------------------------------------------------


def delta_cases() -> dict[str, Any]:
    """Legacy deltas that must be refused whole, applied to chain-json's first full."""
    row = {"id": 1, "name": "Ann"}
    return {
        "not a delta type": {"type": "full", "timestamp": 1.0, "tables": {}},
        "tables not an object": {"type": "delta", "timestamp": 1.0, "tables": []},
        "upserts not a list": {"type": "delta", "tables": {"users": {"upserts": row}}},
        "deletes not a list": {"type": "delta", "tables": {"users": {"deletes": 3}}},
        "a row without its key": {"type": "delta", "tables": {"users": {"upserts": [{"n": 1}]}}},
        "an unhashable key to delete": {"type": "delta", "tables": {"users": {"deletes": [[1]]}}},
        "a float key to delete": {"type": "delta", "tables": {"users": {"deletes": [1.5]}}},
        "a row breaking its schema after a good one": {
            "type": "delta",
            "tables": {
                "users": {"upserts": [row]},
                "items": {"upserts": [{"sku": "A-1", "qty": "three", "price": 1.0}]},
            },
        },
    }


@pytest.mark.parametrize("case", sorted(delta_cases()))
def test_a_damaged_legacy_delta_is_refused_whole_naming_it(case: str, tmp_path: Path) -> None:
    base = chain_files("chain-json")[0]
    db = DictDB.load(base, "json")
    before = db.to_dict()
    path = tmp_path / "dictdb_delta_1700000001_000000.json"
    path.write_text(json.dumps(delta_cases()[case]), encoding="utf-8")
    with pytest.raises(CorruptFileError) as info:
        persist.apply_delta(db, path)
    assert str(path) == info.value.path
    assert before == db.to_dict()


def test_every_truncation_of_a_legacy_delta_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    files = chain_files("chain-json")
    db = DictDB.load(files[0], "json")
    before = db.to_dict()
    data = files[1].read_bytes()
    path = tmp_path / files[1].name
    outcomes = {}
    for cut in range(len(data.rstrip())):
        path.write_bytes(data[:cut])
        try:
            persist.apply_delta(db, path)
            outcomes[cut] = "applied"
        except CorruptFileError as exc:
            outcomes[cut] = "refused" if exc.path == str(path) else exc.path
    assert {"refused"} == set(outcomes.values())
    assert before == db.to_dict()


# -- writing back ------------------------------------------------------------------------------


#: Every snapshot in both formats, but for the one holding bytes (the reference's JSON cannot).
ROUND_TRIPS = [
    (rel, fmt)
    for rel in SNAPSHOTS
    for fmt in ("json", "pickle")
    if (rel, fmt) != ("snapshots/dictdb_backup_1700000000_000000.pickle", "json")
]


@pytest.mark.parametrize(("rel", "fmt"), ROUND_TRIPS)
def test_save_legacy_then_load_gives_the_same_rows(rel: str, fmt: str, tmp_path: Path) -> None:
    source = LEGACY / rel
    db = DictDB.load(source, file_format(source))
    out = save_legacy(db, tmp_path / f"dictdb_backup_1700000000_000000.{fmt}", fmt)
    assert expected_tables(FILES[rel]["tables"]) == actual_tables(DictDB.load(out, fmt))


def test_save_legacy_json_writes_the_reference_layout(tmp_path: Path) -> None:
    source = chain_files("chain-json")[0]
    db = DictDB.load(source, "json")
    out = save_legacy(db, tmp_path / "out.json", "json")
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert ["tables"] == list(doc)
    items = doc["tables"]["items"]
    assert ["primary_key", "records", "schema"] == sorted(items)
    assert "sku" == items["primary_key"]
    assert {"sku": "str", "qty": "int", "price": "float"} == items["schema"]
    assert [{"sku": "A-1", "qty": 3, "price": 9.5}, {"sku": "B-2", "qty": 0, "price": 0.0}] == (
        items["records"]
    )


#: Values a reference file cannot hold, by format (its unpickler refuses the four classes).
UNWRITABLE: list[tuple[str, Any]] = [
    *[
        ("json", v)
        for v in (
            b"bytes",
            dt.datetime(2024, 1, 2),
            dt.date(2024, 1, 2),
            decimal.Decimal("1.5"),
            uuid.UUID(int=1),
        )
    ],
    *[
        ("pickle", v)
        for v in (
            dt.datetime(2024, 1, 2),
            dt.date(2024, 1, 2),
            decimal.Decimal("1.5"),
            uuid.UUID(int=1),
        )
    ],
]


@pytest.mark.parametrize(
    ("fmt", "value"), UNWRITABLE, ids=[f"{f}-{type(v).__name__}" for f, v in UNWRITABLE]
)
@pytest.mark.parametrize("nested", [False, True], ids=["field", "nested"])
def test_save_legacy_refuses_a_value_the_reference_format_cannot_hold_leaving_no_file(
    fmt: str, value: Any, nested: bool, tmp_path: Path
) -> None:
    db = DictDB()
    db.create_table("fine").insert({"v": 1})
    db.create_table("t").insert({"ok": "yes", "f": {"deep": [value]} if nested else value})
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(ValueDomainError) as info:
        save_legacy(db, folder / f"snap.{fmt}", fmt)
    assert ("t", "f") == (info.value.table, info.value.field)
    assert [] == list(folder.iterdir())


def test_a_refused_save_legacy_leaves_the_file_it_would_replace_intact(tmp_path: Path) -> None:
    target = tmp_path / "snap.json"
    target.write_bytes(b"old contents")
    db = DictDB()
    db.create_table("t").insert({"f": dt.date(2024, 1, 2)})
    with pytest.raises(ValueDomainError):
        save_legacy(db, target, "json")
    assert [target] == list(tmp_path.iterdir())
    assert b"old contents" == target.read_bytes()


def test_a_legacy_directory_copied_with_a_stray_file_still_restores(tmp_path: Path) -> None:
    # What a user's backup directory often holds besides the reference's files.
    folder = tmp_path / "backups"
    shutil.copytree(LEGACY / "chain-json", folder)
    (folder / "notes.txt").write_text("kept by hand", encoding="utf-8")
    expected = expected_after("chain-json", chain_files("chain-json")[-1])
    assert expected == actual_tables(restore(folder))


# -- damaged chains ----------------------------------------------------------------------------


def damaged_copy(tmp_path: Path, chain: str, index: int) -> tuple[Path, Path]:
    """A copy of *chain* whose file number *index* (time order) is cut in half."""
    folder = tmp_path / chain
    shutil.copytree(LEGACY / chain, folder)
    victim = folder / chain_files(chain)[index].name
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    return folder, victim


@pytest.mark.parametrize("chain", CHAINS)
def test_a_damaged_legacy_delta_fails_a_restore_through_it_naming_it_never_skipped(
    chain: str, tmp_path: Path
) -> None:
    # Skipping it would silently lose its changes; a target before it is still reachable.
    files = chain_files(chain)
    folder, victim = damaged_copy(tmp_path, chain, 4)
    with pytest.raises(RestoreError) as info:
        restore(folder)
    assert victim.name in str(info.value)
    before = files[3]
    assert expected_after(chain, before) == actual_tables(restore(folder, at=name_time(before)))


@pytest.mark.parametrize("chain", CHAINS)
def test_a_damaged_newest_legacy_full_fails_the_restore_by_name_or_is_replayed_around(
    chain: str, tmp_path: Path
) -> None:
    # The reference's deltas chain to each other (a full resets nothing, A13 C), so the older
    # full and every delta also give the newest state; giving anything else is the defect.
    folder, victim = damaged_copy(tmp_path, chain, 3)
    try:
        outcome: Any = actual_tables(restore(folder))
    except RestoreError as exc:
        outcome = str(exc)
    if isinstance(outcome, str):
        assert victim.name in outcome
    else:
        assert expected_after(chain, chain_files(chain)[-1]) == outcome


@pytest.mark.parametrize("chain", CHAINS)
def test_a_legacy_snapshot_under_a_delta_name_is_refused_by_name(
    chain: str, tmp_path: Path
) -> None:
    full = chain_files(chain)[0]
    impostor = tmp_path / "dictdb_delta_1700000001_000000.json"
    impostor.write_bytes(chain_files("chain-json")[0].read_bytes())
    with pytest.raises(CorruptFileError) as info:
        persist.apply_delta(DictDB.load(full, file_format(full)), impostor)
    assert str(impostor) == info.value.path


def test_loading_a_legacy_delta_as_a_snapshot_is_refused_by_name() -> None:
    delta = chain_files("chain-json")[1]
    with pytest.raises(CorruptFileError) as info:
        DictDB.load(delta, "json")
    assert str(delta) == info.value.path


@pytest.mark.parametrize("fmt", ["json", "pickle"])
@pytest.mark.parametrize("typ", ["bytes", "datetime", "date", "Decimal", "UUID"])
def test_save_legacy_refuses_a_schema_type_the_reference_cannot_name(
    typ: str, fmt: str, tmp_path: Path
) -> None:
    # The reference's schemas name int, str, float, bool, list and dict only.
    db = DictDB()
    db.create_table("typed", schema={"f": typ})
    with pytest.raises(ValueDomainError) as info:
        save_legacy(db, tmp_path / f"snap.{fmt}", fmt)
    assert ("typed", "f") == (info.value.table, info.value.field)
    assert [] == list(tmp_path.iterdir())


# -- after the adoption ------------------------------------------------------------------------


def test_legacy_deltas_apply_to_a_database_built_by_hand_as_operations() -> None:
    # Not only to one loaded from a legacy file: a delta's changes are operations like any
    # other (a durable database refuses every delta: its log needs each operation).
    db = DictDB()
    files = chain_files("chain-json")
    for name, table in FILES[f"chain-json/{files[0].name}"]["tables"].items():
        created = db.create_table(name, primary_key=table["primary_key"], schema=table["schema"])
        created.insert([untag(ours(row)) for row in table["rows"]])
    lsn = db.lsn
    persist.apply_delta(db, files[1])
    persist.apply_delta(db, files[2])
    assert expected_after("chain-json", files[2]) == actual_tables(db)
    assert db.lsn > lsn


@pytest.mark.parametrize("chain", CHAINS)
def test_our_backups_written_after_a_legacy_restore_into_the_same_directory_win(
    chain: str, tmp_path: Path
) -> None:
    # The migration path: restore the reference's directory, carry on with our manager there.
    folder = tmp_path / chain
    shutil.copytree(LEGACY / chain, folder)
    db = restore(folder)
    db.get_table("users").insert({"name": "after the adoption"})
    db.get_table("users").delete(where=db.get_table("users").id == 1)
    assert BackupManager(db, folder, incremental=True).backup_full() is not None
    assert db.to_dict() == restore(folder).to_dict()
    db.get_table("items").upsert({"sku": "Z-9", "qty": 1, "price": 2.0})
    assert BackupManager(db, folder, incremental=True).backup_delta() is not None
    assert db.to_dict() == restore(folder).to_dict()

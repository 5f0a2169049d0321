"""`history` through the key indexes of backup files (`dictdb.audit.snapshot_keys`): the same
answer as reading every snapshot and delta whole, whatever the indexes' state.

The expected history is the one read without any index (itself checked against what was live
in `tests/dictdb/test_audit.py`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dictdb import BackupManager, DictDB
from dictdb.audit import history, index_snapshots
from dictdb.cli import main
from dictdb.errors import CorruptFileError, RecordNotFoundError
from wal import KeyIndexWarning

KEYS: list[Any] = [1, 2, 3, "a", "b", b"k", uuid.UUID(int=7), dt.date(2024, 5, 6)]


def versions(path: Path, key: Any, table: str = "t") -> list[tuple[Any, ...]]:
    return [
        (e.lsn, e.kind, e.key, e.before, e.after, e.meta, e.granularity)
        for e in history(path, table, key)
    ]


def unindexed(path: Path, key: Any) -> list[tuple[Any, ...]]:
    copy = path.parent / f"{path.name}-plain"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(path, copy, ignore=shutil.ignore_patterns("*.keys"))
    return versions(copy, key)


steps = st.lists(
    st.tuples(st.sampled_from(["upsert", "upsert", "delete", "drop", "backup"]), st.integers(0, 7)),
    min_size=1,
    max_size=50,
)


def run(path: Path, plan: list[tuple[str, int]], **options: Any) -> None:
    db = DictDB()
    manager = BackupManager(db, path, incremental=True, max_deltas_before_full=3, **options)
    for n, (kind, k) in enumerate(plan):
        if "t" not in db.list_tables():
            db.create_table("t", primary_key="id")
        t = db.get_table("t")
        key = KEYS[k]
        with db.audit(actor=f"user{k}", reason="test"):
            if kind == "upsert":
                t.upsert({"id": key, "n": n, "pad": "x" * 30})
            elif kind == "delete":
                with contextlib.suppress(RecordNotFoundError):
                    t.delete(where=t.id == key)
            elif kind == "drop":
                db.drop_table("t")
        if kind == "backup" or n % 4 == 3:
            manager.backup_now()
    manager.backup_now()


@settings(max_examples=15, deadline=None)
@given(plan=steps, probe=st.sampled_from([*KEYS, 99]))
def test_history_through_file_indexes_equals_reading_them_whole(
    tmp_path_factory: pytest.TempPathFactory, plan: list[tuple[str, int]], probe: Any
) -> None:
    path = tmp_path_factory.mktemp("backups")
    run(path, plan)
    expected = versions(path, probe)
    done, fresh = index_snapshots(path)
    assert done >= 1
    assert fresh == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert expected == versions(path, probe)
    assert index_snapshots(path) == (0, done)


@pytest.fixture
def indexed(tmp_path: Path) -> Path:
    path = tmp_path / "b"
    run(path, [("upsert", k % 8) for k in range(40)])
    index_snapshots(path)
    return path


def keys_files(path: Path, kind: str) -> list[Path]:
    return sorted(path.glob(f"dictdb_{kind}_*.json.keys"))


@pytest.mark.parametrize("kind", ["backup", "delta"])
@pytest.mark.parametrize(
    "damage", ["flip-directory", "flip-block", "truncate", "empty", "garbage", "other-file"]
)
def test_a_damaged_index_is_reported_and_the_file_read_whole(
    indexed: Path, kind: str, damage: str
) -> None:
    expected = unindexed(indexed, 2)
    victim, other = keys_files(indexed, kind)[:2]
    data = bytearray(victim.read_bytes())
    if damage == "flip-directory":
        data[20] ^= 0x01
    elif damage == "flip-block":
        data[-3] ^= 0x01
    elif damage == "truncate":
        del data[-5:]
    elif damage == "empty":
        data = bytearray()
    elif damage == "garbage":
        data = bytearray(os.urandom(300))
    else:
        data = bytearray(other.read_bytes())
    victim.write_bytes(bytes(data))
    with pytest.warns(KeyIndexWarning, match="key index not used"):
        assert expected == versions(indexed, 2)


def test_an_index_of_a_file_replaced_since_is_not_used(indexed: Path) -> None:
    expected = unindexed(indexed, 2)
    a, b = sorted(indexed.glob("dictdb_backup_*.json"))[:2]
    shutil.copy(indexed / (a.name + ".keys"), indexed / (b.name + ".keys"))
    with pytest.warns(KeyIndexWarning, match="not the one it was built for"):
        assert expected == versions(indexed, 2)


def test_a_damaged_row_is_found_and_the_snapshot_then_refused(indexed: Path) -> None:
    # The row read through the index has a CRC: a changed byte in it is caught, and the
    # snapshot, read whole, is refused as damaged (its SHA-256), never answered from.
    snapshot = sorted(indexed.glob("dictdb_backup_*.json"))[0]
    data = bytearray(snapshot.read_bytes())
    at = data.index(b'"pad"', data.index(b'"records":['))
    data[at + 10] ^= 0x01  # inside the first row's pad value
    snapshot.write_bytes(bytes(data))

    def every_history() -> None:
        for key in KEYS:
            versions(indexed, key)

    with pytest.warns(KeyIndexWarning), pytest.raises(CorruptFileError):
        every_history()


def test_compressed_and_pickle_files_get_no_index_and_read_as_before(tmp_path: Path) -> None:
    for options in ({"compression": "zstd"}, {"file_format": "pickle"}):
        path = tmp_path / str(len(options)) / next(iter(options))
        run(path, [("upsert", k % 5) for k in range(20)], **options)
        expected = versions(path, 2)
        assert index_snapshots(path) == (0, 0)
        assert not list(path.glob("*.keys"))
        assert expected == versions(path, 2)


def test_retention_removes_a_file_and_its_index(tmp_path: Path) -> None:
    db = DictDB()
    t = db.create_table("t")
    manager = BackupManager(db, tmp_path, incremental=True, max_deltas_before_full=1, keep_chains=1)
    for n in range(6):
        t.upsert({"id": n % 3, "n": n})
        manager.backup_now()
        index_snapshots(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    for name in names:
        if name.endswith(".keys"):
            assert name[: -len(".keys")] in names  # no index outlives its file


def test_the_index_command_writes_file_indexes(
    indexed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for keys_file in indexed.glob("*.keys"):
        keys_file.unlink()
    files = len([*indexed.glob("dictdb_backup_*.json"), *indexed.glob("dictdb_delta_*.json")])
    assert 0 == main(["index", str(indexed)])
    assert f"{files} files indexed, 0 already up to date" in capsys.readouterr().out
    assert 0 == main(["index", str(indexed), "--json"])
    assert f'"files_up_to_date":{files}' in capsys.readouterr().out.replace(" ", "")


def test_files_whose_operations_the_log_holds_are_not_indexed(tmp_path: Path) -> None:
    db = DictDB.open(tmp_path, fsync="off")
    t = db.create_table("t")
    manager = BackupManager(db, tmp_path, incremental=True)
    t.insert([{"id": n} for n in range(10)])
    manager.backup_full()
    t.upsert({"id": 1, "v": 2})
    manager.backup_now()
    db.close()
    assert index_snapshots(tmp_path) == (0, 0)  # history reads the log, never these
    expected = versions(tmp_path, 1)
    shutil.rmtree(tmp_path / "wal")  # without the log, the files are the history
    assert index_snapshots(tmp_path) == (2, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [v[4] for v in expected] == [v[4] for v in versions(tmp_path, 1)]  # the rows

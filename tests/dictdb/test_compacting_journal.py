"""Between backups the journal keeps what changed, folded per key, and deltas stay exact.

A database whose journal is kept only for its backups (the default policy) folds the
operations since its base as they pile up. Deltas cut from it must restore exactly what a
full snapshot would hold, also when deltas failed in between (defect A1 of the reference:
writes made around a failed or concurrent delta must reach a later one).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from dictdb import BackupManager, DictDB, Field, history, restore
from dictdb.storage import persist


def churn(db: DictDB, rng: random.Random, count: int) -> None:
    """Inserts, updates and deletes over a small key space, and a table dropped and re-made."""
    for _ in range(count):
        t = db.get_table("hot")
        key = rng.randrange(300)
        roll = rng.random()
        if roll < 0.6:
            t.upsert({"id": key, "v": rng.randrange(10**6), "tag": bytes([rng.randrange(3)])})
        elif roll < 0.8:
            if t.get(key) is None:
                t.insert({"id": key, "v": -1})
            else:
                t.delete(Field("id") == key)
        elif roll < 0.9999:
            db.get_table("cold").upsert({"id": rng.randrange(50), "n": rng.random()})
        else:
            db.drop_table("cold")
            db.create_table("cold")


def fresh() -> DictDB:
    db = DictDB()
    db.create_table("hot")
    db.create_table("cold")
    return db


def test_deltas_cut_from_a_folded_journal_restore_exactly_across_failed_ones(
    tmp_path: Path,
) -> None:
    rng = random.Random(21)
    db = fresh()
    churn(db, rng, 2_000)
    full = persist.save(db, tmp_path / "full.json", as_base=True)
    deltas = []
    (tmp_path / "a-file").write_text("not a directory")
    for round_ in range(6):
        churn(db, rng, 15_000)
        if round_ % 2 == 0:  # a delta that fails once its cut is taken: nothing released
            with pytest.raises(OSError):
                persist.save_delta(db, tmp_path / "a-file" / f"d{round_}.json")
        else:
            delta = persist.save_delta(db, tmp_path / f"d{round_}.json")
            assert delta is not None
            deltas.append(delta)
        assert db.journal.compactions > 0
        assert db.journal.held <= 2 * 350 + 4_096 * 2, db.journal.held  # keys, not operations
    restored = DictDB.load(full)
    for delta in deltas:
        restored.apply_delta(delta)
    assert restored.to_dict() == db.to_dict()


def test_a_backup_manager_keeps_nothing_before_its_first_full_backup(tmp_path: Path) -> None:
    db = fresh()
    manager = BackupManager(db, tmp_path, incremental=True)
    churn(db, random.Random(1), 5_000)
    assert db.journal.held == 0
    manager.backup_full()
    churn(db, random.Random(2), 20_000)
    assert 0 < db.journal.held < 5_000
    assert manager.backup_delta() is not None
    assert db.journal.held == 0
    restored = restore(tmp_path)
    assert restored.to_dict() == db.to_dict()


def test_an_explicitly_kept_journal_is_never_folded(tmp_path: Path) -> None:
    # retain_journal=True promises every operation to whoever reads the journal.
    db = DictDB(retain_journal=True)
    db.create_table("hot")
    db.create_table("cold")
    persist.save(db, tmp_path / "full.json", as_base=True)
    churn(db, random.Random(3), 10_000)
    assert db.journal.compactions == 0
    assert db.journal.held == len(db.journal) == db.lsn - 2 >= 10_000


def test_a_table_whose_rows_all_came_and_went_still_carries_its_key_counter(
    tmp_path: Path,
) -> None:
    # A queue: every row inserted with an auto key, then deleted. Folded, nothing is left of
    # the rows, but the delta must still move the table's next key (to_dict compares it).
    db = fresh()
    full = persist.save(db, tmp_path / "full.json", as_base=True)
    hot = db.get_table("hot")
    for _ in range(6_000):
        key = hot.insert({"v": 1})
        hot.delete(Field("id") == key)
    assert db.journal.compactions > 0
    assert db.journal.held <= 4_096 + 1
    db.journal.compact()  # all of it folded: what the delta reads holds no row of the queue
    assert db.journal.held == 1
    delta = persist.save_delta(db, tmp_path / "delta.json")
    assert delta is not None
    restored = DictDB.load(full)
    restored.apply_delta(delta)
    assert restored.to_dict() == db.to_dict()
    assert restored.get_table("hot").insert({"v": 2}) == 6_001


def test_deltas_keep_who_changed_each_row_last_even_from_a_folded_journal(
    tmp_path: Path,
) -> None:
    # Issue 22, point 5: an in-memory database's deltas keep, per row, the LSN, time and audit
    # meta of the last operation that changed it (the fold keeps the last one's).
    db = fresh()
    hot = db.get_table("hot")
    hot.insert([{"id": key, "v": -1} for key in range(100)])
    manager = BackupManager(db, tmp_path, incremental=True)
    manager.backup_full()
    last: dict[int, tuple[int, dict[str, Any]]] = {}
    for i in range(20_000):
        meta = {"actor": f"a{i % 7}", "reason": f"step {i}"}
        with db.audit(**meta):
            hot.upsert({"id": i % 100, "v": i})
        last[i % 100] = (db.lsn, meta)
    with db.audit(actor="eve", reason="cleanup"):
        hot.delete(Field("id") == 42)
    last[42] = (db.lsn, {"actor": "eve", "reason": "cleanup"})
    assert db.journal.compactions > 0
    assert manager.backup_delta() is not None
    for key in (0, 42, 57, 99):
        version = history(tmp_path, "hot", key)[-1]
        assert (version.granularity, version.lsn) == ("delta", last[key][0])
        assert version.meta == last[key][1]
        assert version.kind == ("delete" if key == 42 else "upsert")

"""Memory stays flat when nothing consumes the journal (R7), and a restore streams a long log
into the state instead of holding it (R22).

A plain `DictDB()` with no backup manager, no durable log and no explicit
``retain_journal=True`` keeps no operations: any number of writes over a fixed set of rows
runs in flat memory. Measured in a child process (peak RSS), against the retaining journal
as a control that the measure can see the growth.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dictdb import BackupManager, DictDB, restore
from dictdb.storage import persist

ROOT = Path(__file__).resolve().parents[2]
UPSERTS = 200_000


def child_kib(script: str, *args: object) -> int:
    """What ``python -m tests.dictdb._scripts.SCRIPT ARGS`` prints: a growth in KiB."""
    result = subprocess.run(
        [sys.executable, "-m", f"tests.dictdb._scripts.{script}", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    return int(result.stdout)


def growth_kib(retain: str) -> int:
    return child_kib("upsert_memory", UPSERTS, retain)


def test_a_database_with_no_consumer_runs_any_number_of_writes_in_flat_memory() -> None:
    flat, retained = growth_kib("none"), growth_kib("true")
    assert retained > 30 * 1024, retained  # the control: 200k kept operations are visible
    assert flat < 8 * 1024, (flat, retained)


def test_with_a_backup_manager_whose_deltas_fail_memory_is_bounded_by_what_changed() -> None:
    # 200k upserts over 1,000 rows after the base: kept compacted, one operation per row.
    bounded, retained = growth_kib("manager"), growth_kib("true")
    assert retained > 30 * 1024, retained
    assert bounded < 8 * 1024, (bounded, retained)


def test_operations_are_kept_from_the_first_full_backup(tmp_path: Path) -> None:
    db = DictDB()
    db.create_table("t")
    db.get_table("t").insert({"id": 1})
    assert 0 == len(db.journal)
    manager = BackupManager(db, tmp_path, incremental=True)
    db.get_table("t").insert({"id": 2})
    assert 0 == len(db.journal)  # the first backup is a full one: it holds these
    manager.backup_full()
    db.get_table("t").insert({"id": 3})
    assert 1 == len(db.journal)
    manager.backup_delta()
    assert 0 == len(db.journal)


def test_a_snapshot_saved_as_a_base_keeps_what_its_next_delta_needs(tmp_path: Path) -> None:
    db = DictDB()
    db.create_table("t")
    db.get_table("t").insert({"id": 1})
    full = db.save(tmp_path / "full.json")
    db.get_table("t").insert({"id": 2})
    delta = persist.save_delta(db, tmp_path / "delta.json")
    assert delta is not None
    restored = DictDB.load(full)
    restored.apply_delta(delta)
    assert db.to_dict() == restored.to_dict()


def restore_growth_kib(directory: Path, mode: str) -> int:
    return child_kib("restore_memory", directory, mode)


def test_a_restore_streams_the_log_in_memory_bounded_by_a_segment(tmp_path: Path) -> None:
    # 100k logged upserts over 100 rows after the full snapshot: the state stays small, the
    # log does not. Segments of 1 MiB: a restore holds at most one (decoded) at a time.
    db = DictDB.open(tmp_path, fsync="off", segment_size=1 << 20)
    t = db.create_table("t")
    t.insert([{"id": i, "v": 0} for i in range(100)])
    BackupManager(db, tmp_path).backup_full()
    for i in range(UPSERTS // 2):
        t.upsert({"id": i % 100, "v": i})
    lsn = db.lsn
    db.close()
    held, streamed = (
        restore_growth_kib(tmp_path, "read_all"),
        restore_growth_kib(tmp_path, "restore"),
    )
    assert held > 40 * 1024, held  # the control: 100k operations held at once are visible
    assert streamed < 20 * 1024, (streamed, held)
    assert lsn == restore(tmp_path).lsn

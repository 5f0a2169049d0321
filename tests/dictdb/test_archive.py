"""Shipping a durable database's log to a backup target: restore from the target alone
reaches every shipped operation exactly, even after the machine and its directory are gone."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from dictdb import BackupManager, DictDB, restore
from dictdb.storage.target import MemoryTarget
from tests.conftest import S3Server


def keys_at(db: DictDB) -> set[int]:
    return {row["id"] for row in db.get_table("t").all()}


@pytest.mark.parametrize("kind", ["memory", "other-directory"])
def test_a_shipped_log_restores_every_operation_exactly(tmp_path: Path, kind: str) -> None:
    place: Any = MemoryTarget("shipped") if kind == "memory" else tmp_path / "elsewhere"
    with DictDB.open(tmp_path / "db", fsync="always", segment_size=4096) as db:
        manager = BackupManager(db, place, min_backup_interval=0, archive_interval=0.05)
        db.create_table("t")
        manager.start()
        manager.backup_full()
        for i in range(1, 120):
            db.get_table("t").insert({"id": i, "pad": "x" * 50})
        shipped = manager.ship_log()
        assert shipped == db.lsn
        manager.stop(final_backup=False)
        final = db.lsn
    for n in (1, 2, 37, 64, final):
        got = restore(place, lsn=n)
        assert (n, set(range(1, n))) == (got.lsn, keys_at(got))
    assert final == restore(place).lsn


def test_shipping_resumes_after_what_the_target_already_holds(tmp_path: Path) -> None:
    place = MemoryTarget("resume")
    root = tmp_path / "db"
    for round_ in range(3):
        with DictDB.open(root, fsync="always") as db:
            if round_ == 0:
                db.create_table("t")
            manager = BackupManager(db, place, min_backup_interval=0, archive_interval=0.05)
            manager.start()
            if round_ == 0:
                manager.backup_full()
            for i in range(round_ * 10 + 1, round_ * 10 + 11):
                db.get_table("t").insert({"id": i})
            manager.stop(final_backup=False)
    got = restore(place)
    assert (31, set(range(1, 31))) == (got.lsn, keys_at(got))


CHILD = textwrap.dedent(
    """
    import json, sys, time
    from dictdb import BackupManager, DictDB
    root, url, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    interval = float(sys.argv[4])
    db = DictDB.open(root, fsync="always")
    db.create_table("t")
    manager = BackupManager(db, url, storage_options=options, min_backup_interval=0,
                            archive_interval=interval)
    manager.backup_full()
    manager.start()
    i = 0
    while True:
        i += 1
        db.get_table("t").insert({"id": i})
        print(json.dumps([db.lsn, time.time()]), flush=True)
        time.sleep(0.002)
    """
)


@pytest.mark.parametrize("interval", [0.3])
def test_machine_loss_restores_every_operation_acknowledged_before_the_interval(
    tmp_path: Path, s3_server: S3Server, interval: float
) -> None:
    """A writer with fsync="always" ships its log to S3; it is killed (SIGKILL) and its
    directory deleted. The bucket alone restores every operation acknowledged more than
    archive_interval + 1 s before the kill, and any LSN exactly."""
    url = s3_server.url()
    root = tmp_path / "db"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), url, json.dumps(s3_server.options), str(interval)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    acknowledged: list[tuple[int, float]] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acknowledged.append(tuple(json.loads(line)))  # type: ignore[arg-type]
        if acknowledged[-1][1] - acknowledged[0][1] > interval + 2.5:
            break
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    shutil.rmtree(root)
    old_enough = [lsn for lsn, at in acknowledged if at < killed_at - interval - 1]
    assert len(old_enough) > 50, len(acknowledged)
    got = restore(url, storage_options=s3_server.options)
    assert got.lsn >= old_enough[-1]
    assert set(range(1, got.lsn)) == keys_at(got)
    for n in (old_enough[0], old_enough[len(old_enough) // 2], old_enough[-1]):
        at_n = restore(url, lsn=n, storage_options=s3_server.options)
        assert (n, set(range(1, n))) == (at_n.lsn, keys_at(at_n))


def test_retention_deletes_shipped_pieces_no_retained_snapshot_needs(tmp_path: Path) -> None:
    place = MemoryTarget("trim")
    with DictDB.open(tmp_path / "db", fsync="always") as db:
        manager = BackupManager(
            db, place, min_backup_interval=0, archive_interval=0.05, keep_chains=1
        )
        db.create_table("t")
        manager.start()
        manager.backup_full()
        for round_ in range(3):
            for i in range(round_ * 10 + 1, round_ * 10 + 11):
                db.get_table("t").insert({"id": i})
            manager.ship_log()
        pieces_before = len(place.child("wal").list())
        manager.backup_full()  # prunes the first chain, and the pieces only it needed
        kept_lsn = db.lsn
        manager.stop(final_backup=False)
    pieces = [e.name for e in place.child("wal").list() if e.name.endswith(".wal")]
    assert len(pieces) < pieces_before - 1
    got = restore(place)
    assert (kept_lsn, set(range(1, 31))) == (got.lsn, keys_at(got))

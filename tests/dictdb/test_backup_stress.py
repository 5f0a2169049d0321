"""Stress: backups of every kind taken while several threads write (defect A1 of
``shared/reference/upstream-defects.md``, and A2/A14 under load).

Writers insert, upsert, update and delete in their own tables and in a shared one; another
thread creates and drops tables; the manager runs its periodic worker and takes notified
backups; a backup thread forces deltas and fulls (each round in another format). After the
writers stop and the manager stops (final backup), the restore equals the live database, every
file boundary restores, and the directory holds one gap-free chain per full.

Each round takes a fixed number of forced backups while the writers run, however long that
takes (a generous deadline only stops a hung round): a slow machine or coverage tracing makes a
round longer, never weaker. The bounded version runs 3 rounds (~2-3 s each here, under
coverage); the ``slow`` one 20.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
import time
from pathlib import Path

import pytest

from dictdb import (
    BackupManager,
    DictDB,
    Field,
    RecordNotFoundError,
    list_backups,
    restore,
)
from tests.dictdb._scripts.strict import db_diff

CHOICES = [("json", None), ("pickle", "zstd"), ("json", "zstd"), ("pickle", None)]


pytestmark = pytest.mark.usefixtures("quiet_dictdb_logs")  # tests/dictdb/conftest.py


def writer(db: DictDB, k: int, stop: threading.Event, manager: BackupManager) -> None:
    rng = random.Random(k)
    own = db.create_table(f"w{k}")
    shared = db.get_table("shared")
    for i in itertools.count():
        if stop.is_set():
            return
        key = own.insert({"i": i, "k": k, "tags": [k, i]})
        own.upsert({"id": rng.randint(1, key), "touched": i})
        with contextlib.suppress(RecordNotFoundError):  # the row may be gone already
            if i % 3 == 0:
                own.update({"u": i}, where=Field("id") == rng.randint(1, key))
            if i % 5 == 0:
                own.delete(where=Field("id") == rng.randint(1, key))
        shared.upsert({"id": rng.randint(1, 300), "by": k, "i": i})
        if i % 40 == 0:
            manager.notify_change()
        if i % 10 == 0:
            time.sleep(0.001)  # let the backup threads cut mid-stream


def ddl_churn(db: DictDB, stop: threading.Event) -> None:
    for i in itertools.count():
        if stop.is_set():
            return
        name = f"ddl{i % 5}"
        if name in db:
            db.drop_table(name)
        else:
            db.create_table(name).insert([{"gen": i}, {"gen": -i}])
        time.sleep(0.002)


# Only a hung round reaches this: the backups are counted, not timed.
ROUND_DEADLINE = 180.0  # seconds
JOIN_TIMEOUT = 60.0  # seconds for a thread to notice `stop`


def run_round(directory: Path, seed: int, writers: int = 3, min_backups: int = 15) -> None:
    db = DictDB()
    db.create_table("shared").insert([{"id": i, "by": -1} for i in range(1, 301)])
    failures: list[tuple[BaseException, int]] = []
    file_format, compression = CHOICES[seed % len(CHOICES)]
    manager = BackupManager(
        db,
        directory,
        file_format=file_format,
        compression=compression,
        backup_interval=0.01,
        min_backup_interval=0.005,
        incremental=True,
        max_deltas_before_full=4,
        on_backup_failure=lambda e, n: failures.append((e, n)),
    )
    manager.start()
    stop = threading.Event()
    errors: list[BaseException] = []

    def guarded(target: object, *args: object) -> threading.Thread:
        def run() -> None:
            try:
                target(*args)  # type: ignore[operator]
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        return threading.Thread(target=run)

    threads = [guarded(writer, db, k, stop, manager) for k in range(writers)]
    threads.append(guarded(ddl_churn, db, stop))
    for t in threads:
        t.start()
    rng = random.Random(seed)
    taken = 0
    deadline = time.monotonic() + ROUND_DEADLINE
    while taken < min_backups and time.monotonic() < deadline:
        kind = rng.choice(["delta", "delta", "delta", "now", "full"])
        if getattr(manager, f"backup_{kind}")() is not None:
            taken += 1
        time.sleep(0.003)
    stop.set()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert [t.name for t in threads if t.is_alive()] == []  # else the comparison below races
    manager.stop()  # final backup of everything written before
    assert errors == []
    assert min_backups <= taken, f"{taken} backups in {ROUND_DEADLINE:.0f} s"
    assert failures == []
    assert False is manager.running

    restored = restore(directory)
    assert db_diff(db.to_dict(), restored.to_dict()) == []
    assert db.lsn == restored.lsn

    catalog = list_backups(directory)
    assert catalog.unreadable == ()
    assert catalog.orphans == ()
    for chain in catalog.chains:
        expected_first = chain.full.last_lsn + 1
        for delta in chain.deltas:
            assert expected_first == delta.first_lsn
            expected_first = delta.last_lsn + 1
    # Every file boundary is a point a restore can stop at exactly.
    boundaries = sorted({f.last_lsn for f in catalog.files})
    for lsn in rng.sample(boundaries, min(4, len(boundaries))):
        assert lsn == restore(directory, lsn=lsn).lsn


def test_backups_under_concurrent_writes_lose_nothing(tmp_path: Path) -> None:
    for round_ in range(3):
        run_round(tmp_path / f"round{round_}", seed=round_)


@pytest.mark.slow
def test_backups_under_concurrent_writes_lose_nothing_20_rounds(tmp_path: Path) -> None:
    for round_ in range(20):
        run_round(tmp_path / f"round{round_}", seed=1000 + round_, writers=4)

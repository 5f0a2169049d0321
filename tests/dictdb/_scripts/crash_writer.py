"""A writer to be killed: a deterministic sequence of statements on a durable database.

Run as ``python -m tests.dictdb._scripts.crash_writer DIR START_INDEX [--backup]
[--everysec]``: opens ``DictDB.open(DIR, fsync="always", segment_size=4096)`` (or
``fsync="everysec"``) and prints ``READY <lsn>``; then runs statements START_INDEX,
START_INDEX + 1, ... forever, printing ``<lsn> <key> <time.monotonic()>`` (flushed) after each
one returns, i.e. once it is acknowledged. With ``--backup`` a `BackupManager`
(incremental, tiny intervals) writes snapshots and deltas into DIR meanwhile.

The parent (``tests/dictdb/test_durable_crash.py``) SIGKILLs it at random moments and checks,
with `statement` run against an in-memory `DictDB` as the model, that what reopens is exactly
the state after some prefix of whole statements, covering every acknowledged one.
"""

from __future__ import annotations

import datetime as dt
import decimal
import sys
import time
from typing import Any

from dictdb import BackupManager, DictDB, Field

SEGMENT_SIZE = 4096
TABLE = "t"
OTHER = "u"


def statement(db: DictDB, i: int) -> Any:
    """Run statement *i* of the sequence on *db*; returns a key it wrote (or the table name).

    Deterministic: what it does depends only on *i* and on the state the previous statements
    left. Each is exactly one call of the API, so one atomic unit for the log: single
    inserts, multi-row inserts (one statement, one frame), upserts that insert or update,
    deletes, and DDL; some rows hold tagged values (Decimal, datetime, bytes, big int).
    """
    if i == 0:
        db.create_table(TABLE, "id")
        return TABLE
    if i % 13 == 0:
        if OTHER in db:
            db.drop_table(OTHER)
        else:
            db.create_table(OTHER, "k", {"k": "int", "note": "str"})
        return OTHER
    if i % 13 == 6 and OTHER in db:
        return db.get_table(OTHER).insert({"k": i, "note": "in the second table"})
    table = db.get_table(TABLE)
    if i % 5 == 0:
        keys = table.insert([{"id": f"m{i}-{j}", "v": j, "pad": "m" * (i % 40)} for j in range(3)])
        return keys[-1]
    if i % 3 == 0:
        key, _ = table.upsert({"id": f"k{i // 2}", "v": i, "up": True})
        return key
    if i % 7 == 0 and f"k{i - 1}" in table:
        table.delete(where=Field("id") == f"k{i - 1}")
        return f"k{i - 1}"
    row: dict[str, Any] = {"id": f"k{i}", "v": i, "pad": "x" * (i % 60)}
    if i % 4 == 1:
        row["d"] = decimal.Decimal(i) / 100
        row["when"] = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i)
        row["blob"] = i.to_bytes(4, "big")
        row["big"] = 2**70 + i
    return table.insert(row)


def main(argv: list[str]) -> int:
    directory, start = argv[0], int(argv[1])
    policy = "everysec" if "--everysec" in argv else "always"
    db = DictDB.open(directory, fsync=policy, segment_size=SEGMENT_SIZE)
    manager = None
    if "--backup" in argv:
        manager = BackupManager(
            db,
            directory,
            backup_interval=0.05,
            min_backup_interval=0.01,
            incremental=True,
            max_deltas_before_full=3,
        )
        manager.start()
    print(f"READY {db.lsn}", flush=True)
    i = start
    while True:
        key = statement(db, i)
        print(f"{db.lsn} {key} {time.monotonic():.6f}", flush=True)
        if manager is not None and i % 4 == 0:
            manager.notify_change()
        if policy == "everysec":
            time.sleep(0.0005)  # writers do not wait for fsync: keep the history small
        i += 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

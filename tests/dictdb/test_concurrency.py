"""Concurrent writers: every operation numbered once, nothing lost, replay equal."""

# The suite asserts `expected == actual` (STYLE.md), which SIM300 calls a Yoda condition.

from __future__ import annotations

import threading
from typing import Any

from dictdb import DictDB

ROWS_PER_WRITER = 2000


def test_concurrent_writers_on_two_tables_journal_every_acknowledged_insert_once() -> None:
    db = DictDB(retain_journal=True)
    tables = {"a": db.create_table("a"), "b": db.create_table("b", primary_key="k")}
    writers = [("a", n) for n in range(4)] + [("b", n) for n in range(2)]
    acknowledged: dict[str, dict[Any, dict[str, Any]]] = {"a": {}, "b": {}}
    errors: list[BaseException] = []
    ack_lock = threading.Lock()
    start = threading.Barrier(len(writers))

    def write(table_name: str, writer: int) -> None:
        table = tables[table_name]
        mine: dict[Any, dict[str, Any]] = {}
        try:
            start.wait()
            for i in range(ROWS_PER_WRITER):
                record = {"writer": writer, "i": i, "tags": [writer, i]}
                if i % 3 == 0:  # some explicit str keys between the auto keys
                    record[table.primary_key] = f"w{writer}-{i}"
                mine[table.insert(record)] = record
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        with ack_lock:
            acknowledged[table_name].update(mine)

    threads = [threading.Thread(target=write, args=w) for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [] == errors
    assert [False] * len(threads) == [thread.is_alive() for thread in threads]

    inserts = len(writers) * ROWS_PER_WRITER
    ops = db.journal.read(1)
    assert list(range(1, 2 + inserts + 1)) == [op.lsn for op in ops]
    assert 2 + inserts == db.lsn == len(ops)
    assert ({"a": 4 * ROWS_PER_WRITER, "b": 2 * ROWS_PER_WRITER}) == {
        name: len(keys) for name, keys in acknowledged.items()
    }
    for name, table in tables.items():
        expected = {
            key: {**record, table.primary_key: key} for key, record in acknowledged[name].items()
        }
        assert expected == table.copy()
        inserted_keys = [op.key for op in ops if op.kind == "insert" and op.table == name]
        assert sorted(expected, key=repr) == sorted(inserted_keys, key=repr)

    replayed = DictDB(retain_journal=True)
    assert db.lsn == replayed.replay(ops)
    assert db.to_dict() == replayed.to_dict()

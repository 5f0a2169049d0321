"""The audit API (`dictdb.audit`): history, diff, events/replay, verify, on directories built by
real `BackupManager` and durable-log runs (`tests/dictdb/_scripts/audit_dirs.py`).

Expected values come from what the test wrote and what was live after every operation, never
from the function under test.
"""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path
from typing import Any

import pytest

from dictdb import BackupManager, DictDB, restore
from dictdb.audit import (
    DELTA,
    OPERATION,
    SNAPSHOT,
    Event,
    Finding,
    diff,
    events,
    history,
    missing_marker,
    replay,
    verify,
)
from tests.dictdb._scripts.audit_dirs import (
    Backup,
    Built,
    copy_dir,
    flip_byte_in_row_data,
    moved,
    typed,
)

ABSENT = "<absent>"

# -- fixtures -------------------------------------------------------------------------------------


# `snap` and `durable`: tests/dictdb/conftest.py (module scope).


# -- expected values, from what the builders recorded -------------------------------------------


def row_at(built: Built, lsn: int, table: str, key: Any) -> Any:
    return built.states[lsn].get(table, {}).get("records", {}).get(key)


def expected_op_history(built: Built, table: str, key: Any) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    before = None
    for op in built.ops:
        if op.table != table:
            continue
        if op.key == key:
            out.append((op.lsn, op.kind, op.key, before, op.after, op.meta, OPERATION))
            before = op.after
        elif op.kind == "drop":
            out.append((op.lsn, op.kind, None, None, None, op.meta, OPERATION))
            before = None
    return out


def touched(built: Built, backup: Backup) -> list[tuple[str, Any]]:
    keys: list[tuple[str, Any]] = []
    for op in built.ops:
        in_range = backup.first_lsn <= op.lsn <= backup.last_lsn
        if in_range and op.key is not None and (op.table, op.key) not in keys:
            keys.append((op.table, op.key))
    return keys


def last_op(built: Built, backup: Backup, table: str, key: Any) -> Any:
    """The last operation on (table, key) inside *backup*'s range: a delta says, per row, who
    changed it last and when."""
    return [
        op
        for op in built.ops
        if backup.first_lsn <= op.lsn <= backup.last_lsn and (op.table, op.key) == (table, key)
    ][-1]


def delta_events(built: Built, backup: Backup) -> list[tuple[Any, ...]]:
    """What a delta holds at delta granularity: DDL at its own LSN, each row's net change at
    the LSN of the last operation that changed it."""
    out: list[tuple[Any, ...]] = [
        (op.lsn, op.kind, op.table, None, None, DELTA)
        for op in built.ops
        if backup.first_lsn <= op.lsn <= backup.last_lsn and op.key is None
    ]
    for table, key in touched(built, backup):
        row = row_at(built, backup.last_lsn, table, key)
        kind = "delete" if row is None else "upsert"
        out.append((last_op(built, backup, table, key).lsn, kind, table, key, row, DELTA))
    return out


def expected_snapshot_history(built: Built, table: str, key: Any) -> list[tuple[Any, ...]]:
    """First known state (oldest full), then per file: a delta's net change of the key, a
    later full snapshot's state of it; each version's before is the version before it."""
    out: list[tuple[Any, ...]] = []
    for backup in built.backups:
        row = row_at(built, backup.last_lsn, table, key)
        before = out[-1][4] if out else None
        if backup.kind == "full":
            if row is not None:
                out.append((backup.last_lsn, "state", key, before, row, None, SNAPSHOT))
        elif (table, key) in touched(built, backup):
            kind = "delete" if row is None else "upsert"
            op = last_op(built, backup, table, key)
            out.append((op.lsn, kind, key, before, row, op.meta, DELTA))
    return out


def as_tuples(found: list[Event]) -> list[tuple[Any, ...]]:
    """Comparable events; a table event's `before` (the table's definition) is left out."""
    return [
        (
            e.lsn,
            e.kind,
            e.key,
            e.before if e.key is not None else None,
            e.after,
            e.meta,
            e.granularity,
        )
        for e in found
    ]


def event_rows(found: Any) -> list[tuple[Any, ...]]:
    """Comparable events, sorted; a table event's `after` (its definition) is left out."""
    return sorted(
        (
            (e.lsn, e.kind, e.table, e.key, e.after if e.key is not None else None, e.granularity)
            for e in found
        ),
        key=lambda t: (t[0], t[1], t[2], repr(t[3])),
    )


def table_diff_doc(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The difference of two `to_dict()` states, computed here (types matter)."""
    doc: dict[str, Any] = {}
    for name in sorted(set(old) | set(new)):
        rows_a = old.get(name, {}).get("records", {})
        rows_b = new.get(name, {}).get("records", {})
        changed: dict[Any, dict[str, tuple[Any, Any]]] = {}
        for k in rows_a.keys() & rows_b.keys():
            fields = {}
            for f in rows_a[k].keys() | rows_b[k].keys():
                a, b = rows_a[k].get(f, ABSENT), rows_b[k].get(f, ABSENT)
                if typed(a) != typed(b):
                    fields[f] = (a, b)
            if fields:
                changed[k] = fields
        entry = {
            "added": {k: v for k, v in rows_b.items() if k not in rows_a},
            "removed": {k: v for k, v in rows_a.items() if k not in rows_b},
            "changed": changed,
            "created": name not in old,
            "dropped": name not in new,
        }
        if entry["added"] or entry["removed"] or changed or (name in old) != (name in new):
            doc[name] = entry
    return doc


def actual_diff_doc(result: dict[str, Any]) -> dict[str, Any]:
    gone = missing_marker()

    def mark(v: Any) -> Any:
        return ABSENT if v is gone else v

    return {
        name: {
            "added": d.added,
            "removed": d.removed,
            "changed": {
                c.key: {f: (mark(a), mark(b)) for f, (a, b) in c.fields.items()} for c in d.changed
            },
            "created": d.created,
            "dropped": d.dropped,
        }
        for name, d in result.items()
    }


# -- history ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [1, 2, 3])
def test_history_with_the_log_lists_every_operation_with_before_after_and_audit_metadata(
    durable: Built, key: int
) -> None:
    expected = expected_op_history(durable, "users", key)
    actual = as_tuples(history(durable.path, "users", key))
    assert typed(expected) == typed(actual)


def test_history_of_a_key_updated_across_several_deltas_and_fulls_is_in_lsn_order(
    durable: Built,
) -> None:
    found = history(durable.path, "users", 1)
    lsns = [e.lsn for e in found]
    assert sorted(set(lsns)) == lsns
    # user 1 changes in every phase: within every delta and before every full snapshot
    phases = {op.lsn: op.phase for op in durable.ops}
    assert list(range(10)) == sorted({phases[lsn] for lsn in lsns})
    assert len(found) == sum(1 for op in durable.ops if op.key == 1)


def test_history_with_the_log_carries_the_audit_metadata_of_each_block(durable: Built) -> None:
    expected = [(op.lsn, op.meta) for op in durable.ops if op.table == "users" and op.key == 1]
    actual = [(e.lsn, e.meta) for e in history(durable.path, "users", 1)]
    assert expected == actual
    expected_value = {"actor": "alice", "reason": "setup"}
    assert expected_value == actual[0][1]
    assert actual[-1][1] is None  # the last phase ran outside any audit block


def test_history_of_a_record_of_a_dropped_table_ends_with_the_drop(durable: Built) -> None:
    expected = expected_op_history(durable, "orders", "o1")
    actual = as_tuples(history(durable.path, "orders", "o1"))
    assert typed(expected) == typed(actual)
    expected_value = ["insert", "update", "drop"]
    assert expected_value == [t[1] for t in actual]


@pytest.mark.parametrize("key", [1, 2, 3])
def test_history_without_a_log_has_snapshot_and_delta_granularity(snap: Built, key: int) -> None:
    expected = expected_snapshot_history(snap, "users", key)
    actual = as_tuples(history(snap.path, "users", key))
    assert typed(expected) == typed(actual)


def test_history_without_a_log_starts_with_the_oldest_full_snapshot_state(snap: Built) -> None:
    found = history(snap.path, "users", 1)
    first_full = snap.fulls()[0]
    expected = (
        first_full.last_lsn,
        "state",
        SNAPSHOT,
        row_at(snap, first_full.last_lsn, "users", 1),
    )
    assert typed(expected) == typed(
        (found[0].lsn, found[0].kind, found[0].granularity, found[0].after)
    )
    expected_value = {SNAPSHOT, DELTA}
    assert expected_value == {e.granularity for e in found}


def test_history_of_an_unknown_key_is_empty(snap: Built, durable: Built) -> None:
    expected_value = []
    assert expected_value == list(history(snap.path, "users", 999))
    expected_value = []
    assert expected_value == list(history(durable.path, "users", 999))


def test_history_shows_a_deletion_that_only_a_full_snapshot_records(tmp_path: Path) -> None:
    db = DictDB()
    bm = BackupManager(db, tmp_path, incremental=True, max_deltas_before_full=1)
    db.create_table("t", primary_key="id")
    t = db.get_table("t")
    t.insert({"id": 1, "v": 0})
    bm.backup_now()  # full @2
    t.update({"v": 1}, where=t.id == 1)
    bm.backup_now()  # delta 3..3
    t.delete(where=t.id == 1)
    assert bm.backup_now() is not None  # a full snapshot (max_deltas_before_full=1) @4
    found = history(tmp_path, "t", 1)
    expected_last = (4, None)  # the record is gone as of the full snapshot at LSN 4
    assert expected_last == (found[-1].lsn, found[-1].after)


def test_history_in_a_trimmed_durable_dir_still_shows_a_live_record(tmp_path: Path) -> None:
    db = DictDB.open(tmp_path, fsync="off", segment_size=4096)
    db.create_table("t", primary_key="id")
    db.get_table("t").insert({"id": 1, "name": "kept"})
    db.close()
    for j in range(5):
        db = DictDB.open(tmp_path, fsync="off", segment_size=4096)
        bm = BackupManager(db, tmp_path, incremental=True, keep_chains=1)
        for i in range(3):
            db.get_table("t").insert({"id": 100 + 10 * j + i, "pad": "x" * 2000})
        assert bm.backup_full() is not None
        db.close()
    assert restore(tmp_path).to_dict()["t"]["records"][1] == {"id": 1, "name": "kept"}
    found = history(tmp_path, "t", 1)
    expected_value = [{"id": 1, "name": "kept"}]
    assert expected_value == [e.after for e in found]


# -- events / replay ----------------------------------------------------------------------------


def op_rows(built: Built, start: int, end: int, pred: Any = None) -> list[tuple[Any, ...]]:
    return [
        (op.lsn, op.kind, op.table, op.key, op.after, OPERATION)
        for op in built.ops
        if start <= op.lsn <= end and (pred is None or pred(op))
    ]


@pytest.mark.parametrize(("start", "end"), [(1, 32), (5, 9), (15, 15), (14, 18), (20, 32)])
def test_replay_with_the_log_yields_each_operation_between_inclusive_bounds(
    durable: Built, start: int, end: int
) -> None:
    assert durable.last_lsn == 32
    expected = op_rows(durable, start, end)
    actual = event_rows(replay(durable.path, start, end))
    assert typed(expected) == typed(actual)


def test_events_without_bounds_yield_every_operation_with_its_metadata(durable: Built) -> None:
    expected = [(op.lsn, op.kind, op.table, op.key, op.meta) for op in durable.ops]
    actual = [(e.lsn, e.kind, e.table, e.key, e.meta) for e in events(durable.path)]
    assert typed(expected) == typed(actual)


def test_replay_tables_filter_keeps_only_those_tables(durable: Built) -> None:
    expected = op_rows(durable, 1, durable.last_lsn, lambda op: op.table == "orders")
    actual = event_rows(replay(durable.path, tables=["orders"]))
    assert typed(expected) == typed(actual)
    expected_value = ["create", "insert", "update", "drop"]
    assert expected_value == [t[1] for t in actual]


def test_replay_keys_filter_keeps_only_those_records(durable: Built) -> None:
    expected = op_rows(durable, 4, 20, lambda op: op.key in (2, 3))
    found = list(replay(durable.path, 4, 20, keys=[2, 3]))
    actual = event_rows(e for e in found if e.key is not None)
    assert typed(expected) == typed(actual)
    assert all(e.kind == "drop" for e in found if e.key is None)  # a drop touches every key


def test_replay_tables_and_keys_filters_combine(durable: Built) -> None:
    expected = op_rows(durable, 1, 32, lambda op: op.table == "orders" and op.key == "o1")
    found = replay(durable.path, tables=["orders"], keys=["o1"])
    actual = event_rows(e for e in found if e.key is not None)
    assert typed(expected) == typed(actual)


@pytest.mark.parametrize(("first", "last"), [(1, 3), (5, 7)])
def test_events_without_a_log_have_delta_granularity_between_delta_bounds(
    snap: Built, first: int, last: int
) -> None:
    deltas = snap.backups[first : last + 1]
    assert all(b.kind == "delta" for b in deltas)
    start, end = deltas[0].first_lsn, deltas[-1].last_lsn
    expected = event_rows_of([row for b in deltas for row in delta_events(snap, b)])
    actual = event_rows(events(snap.path, start=start, end=end))
    assert typed(expected) == typed(actual)


def event_rows_of(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rows, key=lambda t: (t[0], t[1], t[2], repr(t[3])))


def test_replay_tables_filter_without_a_log(snap: Built) -> None:
    deltas = snap.deltas()
    expected = event_rows_of(
        [row for b in deltas for row in delta_events(snap, b) if row[2] == "orders"]
    )
    actual = event_rows(replay(snap.path, tables=["orders"]))
    assert typed(expected) == typed(actual)


def test_events_without_a_log_never_report_past_the_end_bound(snap: Built) -> None:
    delta = snap.deltas()[0]
    end = delta.first_lsn  # inside the delta's range
    assert delta.last_lsn > end
    expected_value = []
    assert expected_value == [e.lsn for e in events(snap.path, end=end) if e.lsn > end]


def test_events_without_a_log_report_changes_folded_into_a_full_snapshot(snap: Built) -> None:
    full = snap.fulls()[1]
    previous = snap.backups[snap.backups.index(full) - 1]
    reinsert = next(op for op in snap.ops if op.phase == 4 and op.key == 2)
    assert previous.last_lsn < reinsert.lsn <= full.last_lsn
    found = [
        (e.table, e.key, e.after)
        for e in events(snap.path)
        if previous.last_lsn < e.lsn <= full.last_lsn and e.key == 2
    ]
    expected_value = [("users", 2, reinsert.after)]
    assert expected_value == found


# -- diff -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [(3, 9), (9, 21), (0, 32), (14, 17), (20, 20), (25, 8)])
def test_diff_between_lsns_equals_the_difference_of_two_restores_with_the_log(
    durable: Built, a: int, b: int
) -> None:
    old = restore(durable.path, lsn=a).to_dict()
    new = restore(durable.path, lsn=b).to_dict()
    expected = table_diff_doc(old, new)
    actual = actual_diff_doc(diff(durable.path, f"lsn:{a}", f"lsn:{b}"))
    assert typed(expected) == typed(actual)
    # and the restores themselves are what was live
    assert typed(durable.states.get(a, {})) == typed(old)


@pytest.mark.parametrize(("a", "b"), [(3, 14), (6, 30), (10, 25), (14, 18)])
def test_diff_between_lsns_equals_the_difference_of_two_restores_without_a_log(
    snap: Built, a: int, b: int
) -> None:
    expected = table_diff_doc(
        restore(snap.path, lsn=a).to_dict(), restore(snap.path, lsn=b).to_dict()
    )
    actual = actual_diff_doc(diff(snap.path, f"lsn:{a}", f"lsn:{b}"))
    assert typed(expected) == typed(actual)


@pytest.mark.parametrize("which", ["durable", "snap"])
def test_diff_between_times_equals_the_difference_of_two_restores_at_those_times(
    request: pytest.FixtureRequest, which: str
) -> None:
    built: Built = request.getfixturevalue(which)
    ta, tb = built.marks[5], built.marks[24]
    expected = table_diff_doc(
        restore(built.path, at=ta).to_dict(), restore(built.path, at=tb).to_dict()
    )
    actual = actual_diff_doc(diff(built.path, ta, tb))
    assert typed(expected) == typed(actual)
    aware = dt.datetime.fromtimestamp(tb, dt.UTC)
    assert typed(actual) == typed(actual_diff_doc(diff(built.path, ta, aware)))


def test_diff_with_the_log_is_exact_to_the_operation(durable: Built) -> None:
    expected = table_diff_doc(durable.states[15], durable.states[16])
    actual = actual_diff_doc(diff(durable.path, "lsn:15", "lsn:16"))
    assert typed(expected) == typed(actual)
    expected_value = {"users"}
    assert expected_value == set(actual)


def test_diff_reports_created_and_dropped_tables(snap: Built) -> None:
    created = diff(snap.path, "lsn:6", "lsn:10")["orders"]
    dropped = diff(snap.path, "lsn:22", "lsn:25")["orders"]
    expected_value = (True, False, {"o1": {"id": "o1", "total": 5}})
    assert expected_value == (
        created.created,
        created.dropped,
        created.added,
    )
    expected_value = (False, True, {"o1": {"id": "o1", "total": 6}})
    assert expected_value == (
        dropped.created,
        dropped.dropped,
        dropped.removed,
    )


def test_diff_tells_int_float_and_bool_apart(durable: Built) -> None:
    int_to_float = diff(durable.path, "lsn:12", "lsn:13")["users"].changed
    float_to_bool = diff(durable.path, "lsn:16", "lsn:17")["users"].changed
    assert typed([(1, {"n": (1, 1.0)})]) == typed([(c.key, c.fields) for c in int_to_float])
    assert typed([(1, {"n": (1.0, True)})]) == typed([(c.key, c.fields) for c in float_to_bool])


def _two_versions(tmp_path: Path, first: dict[str, Any], second: dict[str, Any]) -> Path:
    db = DictDB()
    bm = BackupManager(db, tmp_path, incremental=True)
    db.create_table("t", primary_key="id")
    t = db.get_table("t")
    t.insert({"id": 1, **first})
    bm.backup_now()
    t.update(second, where=t.id == 1)
    bm.backup_now()
    return tmp_path


@pytest.mark.parametrize(
    ("first", "second"),
    [(1, 1.0), (1, True), (1.0, True), (0, False), (0.0, -0.0), ("1", 1), (None, 0), ([1], [1.0])],
)
def test_diff_reports_a_change_of_type_alone(tmp_path: Path, first: Any, second: Any) -> None:
    d = _two_versions(tmp_path, {"x": first}, {"x": second})
    changes = diff(d, "lsn:2", "lsn:3")["t"].changed
    assert typed([(1, {"x": (first, second)})]) == typed([(c.key, c.fields) for c in changes])


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (decimal.Decimal("1.0"), decimal.Decimal("1.00")),
        (
            dt.datetime(2020, 1, 1, 12, tzinfo=dt.UTC),
            dt.datetime(2020, 1, 1, 13, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        ),
    ],
    ids=["decimal-exponent", "datetime-offset"],
)
def test_diff_reports_a_change_that_restore_preserves(
    tmp_path: Path, first: Any, second: Any
) -> None:
    d = _two_versions(tmp_path, {"x": first}, {"x": second})
    assert typed(second) == typed(restore(d, lsn=3).to_dict()["t"]["records"][1]["x"])
    changes = diff(d, "lsn:2", "lsn:3").get("t")
    assert changes is not None
    assert typed([(1, {"x": (first, second)})]) == typed(
        [(c.key, c.fields) for c in changes.changed]
    )


def test_diff_of_a_point_with_itself_is_empty(durable: Built) -> None:
    expected_value = {}
    assert expected_value == diff(durable.path, "lsn:17", "lsn:17").tables


def test_diff_reports_a_removed_field_as_absent(tmp_path: Path) -> None:
    db = DictDB()
    bm = BackupManager(db, tmp_path, incremental=True)
    db.create_table("t", primary_key="id")
    t = db.get_table("t")
    t.insert({"id": 1, "a": 1, "b": 2})
    bm.backup_now()
    t.delete(where=t.id == 1)
    t.insert({"id": 1, "a": 1})  # the same key again, without field b
    bm.backup_now()
    changes = diff(tmp_path, "lsn:2", "lsn:4")["t"].changed
    expected_value = [(1, {"b": (2, ABSENT)})]
    assert expected_value == [
        (c.key, {f: (a, ABSENT if b is missing_marker() else b) for f, (a, b) in c.fields.items()})
        for c in changes
    ]


# -- verify -------------------------------------------------------------------------------------


def chain_ranges(built: Built, skip: tuple[Path, ...] = ()) -> tuple[tuple[int, int], ...]:
    """Per chain (full, then deltas chained by LSN), the LSN range it rebuilds, stopping at the
    first skipped (damaged or missing) file; a chain whose full is skipped rebuilds nothing."""
    ranges: list[tuple[int, int]] = []
    current: list[int] | None = None
    for b in built.backups:
        if b.kind == "full":
            if current is not None:
                ranges.append((current[0], current[1]))
            current = None if b.path in skip else [b.last_lsn, b.last_lsn]
        elif current is not None:
            if b.path in skip or b.first_lsn != current[1] + 1:
                ranges.append((current[0], current[1]))
                current = None
            else:
                current[1] = b.last_lsn
    if current is not None:
        ranges.append((current[0], current[1]))
    return tuple(ranges)


def report_summary(report: Any) -> tuple[Any, ...]:
    return (
        report.ok,
        report.files_checked,
        report.segments_checked,
        [(f.path, f.reason) for f in report.findings],
        report.restorable,
    )


def test_verify_a_clean_directory_without_a_log(snap: Built) -> None:
    expected = (True, len(snap.backups), 0, [], chain_ranges(snap))
    expected_value = ((3, 14), (18, 28), (30, 30))
    assert expected_value == chain_ranges(snap)
    assert expected == report_summary(verify(snap.path))


def test_verify_a_clean_durable_directory(durable: Built) -> None:
    expected = (True, len(durable.backups), len(durable.segments()), [], ((0, durable.last_lsn),))
    assert expected == report_summary(verify(durable.path))


@pytest.mark.parametrize("index", [4, 2], ids=["full", "delta"])
def test_verify_names_a_file_with_a_flipped_byte(snap: Built, tmp_path: Path, index: int) -> None:
    d = copy_dir(snap, tmp_path)
    victim = snap.backups[index]
    flip_byte_in_row_data(moved(snap, d, victim.path))
    report = verify(d)
    expected_ranges = chain_ranges(snap, skip=(victim.path,))
    expected_value = (False, [str(moved(snap, d, victim.path))], expected_ranges)
    assert expected_value == (
        report.ok,
        [f.path for f in report.findings],
        report.restorable,
    )
    assert "checksum" in report.findings[0].reason


def test_verify_names_a_flipped_file_in_a_durable_directory(durable: Built, tmp_path: Path) -> None:
    d = copy_dir(durable, tmp_path)
    victim = moved(durable, d, durable.deltas()[3].path)
    flip_byte_in_row_data(victim)
    report = verify(d)
    expected_value = (False, [str(victim)])
    assert expected_value == (report.ok, [f.path for f in report.findings])


def test_verify_reports_a_missing_middle_delta_at_the_delta_after_the_gap(
    snap: Built, tmp_path: Path
) -> None:
    d = copy_dir(snap, tmp_path)
    missing = snap.backups[2]
    moved(snap, d, missing.path).unlink()
    report = verify(d)
    after_gap = moved(snap, d, snap.backups[3].path)
    expected = (False, [str(after_gap)], chain_ranges(snap, skip=(missing.path,)))
    assert expected == (report.ok, [f.path for f in report.findings], report.restorable)
    assert "gap" in report.findings[0].reason


def test_verify_reports_a_gap_in_the_log_segments(durable: Built, tmp_path: Path) -> None:
    d = copy_dir(durable, tmp_path)
    segments = [moved(durable, d, s) for s in durable.segments()]
    assert len(segments) >= 3
    reaches = int(segments[1].stem, 16) - 1  # the log holds every operation up to the gap
    segments[1].unlink()
    report = verify(d)
    windows = sorted([*chain_ranges(durable), (0, reaches)])
    merged: list[tuple[int, int]] = []
    for lo, hi in windows:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    expected = (False, [str(segments[2])], tuple(merged))
    assert expected == (report.ok, [f.path for f in report.findings], report.restorable)
    assert "gap" in report.findings[0].reason


def test_verify_calls_progress_up_to_the_total(snap: Built) -> None:
    calls: list[tuple[int, int]] = []
    verify(snap.path, progress=lambda done, total: calls.append((done, total)))
    assert calls
    assert calls[-1][0] == calls[-1][1]
    expected_value = [c[0] for c in calls]
    assert expected_value == sorted(c[0] for c in calls)


def test_finding_is_a_path_and_a_reason() -> None:
    expected_value = ("f", "r")
    assert expected_value == (Finding("f", "r").path, Finding("f", "r").reason)


# -- the audit API in the open: points as keywords, typed results --------------------------------


def test_the_audit_functions_are_exported_from_dictdb() -> None:
    import dictdb
    import dictdb.audit

    expected_value = (dictdb.audit.history, dictdb.audit.diff, dictdb.audit.verify)
    assert expected_value == (dictdb.history, dictdb.diff, dictdb.verify)
    assert dictdb.audit.events is dictdb.events
    assert {"diff", "events", "history", "verify"} <= set(dictdb.__all__)
    assert sorted(dictdb.__all__) == dictdb.__all__


@pytest.mark.parametrize(("a", "b"), [(3, 21), (0, 17), (9, 30)])
def test_diff_by_lsn_keywords_equals_diff_by_lsn_points(durable: Built, a: int, b: int) -> None:
    expected = actual_diff_doc(diff(durable.path, f"lsn:{a}", f"lsn:{b}"))
    actual = actual_diff_doc(diff(durable.path, from_lsn=a, to_lsn=b))
    assert typed(expected) == typed(actual)


def test_diff_by_time_accepts_a_datetime_an_iso_string_and_epoch_seconds(durable: Built) -> None:
    ta, tb = durable.marks[5], durable.marks[24]
    expected = table_diff_doc(durable.states[5], durable.states[24])
    aware = dt.datetime.fromtimestamp(ta, dt.UTC)
    for start in (aware, aware.isoformat(), ta, f"@{ta!r}"):
        actual = actual_diff_doc(diff(durable.path, from_at=start, to_at=tb))
        assert typed(expected) == typed(actual), start
    mixed = actual_diff_doc(diff(durable.path, aware, to_lsn=24))
    assert typed(expected) == typed(mixed)


@pytest.mark.parametrize("point", [62800, 5, 0])
def test_diff_refuses_a_bare_int_point_naming_the_keywords(durable: Built, point: int) -> None:
    with pytest.raises(ValueError, match=f"from_lsn={point}.*from_at={point}"):
        diff(durable.path, point, "lsn:20")
    with pytest.raises(ValueError, match=f"to_lsn={point}"):
        diff(durable.path, "lsn:1", point)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"a": "lsn:3", "from_lsn": 3},
        {"from_lsn": 3, "from_at": 1.0},
        {"from_lsn": -1},
        {"from_lsn": True},
        {"to_lsn": "3"},
    ],
    ids=["point-and-lsn", "lsn-and-at", "negative", "bool", "str-lsn"],
)
def test_diff_refuses_a_point_given_twice_or_a_bad_lsn(durable: Built, kwargs: Any) -> None:
    with pytest.raises(ValueError):
        diff(durable.path, **kwargs)


def test_diff_refuses_a_point_of_another_type(durable: Built) -> None:
    with pytest.raises(TypeError, match="point must be"):
        diff(durable.path, [3], "lsn:4")


def test_diff_without_an_older_point_starts_from_the_empty_state(durable: Built) -> None:
    expected = table_diff_doc({}, durable.states[5])
    actual = actual_diff_doc(diff(durable.path, to_lsn=5))
    assert typed(expected) == typed(actual)
    expected_value = (0, durable.last_lsn)
    newest = diff(durable.path)
    assert expected_value == (newest.from_lsn, newest.to_lsn)


def test_diff_says_which_states_it_compared(snap: Built) -> None:
    found = diff(snap.path, from_lsn=4, to_lsn=12)  # no log: the backup points before
    expected_value = (3, 10)
    assert expected_value == (found.from_lsn, found.to_lsn)


def test_diff_table_keeps_only_that_table(durable: Built) -> None:
    everything = diff(durable.path, from_lsn=3, to_lsn=21)
    only = diff(durable.path, from_lsn=3, to_lsn=21, table="orders")
    expected_value = {"orders": everything["orders"]}
    assert expected_value == only.tables
    assert {"orders", "users"} == set(everything)


def test_diff_table_that_exists_at_neither_point_is_an_error(durable: Built) -> None:
    from dictdb import TableNotFoundError

    with pytest.raises(TableNotFoundError, match=r"no table 'nosuch'.*orders, users"):
        diff(durable.path, from_lsn=3, to_lsn=21, table="nosuch")


def test_diff_reports_bytes_read_up_to_the_total(durable: Built) -> None:
    calls: list[tuple[int, int]] = []
    diff(durable.path, from_lsn=3, to_lsn=21, progress=lambda d, t: calls.append((d, t)))
    total = calls[-1][1]
    assert total > 0
    expected_value = [(d, total) for d, _ in calls]
    assert expected_value == calls
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert calls[-1] == (total, total)


@pytest.mark.parametrize(("a", "b"), [(4, 20), (0, 32), (15, 16)])
def test_events_from_lsn_is_exclusive_and_to_lsn_inclusive(durable: Built, a: int, b: int) -> None:
    expected = op_rows(durable, a + 1, b)
    actual = event_rows(events(durable.path, from_lsn=a, to_lsn=b))
    assert typed(expected) == typed(actual)


def test_events_time_bounds_accept_datetimes_and_iso_strings(durable: Built) -> None:
    after = dt.datetime.fromtimestamp(durable.marks[15], dt.UTC)
    until = iso_time(durable.marks[20])
    expected_value = [16, 17, 18, 19, 20]
    assert expected_value == [e.lsn for e in events(durable.path, from_at=after, to_at=until)]


def iso_time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


@pytest.mark.parametrize(
    "kwargs",
    [{"from_lsn": 3, "start": 4}, {"to_lsn": 3, "end": 4}, {"from_at": 1.0, "after_ts": 1.0},
     {"to_at": 1.0, "until_ts": 1.0}, {"from_lsn": 3, "from_at": 1.0}],
)  # fmt: skip
def test_events_refuses_a_bound_given_twice(durable: Built, kwargs: Any) -> None:
    with pytest.raises(ValueError, match=r"not both|not several"):
        next(iter(events(durable.path, **kwargs)))


def test_events_actor_keeps_only_that_actors_operations(durable: Built) -> None:
    expected_value = [op.lsn for op in durable.ops if (op.meta or {}).get("actor") == "bob"]
    assert expected_value == [e.lsn for e in events(durable.path, actor="bob")]
    expected_value = []
    assert expected_value == list(events(durable.path, actor="nobody"))


def test_events_report_every_byte_of_files_and_log_segments(durable: Built) -> None:
    calls: list[tuple[int, int]] = []
    list(events(durable.path, progress=lambda d, t: calls.append((d, t))))
    size = sum(b.path.stat().st_size for b in durable.backups)
    size += sum(s.stat().st_size for s in durable.segments())
    expected_value = ((0, size), (size, size))
    assert expected_value == (calls[0], calls[-1])
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_history_is_a_typed_sequence_with_the_granularity_it_speaks_at(
    durable: Built, snap: Built
) -> None:
    from dictdb.audit import History

    logged = history(durable.path, "users", 1)
    backed_up = history(snap.path, "users", 1)
    assert isinstance(logged, History)
    expected_value = ("users", 1, OPERATION, SNAPSHOT)
    assert expected_value == (logged.table, logged.key, logged.granularity, backed_up.granularity)
    expected_value = (len(logged.versions), logged.versions[0], logged.versions[-2:])
    assert expected_value == (len(logged), logged[0], logged[-2:])
    assert None is history(snap.path, "users", 999).granularity


def test_history_of_a_record_born_in_a_delta_speaks_at_delta_granularity(tmp_path: Path) -> None:
    db = DictDB()
    bm = BackupManager(db, tmp_path, incremental=True)
    t = db.create_table("t", primary_key="id")
    bm.backup_now()  # full @1, no rows
    t.insert({"id": 1, "v": 0})
    t.update({"v": 1}, where=t.id == 1)
    bm.backup_now()  # delta 2..3
    t.update({"v": 2, "w": 0}, where=t.id == 1)
    bm.backup_now()  # delta 4..4
    found = history(tmp_path, "t", 1)
    expected_value = (
        DELTA,
        [(3, None, {"id": 1, "v": 1}), (4, {"id": 1, "v": 1}, {"id": 1, "v": 2, "w": 0})],
        {"v": (1, 2), "w": (missing_marker(), 0)},
    )
    assert expected_value == (
        found.granularity,
        [(e.lsn, e.before, e.after) for e in found],
        found[-1].changes,
    )


def test_history_reports_bytes_read(durable: Built) -> None:
    calls: list[tuple[int, int]] = []
    history(durable.path, "users", 1, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1][0] == calls[-1][1] > 0


def test_an_event_names_its_changes_actor_reason_and_time(durable: Built) -> None:
    update = next(e for e in history(durable.path, "users", 1) if e.kind == "update")
    op = next(o for o in durable.ops if o.lsn == update.lsn)
    expected_value = (op.meta["actor"], op.meta["reason"], iso_us(update.ts))
    assert expected_value == (update.actor, update.reason, update.time)
    assert {"v": (0, 1)} == update.changes
    doc = update.as_document()
    expected_value = ({"v": [0, 1]}, "bob", "step 1", update.time)
    assert expected_value == (doc["changes"], doc["actor"], doc["reason"], doc["time"])


def iso_us(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="microseconds")


def test_an_event_without_metadata_has_no_actor_or_reason(snap: Built) -> None:
    first = history(snap.path, "users", 1)[0]
    expected_value = (None, None, {"<absent>"})
    assert expected_value == (
        first.actor,
        first.reason,
        {a for a, _ in first.as_document()["changes"].values()},
    )


def test_table_names_lists_every_table_the_history_mentions(durable: Built, snap: Built) -> None:
    from dictdb.audit import table_names

    expected_value = frozenset({"users", "orders"})
    assert expected_value == table_names(durable.path)
    assert expected_value == table_names(snap.path)


@pytest.mark.parametrize(
    ("text", "point"),
    [
        ("lsn:5", (5, None)),
        ("lsn:0", (0, None)),
        ("@1700000000", (None, 1700000000.0)),
        ("@1700000000.25", (None, 1700000000.25)),
        ("1700000000.5", (None, 1700000000.5)),
        ("2023-11-14T22:13:20+00:00", (None, 1700000000.0)),
        ("2023-11-14T22:13:20Z", (None, 1700000000.0)),
    ],
)
def test_parse_point_reads_lsns_epoch_seconds_and_iso_times(text: str, point: Any) -> None:
    from dictdb.audit import parse_point

    assert point == parse_point(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("62800", "ambiguous: write lsn:62800"),
        ("-3", "ambiguous"),
        ("lsn:-1", "an LSN is >= 0"),
        ("lsn:x", "not an LSN"),
        ("nan", "not a time"),
        ("@soon", "not a time"),
        ("yesterday", "not a point"),
    ],
)
def test_parse_point_refuses_bare_integers_and_what_is_no_point(text: str, message: str) -> None:
    from dictdb.audit import parse_point

    with pytest.raises(ValueError, match=message):
        parse_point(text)


def test_an_at_keyword_refuses_an_lsn_string(durable: Built) -> None:
    with pytest.raises(ValueError, match=r"from_at is a time.*from_lsn=3"):
        diff(durable.path, from_at="lsn:3")

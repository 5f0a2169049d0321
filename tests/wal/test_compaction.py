"""Compaction of real DictDB journals: net effect, full images, DDL, gaps, and the apply law."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wal
from dictdb import DictDB, Field
from tests.dictdb._scripts.strict import diff, records_diff
from tests.dictdb._scripts.workload import random_statement
from wal import CREATE, DROP
from wal.compaction import Compaction, compact, compact_flat
from wal.operation import DELETE, INSERT, UPDATE


def journal_from(db: DictDB, after_lsn: int = 0) -> list[wal.Operation]:
    return db.journal.read(after_lsn + 1)


def compact_since(db: DictDB, after_lsn: int) -> Compaction:
    return compact(journal_from(db, after_lsn), after_lsn + 1)


def people() -> DictDB:
    db = DictDB(retain_journal=True)
    db.create_table("people")
    return db


def test_an_update_compacts_to_the_full_after_image_not_the_merged_fields() -> None:
    db = people()
    t = db.get_table("people")
    t.insert({"id": 1, "name": "ann", "dept": "IT", "tags": ["x"]})
    start = db.lsn
    t.upsert({"id": 1, "dept": "OPS"})
    t.update({"age": 3}, where=Field("id") == 1)
    comp = compact_since(db, start)
    before = {"id": 1, "name": "ann", "dept": "IT", "tags": ["x"]}
    after = {"id": 1, "name": "ann", "dept": "OPS", "tags": ["x"], "age": 3}
    assert {"people": {1: (before, after)}} == comp.changes
    assert diff(after, comp.changes["people"][1][1]) == []


def test_a_field_removed_by_delete_and_reinsert_is_absent_from_the_after_image() -> None:
    db = people()
    t = db.get_table("people")
    t.insert({"id": 1, "name": "a", "secret": "s1"})
    start = db.lsn
    t.delete(where=Field("id") == 1)
    t.insert({"id": 1, "name": "a", "dept": "IT"})
    comp = compact_since(db, start)
    expected = (
        {"id": 1, "name": "a", "secret": "s1"},
        {"id": 1, "name": "a", "dept": "IT"},
    )
    assert expected == comp.changes["people"][1]


def test_an_insert_then_delete_inside_the_range_nets_to_nothing() -> None:
    db = people()
    t = db.get_table("people")
    t.insert({"id": 1})
    start = db.lsn
    t.insert({"id": 2, "v": 1})
    t.upsert({"id": 2, "v": 2})
    t.delete(where=Field("id") == 2)
    comp = compact_since(db, start)
    assert comp.changes == {"people": {}}
    assert (start + 1, db.lsn, 3) == (comp.from_lsn, comp.to_lsn, comp.operation_count)


def test_a_delete_of_an_existing_key_keeps_its_before_and_has_after_none() -> None:
    db = people()
    t = db.get_table("people")
    t.insert({"id": 1, "v": "old"})
    start = db.lsn
    t.upsert({"id": 1, "v": "mid"})
    t.delete(where=Field("id") == 1)
    assert compact_since(db, start).changes == {"people": {1: ({"id": 1, "v": "old"}, None)}}


def test_updates_of_an_existing_key_keep_the_first_before_image() -> None:
    db = people()
    t = db.get_table("people")
    t.insert({"id": 7, "v": 0})
    t.upsert({"id": 7, "v": 1})
    start = db.lsn
    for v in (2, 3, 4):
        t.upsert({"id": 7, "v": v})
    assert compact_since(db, start).changes == {
        "people": {7: ({"id": 7, "v": 1}, {"id": 7, "v": 4})}
    }


def test_a_drop_then_re_create_discards_the_old_rows() -> None:
    db = people()
    t = db.get_table("people")
    t.insert([{"id": 1, "v": "old1"}, {"id": 2, "v": "old2"}])
    start = db.lsn
    t.insert({"id": 3, "v": "old3"})
    db.drop_table("people")
    db.create_table("people", "id", {"v": str})
    db.get_table("people").insert({"id": 3, "v": "new3"})
    comp = compact_since(db, start)
    assert comp.changes == {"people": {3: (None, {"id": 3, "v": "new3"})}}
    expected_ddl = [
        (start + 2, DROP, "people", None),
        (start + 3, CREATE, "people", {"primary_key": "id", "schema": {"v": "str", "id": "int"}}),
    ]
    assert expected_ddl == [(e.lsn, e.kind, e.table, e.definition) for e in comp.ddl]


def test_a_table_dropped_inside_the_range_has_no_changes() -> None:
    db = people()
    db.create_table("gone")
    start = db.lsn
    db.get_table("gone").insert({"id": 1})
    db.drop_table("gone")
    comp = compact_since(db, start)
    assert (comp.changes, [e.kind for e in comp.ddl]) == ({}, [DROP])


def test_keys_of_a_table_created_inside_the_range_have_before_none() -> None:
    db = people()
    start = db.lsn
    db.create_table("fresh")
    fresh = db.get_table("fresh")
    fresh.insert({"id": 1, "v": 1})
    fresh.upsert({"id": 1, "v": 2})
    fresh.insert({"id": 2})
    fresh.delete(where=Field("id") == 2)
    comp = compact_since(db, start)
    assert comp.changes == {"fresh": {1: (None, {"id": 1, "v": 2})}}
    assert [e.kind for e in comp.ddl] == [CREATE]


def test_a_created_table_with_no_rows_is_listed_with_no_changes() -> None:
    db = DictDB(retain_journal=True)
    db.create_table("empty")
    assert compact_since(db, 0).changes == {"empty": {}}


def test_the_last_timestamp_is_that_of_the_last_operation() -> None:
    db = people()
    db.get_table("people").insert({"id": 1})
    ops = journal_from(db)
    assert ops[-1].ts == compact(ops, 1).last_ts


def test_no_operations_compact_to_an_empty_run() -> None:
    comp = compact([], 5)
    assert (comp.from_lsn, comp.to_lsn, comp.ddl, comp.changes) == (5, 4, (), {})


def test_a_gap_in_the_operations_is_refused() -> None:
    db = people()
    t = db.get_table("people")
    for i in range(4):
        t.insert({"id": i})
    ops = journal_from(db)
    with pytest.raises(wal.JournalError, match="expected"):
        compact([*ops[:2], *ops[3:]], 1)


def test_operations_not_starting_at_from_lsn_are_refused() -> None:
    db = people()
    db.get_table("people").insert({"id": 1})
    with pytest.raises(wal.JournalError):
        compact(journal_from(db), 2)


def test_an_unknown_operation_kind_is_refused() -> None:
    with pytest.raises(wal.JournalError, match="unknown kind"):
        compact([(1, 0.0, "truncate", "t", None, None, None, None)], 1)


# -- the law: state(k) + compaction(ops[k:]) == state(end) ---------------------------------


def state_of(db: DictDB) -> dict[str, dict[Any, Any]]:
    return {name: t["records"] for name, t in db.to_dict().items()}


def apply_compaction(
    state: dict[str, dict[Any, Any]], comp: Compaction
) -> dict[str, dict[Any, Any]]:
    """The documented application: DDL in order, then put the afters and delete the Nones."""
    out = {name: dict(rows) for name, rows in state.items()}
    for event in comp.ddl:
        if event.kind == DROP:
            del out[event.table]
        else:
            out[event.table] = {}
    for name, per_key in comp.changes.items():
        for key, (_, after) in per_key.items():
            if after is None:
                del out[name][key]
            else:
                out[name][key] = after
    return out


@given(data=st.data(), steps=st.integers(1, 30))
def test_the_compaction_of_a_suffix_applied_to_the_state_there_gives_the_final_state(
    data: st.DataObject, steps: int
) -> None:
    db = DictDB(retain_journal=True)
    states = {0: state_of(db)}
    for _ in range(steps):
        random_statement(data, db)
        states[db.lsn] = state_of(db)
    k = data.draw(st.sampled_from(sorted(states)), label="k")
    ops = journal_from(db)
    comp = compact(ops[k:], k + 1)
    final = states[db.lsn]
    result = apply_compaction(states[k], comp)

    assert (k + 1, db.lsn) == (comp.from_lsn, comp.to_lsn)
    assert sorted(final) == sorted(result)
    problems = [p for name in final for p in records_diff(final[name], result[name], name)]
    assert problems == []
    # Before-images are the rows at k (None for tables created or re-created in the run).
    recreated = {e.table for e in comp.ddl}
    for name, per_key in comp.changes.items():
        for key, (before, after) in per_key.items():
            start = None if name in recreated else states[k][name].get(key)
            assert diff(start, before, f"{name}[{key!r}] before") == []
            assert diff(final[name].get(key), after, f"{name}[{key!r}] after") == []


# -- compact_flat: the same fold over the journal's flat field list ---------------------------


def flat_of(ops: list[Any]) -> list[Any]:
    return [field for op in ops for field in tuple(op)]


def same(a: Compaction, b: Compaction) -> None:
    assert (a.from_lsn, a.to_lsn, a.ddl, a.last_ts) == (b.from_lsn, b.to_lsn, b.ddl, b.last_ts)
    assert a.changes == b.changes
    assert a.lasts == b.lasts
    # the same keys in the same order (first appearance) per table; befores has the same keys
    for name in a.afters:
        assert list(a.afters[name]) == list(b.afters[name])
        assert set(b.afters[name]) == set(b.befores[name]) == set(a.befores[name])


@given(data=st.data(), steps=st.integers(1, 30))
def test_compact_flat_equals_compact_on_any_suffix_of_a_real_journal(
    data: st.DataObject, steps: int
) -> None:
    db = DictDB(retain_journal=True)
    for _ in range(steps):
        random_statement(data, db)
    k = data.draw(st.integers(0, db.lsn), label="k")
    ops = journal_from(db, k)
    same(compact(ops, k + 1), compact_flat(db.journal.read_flat(k + 1), k + 1))


def item(lsn: int, kind: str, key: int, after: Any, before: Any, table: str = "t") -> Any:
    return (lsn, float(lsn), kind, table, key, after, before, None)


def test_the_one_table_fast_path_keeps_the_first_before_and_the_last_after() -> None:
    v = [{"id": 1, "v": n} for n in range(4)]
    ops = [
        item(1, UPDATE, 1, v[1], v[0]),
        item(2, INSERT, 2, {"id": 2}, None),
        item(3, UPDATE, 1, v[2], v[1]),
        item(4, DELETE, 2, None, {"id": 2}),  # inserted then deleted: no change at all
        item(5, DELETE, 1, None, v[2]),
        item(6, INSERT, 1, v[3], None),
        item(7, INSERT, 3, {"id": 3}, None),
    ]
    comp = compact_flat(flat_of(ops), 1)
    same(compact(ops, 1), comp)
    assert comp.changes == {"t": {1: (v[0], v[3]), 3: (None, {"id": 3})}}
    assert (comp.to_lsn, comp.last_ts) == (7, 7.0)


def test_the_fast_path_reads_inserts_as_absent_before_and_deletes_as_absent_after() -> None:
    # Field values the contract says are None, but are not: both folds ignore them alike.
    ops = [item(1, INSERT, 1, {"id": 1}, {"stale": 1}), item(2, DELETE, 2, {"x": 1}, {"id": 2})]
    comp = compact_flat(flat_of(ops), 1)
    same(compact(ops, 1), comp)
    assert comp.changes == {"t": {1: (None, {"id": 1}), 2: ({"id": 2}, None)}}


def test_compact_flat_refuses_a_gap_and_a_wrong_start_like_compact() -> None:
    ops = [item(n, INSERT, n, {"id": n}, None) for n in (1, 2, 4)]
    with pytest.raises(wal.JournalError, match="operation 4 found where 3 was expected"):
        compact_flat(flat_of(ops), 1)
    with pytest.raises(wal.JournalError, match="operation 1 found where 2 was expected"):
        compact_flat(flat_of(ops[:2]), 2)


def test_compact_flat_of_nothing_is_an_empty_run() -> None:
    comp = compact_flat([], 5)
    assert (comp.from_lsn, comp.to_lsn, comp.ddl, comp.changes) == (5, 4, (), {})


def test_two_tables_or_ddl_take_the_general_fold() -> None:
    ops = [
        item(1, INSERT, 1, {"id": 1}, None, "a"),
        item(2, INSERT, 1, {"id": 1}, None, "b"),
        (3, 3.0, DROP, "a", None, None, {"primary_key": "id"}, None),
    ]
    comp = compact_flat(flat_of(ops), 1)
    same(compact(ops, 1), comp)
    assert comp.changes == {"b": {1: (None, {"id": 1})}}


def test_each_changed_key_keeps_who_changed_it_last_and_when() -> None:
    def op(lsn: int, kind: str, key: int, meta: Any) -> Any:
        row = None if kind == DELETE else {"id": key, "v": lsn}
        return (lsn, 100.0 + lsn, kind, "t", key, row, {"id": key}, meta)

    ops = [
        op(1, UPDATE, 1, {"actor": "ann"}),
        op(2, UPDATE, 2, None),
        op(3, UPDATE, 1, {"actor": "bob"}),
        op(4, DELETE, 2, {"actor": "cy"}),
        op(5, INSERT, 3, None),
        op(6, DELETE, 3, {"actor": "dee"}),  # inserted and deleted: nothing to say
    ]
    expected = {"t": {1: (3, 103.0, {"actor": "bob"}), 2: (4, 104.0, {"actor": "cy"})}}
    flat = [v for o in ops for v in o]
    assert compact(ops, 1).lasts == expected
    assert compact_flat(flat, 1).lasts == expected

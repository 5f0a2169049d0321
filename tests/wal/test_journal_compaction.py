"""A compacting journal: net operations per key between cuts, pins, and what a reader gets.

The law: whatever the journal folded, compacting what it hands out from a cut gives the same
net effect (`compact_flat`) as compacting the operations that were appended since that cut.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dictdb import DictDB
from tests.dictdb._scripts.workload import random_statement
from wal import Journal, JournalError
from wal.compaction import Compaction, compact, compact_flat, net_operations
from wal.operation import DELETE, INSERT, UPDATE


def net_effect(c: Compaction) -> tuple[Any, ...]:
    """What applying a compaction does (key order aside), and who changed each key last."""
    return (c.from_lsn, c.to_lsn, c.ddl, c.last_ts, c.changes, c.lasts)


def real_operations(data: st.DataObject, steps: int) -> list[Any]:
    db = DictDB(retain_journal=True)
    for _ in range(steps):
        random_statement(data, db)
    return [tuple(op) for op in db.journal.read(1)]


def compacting(start_lsn: int = 0) -> Journal:
    journal = Journal(start_lsn=start_lsn)
    journal.compacting = True
    return journal


def read_net(journal: Journal, from_lsn: int) -> Compaction:
    flat = journal.read_flat(from_lsn)
    return compact_flat(flat, from_lsn, journal.last_lsn, journal.last_ts)


@given(data=st.data(), steps=st.integers(1, 40))
def test_what_a_compacting_journal_hands_out_has_the_net_effect_of_what_was_appended(
    data: st.DataObject, steps: int
) -> None:
    ops = real_operations(data, steps)
    journal = compacting()
    pinned: list[int] = []
    for op in ops:
        journal.append(op)
        action = data.draw(st.sampled_from(["none"] * 4 + ["compact", "pin", "cut", "unpin"]))
        if action == "compact":
            journal.compact()
        elif action == "pin":
            pinned.append(journal.cut(pin=True))
        elif action == "cut":
            journal.cut()
        elif action == "unpin" and pinned:
            journal.unpin(pinned.pop(data.draw(st.integers(0, len(pinned) - 1))))
    journal.compact()
    last = ops[-1]
    expected = compact(ops, 1)
    assert net_effect(read_net(journal, 1)) == net_effect(expected)
    assert expected.last_ts == last[1]
    # From every cut still pinned, the net effect of what was appended after it.
    for at in pinned:
        if at <= journal.last_lsn:
            assert net_effect(read_net(journal, at)) == net_effect(compact(ops[at - 1 :], at))


@given(data=st.data(), steps=st.integers(1, 40))
def test_folding_twice_is_folding_once(data: st.DataObject, steps: int) -> None:
    flat = [v for op in real_operations(data, steps) for v in op]
    once = net_operations(flat)
    assert once is not None
    assert net_operations(once) == once


def item(lsn: int, kind: str, key: int, after: Any, before: Any, table: str = "t") -> Any:
    return (lsn, float(lsn), kind, table, key, after, before, {"actor": f"a{lsn}"})


def test_n_updates_of_one_row_are_held_as_one_operation_with_the_last_meta() -> None:
    journal = compacting()
    journal.append(item(1, INSERT, 1, {"id": 1, "v": 0}, None))
    for n in range(2, 1001):
        journal.append(item(n, UPDATE, 1, {"id": 1, "v": n}, {"id": 1, "v": n - 1}))
    journal.compact()
    assert journal.held == 1
    assert len(journal) == 1000  # the range it covers
    (op,) = journal.read(1)
    assert (op.kind, op.after, op.before) == (INSERT, {"id": 1, "v": 1000}, None)
    assert (op.lsn, op.meta) == (1000, {"actor": "a1000"})


def test_keys_inserted_and_deleted_between_cuts_leave_one_marker_per_table() -> None:
    journal = compacting()
    journal.append(item(1, INSERT, 1, {"id": 1}, None))
    journal.append(item(2, UPDATE, 2, {"id": 2, "v": 1}, {"id": 2}))
    journal.append(item(3, INSERT, 3, {"id": 3}, None))
    journal.append(item(4, DELETE, 1, None, {"id": 1}))
    journal.append(item(5, DELETE, 2, None, {"id": 2, "v": 1}))
    journal.append(item(6, DELETE, 3, None, {"id": 3}))
    journal.append(item(7, INSERT, 9, {"id": 9}, None, table="u"))
    journal.append(item(8, DELETE, 9, None, {"id": 9}, table="u"))
    journal.compact()
    ops = {(op.table, op.key): op for op in journal.read(1)}
    assert sorted(ops) == [("t", 2), ("t", 3), ("u", 9)]  # key 1: gone; 3: t's marker
    assert (ops["t", 2].kind, ops["t", 2].before) == (DELETE, {"id": 2})
    assert (ops["t", 3].kind, ops["t", 3].before, ops["t", 3].lsn) == (DELETE, None, 6)
    # The tables still count as changed, with no key: their key counters may have moved.
    net = read_net(journal, 1)
    assert net.changes == {"t": {2: ({"id": 2}, None)}, "u": {}}


def test_a_marker_folded_again_stays_one() -> None:
    journal = compacting()
    for round_ in range(5):
        base = 10 * round_
        journal.append(item(base + 1, INSERT, base + 1, {"id": base + 1}, None))
        journal.append(item(base + 2, DELETE, base + 1, None, {"id": base + 1}))
        journal.append(item(base + 3, INSERT, base + 3, {"id": base + 3}, None))
        journal.append(item(base + 4, DELETE, base + 3, None, {"id": base + 3}))
        journal.append(item(base + 5, INSERT, 100, {"id": 100}, None, table="u"))
        journal.append(item(base + 6, DELETE, 100, None, {"id": 100}, table="u"))
        for lsn in range(base + 7, base + 11):
            journal.append(item(lsn, UPDATE, 7, {"id": 7, "v": lsn}, {"id": 7}, table="v"))
        journal.compact()
    assert journal.held == 3  # t's marker, u's marker, v's one key


def test_a_delete_and_reinsert_is_an_update_from_the_first_image() -> None:
    journal = compacting()
    journal.append(item(1, DELETE, 1, None, {"id": 1, "v": "old"}))
    journal.append(item(2, INSERT, 1, {"id": 1, "v": "new"}, None))
    journal.compact()
    (op,) = journal.read(1)
    assert (op.kind, op.after, op.before) == (UPDATE, {"id": 1, "v": "new"}, {"id": 1, "v": "old"})


def updates(journal: Journal, first: int, count: int, keys: int = 10) -> None:
    for lsn in range(first, first + count):
        key = lsn % keys
        journal.append(item(lsn, UPDATE, key, {"id": key, "v": lsn}, {"id": key}))


def test_compaction_never_folds_across_a_pinned_cut_and_the_release_drops_what_it_covers() -> None:
    journal = compacting()
    updates(journal, 1, 100)
    at = journal.cut(pin=True)
    assert at == 101
    updates(journal, 101, 100)
    journal.compact()
    assert journal.held == 20  # ten keys on each side of the pin
    assert [op.lsn for op in journal.read(101)] == list(range(191, 201))
    assert journal.release(100) == 100
    assert journal.held == 10
    assert [op.lsn for op in journal.read(101)] == list(range(191, 201))


def test_an_unpinned_cut_folds_with_what_follows_it() -> None:
    # A delta that failed unpins its cut: what it held and what came after are one run.
    journal = compacting()
    updates(journal, 1, 100)
    at = journal.cut(pin=True)
    updates(journal, 101, 100)
    journal.compact()
    assert journal.held == 20
    journal.unpin(at)
    journal.compact()
    assert journal.held == 10
    assert sorted(op.lsn for op in journal.read(1)) == list(range(191, 201))


def test_compacted_operations_are_read_and_released_whole_only() -> None:
    journal = compacting()
    updates(journal, 1, 100)
    journal.compact()
    with pytest.raises(JournalError, match="compacted: a read must start at 1"):
        journal.read(50)
    with pytest.raises(JournalError, match="compacted: a read must end at 100"):
        journal.read(1, 99)
    with pytest.raises(JournalError, match="release up to a pinned cut"):
        journal.release(50)
    assert journal.held == 10  # the refused release changed nothing
    assert journal.release(100) == 100
    assert journal.held == 0


def test_a_compacting_journal_folds_by_itself_as_it_grows() -> None:
    journal, plain = compacting(), Journal()
    updates(journal, 1, 200_000, keys=1_000)
    updates(plain, 1, 200_000, keys=1_000)
    assert journal.compactions > 0
    assert journal.held <= 10_000  # bounded by the keys, not by the 200k operations
    assert net_effect(read_net(journal, 1)) == net_effect(compact(plain.read(1), 1))


def test_with_its_owners_key_count_an_insert_stream_is_never_folded() -> None:
    # Every key distinct: folding would save nothing, and the hint says so for free.
    journal = compacting()
    journal.distinct_hint = lambda: journal.last_lsn
    for lsn in range(1, 100_001):
        journal.append(item(lsn, INSERT, lsn, {"id": lsn}, None))
    assert journal.compactions == 0
    assert journal.held == 100_000


def test_without_a_hint_an_unproductive_look_backs_off() -> None:
    journal = compacting()
    for lsn in range(1, 100_001):
        journal.append(item(lsn, INSERT, lsn, {"id": lsn}, None))
    assert journal.compactions == 0  # looked (at 4k, 8k, ...), found nothing to halve
    assert journal.held == 100_000


def test_a_journal_that_keeps_nothing_advances_in_one_step() -> None:
    journal = Journal(retain=False)
    journal.advance(5, 5.0)
    assert (journal.last_lsn, journal.last_ts, journal.released_lsn, len(journal)) == (
        5,
        5.0,
        5,
        0,
    )
    journal.append(item(6, INSERT, 6, {"id": 6}, None))  # numbering goes on from there
    with pytest.raises(JournalError, match="back to 3"):
        journal.advance(3, 3.0)
    with pytest.raises(JournalError, match="by append"):
        compacting().advance(1, 1.0)

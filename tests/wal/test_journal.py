"""The in-memory journal: ordered appends, range reads, release, history off, threads."""

# The suite asserts `expected == actual` (STYLE.md), which SIM300 calls a Yoda condition.

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wal import INSERT, Journal, JournalError, Operation


def op(lsn: int, key: object = None, *, kind: str = INSERT, meta: object = None) -> tuple:
    """A plain operation tuple, as the database's write path builds them."""
    return (lsn, 1000.0 + lsn, kind, "t", key, {"id": key}, None, meta)


def filled(n: int) -> Journal:
    """A journal holding operations 1..n, operation i about key i."""
    journal = Journal()
    for lsn in range(1, n + 1):
        journal.append(op(lsn, lsn))
    return journal


def test_new_journal_is_empty_and_reads_nothing() -> None:
    journal = Journal()
    assert (0, 0, 0) == (journal.last_lsn, journal.released_lsn, len(journal))
    assert [] == journal.read(1)


def test_appended_operations_are_read_back_as_operation_views_with_every_field() -> None:
    journal = Journal()
    journal.append(op(1, 10, meta={"actor": "ann"}))
    journal.append(Operation(2, 5.5, "update", "t", 10, {"id": 10, "v": 2}, {"id": 10}))
    ops = journal.read(1)
    assert [Operation, Operation] == [type(o) for o in ops]
    expected_first = Operation(1, 1001.0, INSERT, "t", 10, {"id": 10}, None, {"actor": "ann"})
    assert expected_first == ops[0]
    assert (2, 5.5, "update", "t", 10) == (
        ops[1].lsn,
        ops[1].ts,
        ops[1].kind,
        ops[1].table,
        ops[1].key,
    )
    assert ({"id": 10, "v": 2}, {"id": 10}, None) == (ops[1].after, ops[1].before, ops[1].meta)


@given(n=st.integers(1, 30), data=st.data())
def test_read_returns_exactly_the_requested_inclusive_range(n: int, data: st.DataObject) -> None:
    journal = filled(n)
    lo = data.draw(st.integers(1, n))
    hi = data.draw(st.integers(lo, n))
    assert list(range(lo, hi + 1)) == [o.lsn for o in journal.read(lo, hi)]
    assert list(range(lo, n + 1)) == [o.lsn for o in journal.read(lo)]


def test_read_of_an_empty_range_is_empty() -> None:
    journal = filled(5)
    assert [] == journal.read(4, 3)
    assert [] == journal.read(6)


def test_read_beyond_the_last_lsn_is_refused() -> None:
    journal = filled(3)
    with pytest.raises(JournalError):
        journal.read(2, 4)


def test_append_with_a_gap_is_refused_and_changes_nothing() -> None:
    journal = filled(2)
    with pytest.raises(JournalError):
        journal.append(op(4))
    assert (2, 2) == (journal.last_lsn, len(journal))
    assert [1, 2] == [o.lsn for o in journal.read(1)]


@pytest.mark.parametrize("lsn", [0, 1, 2, -1])
def test_append_of_an_old_or_repeated_lsn_is_refused(lsn: int) -> None:
    journal = filled(2)
    with pytest.raises(JournalError):
        journal.append(op(lsn))
    assert (2, 2) == (journal.last_lsn, len(journal))


def test_the_first_append_must_follow_start_lsn() -> None:
    journal = Journal(start_lsn=10)
    with pytest.raises(JournalError):
        journal.append(op(1))
    journal.append(op(11))
    assert [11] == [o.lsn for o in journal.read(11)]
    with pytest.raises(JournalError):
        journal.read(10)


def test_negative_start_lsn_is_refused() -> None:
    with pytest.raises(JournalError):
        Journal(start_lsn=-1)


def test_extend_appends_a_consecutive_batch() -> None:
    journal = filled(1)
    journal.extend([op(2), op(3), op(4)])
    assert [1, 2, 3, 4] == [o.lsn for o in journal.read(1)]


@pytest.mark.parametrize(
    "batch",
    [[2, 3, 5], [3, 4], [2, 2], [1, 2], [2, 4, 3]],
    ids=["gap-inside", "gap-first", "repeat", "old", "out-of-order"],
)
def test_extend_is_all_or_nothing(batch: list[int]) -> None:
    journal = filled(1)
    with pytest.raises(JournalError):
        journal.extend([op(lsn) for lsn in batch])
    assert (1, 1) == (journal.last_lsn, len(journal))
    assert [1] == [o.lsn for o in journal.read(1)]
    journal.append(op(2))
    assert [1, 2] == [o.lsn for o in journal.read(1)]


def test_extend_of_nothing_does_nothing() -> None:
    journal = filled(2)
    journal.extend([])
    assert (2, 2) == (journal.last_lsn, len(journal))


def test_release_frees_the_prefix_and_keeps_the_rest() -> None:
    journal = filled(5)
    assert 3 == journal.release(3)
    assert (3, 5, 2) == (journal.released_lsn, journal.last_lsn, len(journal))
    assert [4, 5] == [o.lsn for o in journal.read(4)]
    assert [5] == [o.key for o in journal.read(5, 5)]


@pytest.mark.parametrize(("lo", "hi"), [(1, 5), (3, 3), (3, 4), (1, 1)])
def test_read_touching_a_released_range_is_refused(lo: int, hi: int) -> None:
    journal = filled(5)
    journal.release(3)
    with pytest.raises(JournalError):
        journal.read(lo, hi)


def test_release_of_less_than_already_released_does_nothing() -> None:
    journal = filled(5)
    journal.release(3)
    assert 0 == journal.release(2)
    assert 0 == journal.release(3)
    assert (3, 2) == (journal.released_lsn, len(journal))


def test_release_beyond_the_last_lsn_is_refused() -> None:
    journal = filled(2)
    with pytest.raises(JournalError):
        journal.release(3)
    assert (0, 2) == (journal.released_lsn, len(journal))


def test_release_everything_then_keep_appending() -> None:
    journal = filled(3)
    assert 3 == journal.release(3)
    assert (0, 3) == (len(journal), journal.released_lsn)
    journal.append(op(4))
    assert [4] == [o.lsn for o in journal.read(4)]


def test_retain_false_numbers_operations_but_keeps_none() -> None:
    journal = Journal(retain=False)
    for lsn in (1, 2, 3):
        journal.append(op(lsn))
    journal.extend([op(4), op(5)])
    assert (5, 5, 0) == (journal.last_lsn, journal.released_lsn, len(journal))
    with pytest.raises(JournalError):
        journal.read(1)
    assert [] == journal.read(6)
    with pytest.raises(JournalError):
        journal.append(op(7))


def test_given_lock_is_the_journal_lock() -> None:
    lock = threading.RLock()
    assert lock is Journal(lock=lock).lock


def test_four_threads_appending_under_the_lock_leave_gap_free_lsns() -> None:
    journal = Journal()
    per_thread = 2000
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def writer(name: str) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with journal.lock:
                    journal.append(op(journal.last_lsn + 1, f"{name}-{i}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [] == errors
    ops = journal.read(1)
    assert list(range(1, 4 * per_thread + 1)) == [o.lsn for o in ops]
    assert 4 * per_thread == len({o.key for o in ops})
    assert 4 * per_thread == journal.last_lsn == len(journal)


# -- blocks: cuts, releases at and between cuts, reads across blocks --------------------------


@given(
    actions=st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.integers(1, 5)),
            st.tuples(st.just("cut"), st.just(0)),
            st.tuples(st.just("release"), st.integers(0, 100)),
            st.tuples(st.just("skip"), st.integers(0, 3)),
        ),
        max_size=40,
    ),
    data=st.data(),
)
def test_cuts_and_releases_anywhere_keep_reads_exact(
    actions: list[tuple[str, int]], data: st.DataObject
) -> None:
    # A model: the held LSNs are released+1..last, whatever the blocks look like.
    journal, last, released = Journal(), 0, 0
    for action, n in actions:
        if action == "append":
            for _ in range(n):
                last += 1
                journal.append(op(last, last))
        elif action == "cut":
            journal.cut()
        elif action == "release":
            target = min(n, last)
            journal.release(target, defer_free=data.draw(st.booleans()))
            released = max(released, target)
        else:
            last += n
            journal.skip_to(last, 1.0)
            released = last
        assert (last, released, last - released) == (
            journal.last_lsn,
            journal.released_lsn,
            len(journal),
        )
        if last > released:
            lo = data.draw(st.integers(released + 1, last))
            hi = data.draw(st.integers(lo, last))
            got = journal.read(lo, hi)
            assert list(range(lo, hi + 1)) == [o.lsn for o in got]
            assert [{"id": k} for k in range(lo, hi + 1)] == [o.after for o in got]
    journal.free_released()


def test_a_release_at_a_cut_drops_whole_blocks_and_copies_nothing() -> None:
    journal = filled(10)
    journal.cut()
    for lsn in range(11, 16):
        journal.append(op(lsn, lsn))
    kept_block = journal._blocks[-1]  # the block after the cut
    journal.release(10, defer_free=True)
    assert [kept_block] == journal._blocks  # the same list object, not a copy
    assert [11] == journal._starts
    assert len(journal._garbage) == 1
    assert len(journal._garbage[0]) == 10 * 8
    journal.free_released()
    assert [] == journal._garbage
    assert list(range(11, 16)) == [o.lsn for o in journal.read(11)]


def test_a_release_between_cuts_blanks_the_released_slots_so_their_rows_can_be_freed() -> None:
    journal = filled(6)
    journal.release(4)
    block = journal._blocks[0]
    assert [None] * (4 * 8) == block[: 4 * 8]
    assert [5, 6] == [o.lsn for o in journal.read(5)]
    journal.release(5)  # blanks only what is new
    assert [None] * (5 * 8) == block[: 5 * 8]
    assert 6 == block[5 * 8]


def test_a_cut_with_nothing_new_adds_no_block() -> None:
    journal = filled(3)
    journal.cut()
    journal.cut()
    assert 2 == len(journal._blocks)

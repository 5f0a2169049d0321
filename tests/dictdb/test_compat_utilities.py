"""The reference's standalone utilities, `dictdb.core.rwlock.RWLock` and `dictdb.index.avl`.

AVLTree runs against a sorted list of distinct keys, the structure's plain model; after every
step the tree equals the model, every node satisfies the AVL invariant and holds its true
height and subtree size, and the bisect and range methods agree with the model's.

RWLock runs with real threads. Every wait is bounded (threads are daemons, joined with a
deadline, and every event or barrier wait has a timeout), so a lock that blocks wrongly fails
a test instead of hanging the suite. Where a test must know that a thread is blocked inside
the lock, it polls the lock's waiting-writer count rather than sleeping and hoping.
"""

from __future__ import annotations

import bisect
import math
import random
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dictdb.core.rwlock import RWLock
from dictdb.index.avl import AVLNode, AVLTree

#: The longest any test waits for something that should happen at once.
TIMEOUT = 5.0

# -- AVLTree ----------------------------------------------------------------------------------

# Few values and pks, so that values repeat under several pks and discards hit present keys.
values = st.integers(-12, 12)
keys = st.tuples(values, st.integers(0, 4))


def nodes(node: AVLNode | None) -> Iterator[AVLNode]:
    """Every node of the subtree, in key order."""
    if node is not None:
        yield from nodes(node.left)
        yield node
        yield from nodes(node.right)


def checked_height(tree: AVLTree, node: AVLNode | None) -> int:
    """The subtree's height, asserting on the way that each node is balanced and accurate."""
    if node is None:
        return 0
    left, right = checked_height(tree, node.left), checked_height(tree, node.right)
    assert left - right == tree._balance_factor(node)
    assert abs(left - right) <= 1
    assert 1 + max(left, right) == node.height
    assert 1 + len(list(nodes(node.left))) + len(list(nodes(node.right))) == node.size
    return node.height


def avl_height_bound(n: int) -> float:
    """The greatest height an AVL tree of n keys can have (Knuth: < 1.4405 log2(n + 2))."""
    return 1.4405 * math.log2(n + 2)


class AVLTreeMachine(RuleBasedStateMachine):
    """AVLTree against a sorted list of distinct (value, pk) keys."""

    def __init__(self) -> None:
        super().__init__()
        self.tree = AVLTree()
        self.model: list[tuple[int, int]] = []

    @rule(key=keys)
    def add(self, key: tuple[int, int]) -> None:
        self.tree.add(key)
        if key not in self.model:
            bisect.insort(self.model, key)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def discard_present(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(self.model))
        self.tree.discard(key)
        self.model.remove(key)

    @rule(key=keys)
    def discard_any(self, key: tuple[int, int]) -> None:
        self.tree.discard(key)
        if key in self.model:
            self.model.remove(key)

    @rule(value=values, pk=st.integers(-1, 5))
    def bisect_by_value_and_by_key(self, value: int, pk: int) -> None:
        prefixes = [(v,) for v, _ in self.model]
        assert bisect.bisect_left(prefixes, (value,)) == self.tree.bisect_left((value,))
        assert bisect.bisect_right(prefixes, (value,)) == self.tree.bisect_right((value,))
        key = (value, pk)
        assert bisect.bisect_left(self.model, key) == self.tree.bisect_left(key)
        assert bisect.bisect_right(self.model, key) == self.tree.bisect_right(key)

    @rule(value=values)
    def one_sided_ranges(self, value: int) -> None:
        model = self.model
        assert [k for k in model if k[0] < value] == list(self.tree.iter_lt(value))
        assert [k for k in model if k[0] <= value] == list(self.tree.iter_lte(value))
        assert [k for k in model if k[0] > value] == list(self.tree.iter_gt(value))
        assert [k for k in model if k[0] >= value] == list(self.tree.iter_gte(value))
        assert [k for k in model if k[0] == value] == list(self.tree.iter_eq(value))

    @rule(low=values, high=values, inclusive=st.booleans())
    def between(self, low: int, high: int, inclusive: bool) -> None:
        if inclusive:
            expected = [k for k in self.model if low <= k[0] <= high]
        else:
            expected = [k for k in self.model if low < k[0] < high]
        assert expected == list(self.tree.iter_between(low, high, inclusive=inclusive))

    @invariant()
    def equals_the_model(self) -> None:
        assert self.model == list(self.tree)
        assert len(self.model) == len(self.tree)

    @invariant()
    def is_balanced_with_true_heights_and_sizes(self) -> None:
        height = checked_height(self.tree, self.tree._root)
        assert height <= avl_height_bound(len(self.model))


TestAVLTreeAgainstASortedList = AVLTreeMachine.TestCase


@given(st.lists(st.integers(), unique=True, max_size=300), st.randoms(use_true_random=False))
def test_a_tree_holds_its_keys_in_order_and_within_the_avl_height_whatever_the_insertion_order(
    numbers: list[int], rnd: random.Random
) -> None:
    tree = AVLTree()
    rnd.shuffle(numbers)
    for n in numbers:
        tree.add((n, -n))
    assert sorted((n, -n) for n in numbers) == list(tree)
    assert checked_height(tree, tree._root) <= avl_height_bound(len(numbers))


def test_ascending_then_descending_inserts_and_removals_keep_the_tree_balanced() -> None:
    tree = AVLTree()
    for n in range(2000):
        tree.add((n, 0))
    assert checked_height(tree, tree._root) <= avl_height_bound(2000)
    for n in range(1999, 499, -1):
        tree.discard((n, 0))
    assert [(n, 0) for n in range(500)] == list(tree)
    assert checked_height(tree, tree._root) <= avl_height_bound(500)


def test_the_iterators_start_at_their_bound_in_a_large_tree() -> None:
    tree = AVLTree()
    for n in range(20_000):
        tree.add((n // 2, n))
    assert (4_000, 8_000) == next(tree.iter_gte(4_000))
    assert (4_000, 8_000) == next(tree.iter_gt(3_999.5))
    assert (4_001, 8_002) == next(tree.iter_gt(4_000))
    assert [(7, 14), (7, 15)] == list(tree.iter_eq(7))
    assert [(0, 0), (0, 1)] == list(tree.iter_lt(1))
    assert [] == list(tree.iter_between(5, 4))


def test_an_empty_tree_has_no_root_and_answers_every_query_with_nothing() -> None:
    tree = AVLTree()
    tree.discard((1, 1))
    assert tree._root is None
    assert (0, 0, 0) == (len(tree), tree.bisect_left((1,)), tree.bisect_right((1, 2)))
    for iterate in (tree.iter_lt, tree.iter_lte, tree.iter_gt, tree.iter_gte, tree.iter_eq):
        assert [] == list(iterate(1))
    assert [] == list(tree.iter_between(0, 9))


def test_a_node_is_a_mutable_record_compared_by_identity() -> None:
    node = AVLNode((1, "a"))
    assert (None, None, 1, 1) == (node.left, node.right, node.height, node.size)
    assert node != AVLNode((1, "a"))
    node.height = 3
    assert 3 == node.height


# -- RWLock -----------------------------------------------------------------------------------


def start(target: Callable[[], None]) -> threading.Thread:
    """Run *target* in a daemon thread, so a thread stuck in a broken lock cannot hang pytest."""
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def join(*threads: threading.Thread) -> None:
    """Join every thread within TIMEOUT altogether; fail if one is still running."""
    deadline = time.monotonic() + TIMEOUT
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert [] == [t.name for t in threads if t.is_alive()]


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll *condition* until it holds; fail after TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def writers_waiting(lock: RWLock, n: int) -> Callable[[], bool]:
    return lambda: lock._writers_waiting == n


def test_readers_hold_the_lock_together() -> None:
    lock = RWLock()
    inside = threading.Barrier(6, timeout=TIMEOUT)
    failures: list[BaseException] = []

    def reader() -> None:
        with lock.read_lock():
            try:
                inside.wait()  # passes only once all six are inside at the same time
            except threading.BrokenBarrierError as e:
                failures.append(e)

    join(*[start(reader) for _ in range(6)])
    assert [] == failures


def test_a_writer_waits_for_the_readers_and_then_excludes_new_ones() -> None:
    lock = RWLock()
    order: list[str] = []
    reader_in, release_reader = threading.Event(), threading.Event()

    def first_reader() -> None:
        with lock.read_lock():
            reader_in.set()
            assert release_reader.wait(TIMEOUT)
            order.append("reader out")

    def writer() -> None:
        with lock.write_lock():
            order.append("writer in")
            time.sleep(0.02)
            order.append("writer out")

    def late_reader() -> None:
        with lock.read_lock():
            order.append("late reader in")

    r1 = start(first_reader)
    assert reader_in.wait(TIMEOUT)
    w = start(writer)
    wait_until(writers_waiting(lock, 1))
    r2 = start(late_reader)  # arrives while the writer waits: queues behind it
    time.sleep(0.02)
    assert [] == order
    release_reader.set()
    join(r1, w, r2)
    assert ["reader out", "writer in", "writer out", "late reader in"] == order


def test_writers_enter_one_at_a_time() -> None:
    lock = RWLock()
    inside = 0
    overlaps: list[int] = []

    def writer() -> None:
        nonlocal inside
        for _ in range(50):
            with lock.write_lock():
                inside += 1
                if inside != 1:
                    overlaps.append(inside)
                time.sleep(0)
                inside -= 1

    join(*[start(writer) for _ in range(4)])
    assert [] == overlaps


def test_under_contention_no_reader_sees_a_writer_and_no_waiter_is_left_asleep() -> None:
    """Short holds from many threads: a lost wakeup would leave a thread blocked forever."""
    lock = RWLock()
    state = {"readers": 0, "writers": 0, "writes": 0}
    count_lock = threading.Lock()
    violations: list[dict[str, int]] = []

    def reader() -> None:
        for _ in range(200):
            with lock.read_lock():
                with count_lock:
                    state["readers"] += 1
                    if state["writers"]:
                        violations.append(dict(state))
                time.sleep(0)
                with count_lock:
                    state["readers"] -= 1

    def writer() -> None:
        for _ in range(100):
            with lock.write_lock():
                with count_lock:
                    state["writers"] += 1
                    if state["writers"] != 1 or state["readers"]:
                        violations.append(dict(state))
                state["writes"] += 1
                with count_lock:
                    state["writers"] -= 1
            time.sleep(0)

    join(*[start(reader) for _ in range(8)], *[start(writer) for _ in range(4)])
    assert [] == violations
    assert 400 == state["writes"]


def test_a_thread_reading_again_while_a_writer_waits_does_not_deadlock() -> None:
    """The reference's defect B7: the nested read queued behind a writer waiting for it."""
    lock = RWLock()
    events: list[str] = []
    reading, writer_queued = threading.Event(), threading.Event()

    def reader() -> None:
        with lock.read_lock():
            reading.set()
            assert writer_queued.wait(TIMEOUT)
            with lock.read_lock():
                events.append("nested read")
        events.append("reader out")

    def writer() -> None:
        with lock.write_lock():
            events.append("writer in")

    r = start(reader)
    assert reading.wait(TIMEOUT)
    w = start(writer)
    wait_until(writers_waiting(lock, 1))
    writer_queued.set()
    join(r, w)
    assert ["nested read", "reader out", "writer in"] == events


def test_the_writing_thread_may_write_and_read_again_and_frees_the_lock_at_its_last_release() -> (
    None
):
    lock = RWLock()
    entered = threading.Event()

    def other_reader() -> None:
        with lock.read_lock():
            entered.set()

    with lock.write_lock():
        with lock.write_lock(), lock.read_lock():
            pass
        t = start(other_reader)
        assert not entered.wait(0.02)
    join(t)
    assert entered.is_set()


def test_a_thread_that_read_inside_its_write_is_an_ordinary_reader_after_the_write() -> None:
    lock = RWLock()
    lock.acquire_write()
    lock.acquire_read()
    lock.release_write()  # now an ordinary reader: other readers may join, writers may not
    entered = threading.Event()
    write_done = threading.Event()

    def reader() -> None:
        with lock.read_lock():
            entered.set()

    def writer() -> None:
        with lock.write_lock():
            write_done.set()

    join(start(reader))
    w = start(writer)
    assert not write_done.wait(0.02)
    lock.release_read()
    join(w)


def test_upgrading_a_read_to_a_write_raises_instead_of_deadlocking() -> None:
    lock = RWLock()
    with lock.read_lock():
        with pytest.raises(RuntimeError, match="holds the read lock"):
            lock.acquire_write()
    with lock.write_lock():
        pass


@pytest.mark.parametrize("release", ["release_read", "release_write"])
def test_releasing_a_lock_the_thread_does_not_hold_raises_and_changes_nothing(
    release: str,
) -> None:
    lock = RWLock()
    with pytest.raises(RuntimeError, match="does not hold"):
        getattr(lock, release)()
    held = threading.Event()
    done = threading.Event()
    errors: list[BaseException] = []

    def holder() -> None:
        with lock.read_lock() if release == "release_read" else lock.write_lock():
            held.set()
            assert done.wait(TIMEOUT)

    t = start(holder)
    assert held.wait(TIMEOUT)
    try:
        getattr(lock, release)()  # another thread's hold is not ours to release
    except RuntimeError as e:
        errors.append(e)
    done.set()
    join(t)
    assert 1 == len(errors)
    with lock.write_lock():
        pass


def test_a_with_block_that_raises_releases_the_lock() -> None:
    lock = RWLock()
    for section in (lock.read_lock, lock.write_lock):
        with pytest.raises(ValueError, match="boom"), section():
            raise ValueError("boom")
    took_write = threading.Event()

    def writer() -> None:
        with lock.write_lock():
            took_write.set()

    join(start(writer))
    assert took_write.is_set()


def test_a_writer_interrupted_while_waiting_lets_the_readers_queued_behind_it_in() -> None:
    lock = RWLock()
    lock.acquire_read()
    late_reader_in = threading.Event()
    real_wait = lock._can_write.wait

    def late_reader() -> None:
        with lock.read_lock():
            late_reader_in.set()

    def interrupted_wait(timeout: float | None = None) -> bool:
        # Queue a reader behind this writer, then fail as KeyboardInterrupt would.
        start(late_reader)
        real_wait(0.05)
        raise KeyboardInterrupt

    lock._can_write.wait = interrupted_wait  # type: ignore[method-assign]
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            lock.acquire_write()
        except KeyboardInterrupt as e:
            errors.append(e)

    join(start(writer))
    assert 1 == len(errors)
    assert late_reader_in.wait(TIMEOUT)
    lock.release_read()
    lock._can_write.wait = real_wait  # type: ignore[method-assign]
    with lock.write_lock():
        pass


# One thread's acquisitions and releases, in any order: each succeeds or raises as the model of
# its holds says, and after the thread releases what it holds, another thread can write.
_STEPS = st.lists(
    st.sampled_from(["acquire_read", "release_read", "acquire_write", "release_write"]),
    max_size=30,
)


@given(_STEPS)
def test_one_threads_holds_are_counted_and_misuse_raises_without_changing_them(
    steps: list[str],
) -> None:
    lock = RWLock()
    reads = writes = 0
    for step in steps:
        allowed = {
            "acquire_read": True,
            "release_read": reads > 0,
            "acquire_write": writes > 0 or reads == 0,
            "release_write": writes > 0,
        }[step]
        if not allowed:
            with pytest.raises(RuntimeError):
                getattr(lock, step)()
            continue
        getattr(lock, step)()
        reads += {"acquire_read": 1, "release_read": -1}.get(step, 0)
        writes += {"acquire_write": 1, "release_write": -1}.get(step, 0)
    for _ in range(writes):
        lock.release_write()
    for _ in range(reads):
        lock.release_read()
    wrote = threading.Event()

    def writer() -> None:
        with lock.write_lock():
            wrote.set()

    join(start(writer))
    assert wrote.is_set()

"""The in-memory operation journal.

The journal holds a contiguous run of operations ``released+1 .. last_lsn``. Appends must
come in LSN order with no gap; readers copy a range out under the lock; consumers that have
made a range durable release it, which frees the memory. With ``retain=False`` the journal
only numbers operations and keeps none (history off).

Memory layout: the retained operations are stored *flat*, their eight fields one after the
other in a list, not as one tuple each. A tuple holding a dict stays tracked by CPython's
cyclic garbage collector, so a million retained operation tuples meant a million more objects
for every collection to walk: measured +0.8 µs per insert (ARCHITECTURE.md, "Journal cost").

The flat list is split into *blocks* where a consumer cuts (`cut`, e.g. a backup taking its
consistent cut): appends go to the last block, and releasing up to a cut drops whole blocks,
so nothing is copied. With one flat list, a release had to copy what stays into a new list;
when writers had added half a million operations during a backup, that new list was a young
five-million-slot object that the next garbage collection walked while writers waited (60 ms
measured). A release that is not at a cut blanks the released slots of the first block.

*Compacting* journals (`compacting`, set for a consumer that only needs the net effect of
the operations since its last cut, e.g. a backup manager cutting deltas) fold the blocks after
their last pinned cut into one block holding, per key, the net operation (the latest one's LSN,
time, after-image and meta, the first one's before-image) whenever that at least halves them:
N updates of one row then cost one operation, not N. A compacted block is read whole.
A consumer *pins* the cut it will release up to (`cut(pin=True)`) and unpins it if its write
fails (`unpin`): the operations on both sides of a dead cut then compact together, so memory
while backups fail is bounded by what changed since the last successful one.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable
from itertools import pairwise
from typing import Any

from wal.compaction import net_operations
from wal.errors import JournalError
from wal.operation import Operation, OpTuple

_W = len(Operation._fields)  # fields per operation in the flat list
_FREE_STEP = _W * 20_000  # list slots dropped per step by free_released (a few ms)
_FIRST_CHECK = _W * 4_096  # slots appended before a compacting journal first looks
_new = tuple.__new__


def unflatten(flat: list[Any]) -> list[Operation]:
    """`Operation` views of a flat field list from `Journal.read_flat`."""
    return [_new(Operation, flat[i : i + _W]) for i in range(0, len(flat), _W)]


class Journal:
    """A thread-safe, append-only, releasable run of operations.

    Args:
        retain: keep appended operations until released (True), or drop them at once.
        start_lsn: the LSN of the last operation that came before this journal (0 if none).
        start_ts: that operation's timestamp (0.0 if none).
        lock: the re-entrant lock guarding the journal; an owner that already serializes its
            appends under a lock of its own passes that lock and appends with `append_held`.
    """

    __slots__ = (
        "_blocks",
        "_check_at",
        "_dense",
        "_garbage",
        "_last",
        "_last_ts",
        "_lock",
        "_pins",
        "_released",
        "_starts",
        "_tail",
        "compacting",
        "compactions",
        "distinct_hint",
        "retain",
    )

    def __init__(
        self,
        *,
        retain: bool = True,
        start_lsn: int = 0,
        start_ts: float = 0.0,
        lock: Any = None,
    ) -> None:
        if start_lsn < 0:
            raise JournalError(f"start_lsn must be >= 0, got {start_lsn}")
        self.retain = retain
        #: Fold operations per key between cuts (see the module's doc); off by default.
        self.compacting = False
        #: How many compactions folded operations (for tests and monitoring).
        self.compactions = 0
        #: The owner's count of keys changed since its last cut, if it keeps one: the
        #: journal then compacts only when that says it would at least halve what it holds.
        self.distinct_hint: Callable[[], int] | None = None
        self._lock = threading.RLock() if lock is None else lock
        self._garbage: list[list[Any]] = []  # released blocks, freed by free_released
        self._released = start_lsn
        self._last = start_lsn
        self._last_ts = start_ts
        self._reset(start_lsn)

    def _reset(self, lsn: int) -> None:
        # One empty block whose first slot is operation lsn + 1. Caller holds the lock.
        self._tail: list[Any] = []
        self._blocks: list[list[Any]] = [self._tail]
        self._starts: list[int] = [lsn + 1]  # the first LSN each block covers
        self._dense: list[bool] = [True]  # slot i of a dense block is operation start + i
        self._pins: dict[int, int] = {}  # pinned cut (first LSN after it) -> how many pins
        self._check_at = _FIRST_CHECK

    @property
    def last_lsn(self) -> int:
        """The LSN of the newest appended operation (start_lsn if none)."""
        return self._last

    @property
    def last_ts(self) -> float:
        """The timestamp of the newest appended operation (start_ts if none)."""
        return self._last_ts

    @property
    def released_lsn(self) -> int:
        """Operations up to this LSN are no longer held."""
        return self._released

    @property
    def lock(self) -> threading.RLock:
        """The lock guarding the journal (shared with its owner when one was given)."""
        return self._lock

    def __len__(self) -> int:
        """How many operations the held range covers (``last_lsn - released_lsn``; fewer
        are stored once compacted, see `held`)."""
        return self._last - self._released if self.retain else 0

    @property
    def held(self) -> int:
        """How many operations are stored (after compaction)."""
        with self._lock:
            return sum(len(b) for b in self._blocks) // _W

    def append(self, op: OpTuple | Operation) -> None:
        """Append the next operation.

        Raises:
            JournalError: ``op.lsn`` is not ``last_lsn + 1``.
        """
        with self._lock:
            self.append_held(op)

    def append_held(self, op: OpTuple | Operation) -> None:
        """`append` for a caller that already holds `lock` (the owner's write path).

        Raises:
            JournalError: ``op.lsn`` is not ``last_lsn + 1``.
        """
        lsn = op[0]
        if lsn != self._last + 1:
            raise JournalError(f"operation {lsn} does not follow {self._last}")
        self._last = lsn
        self._last_ts = op[1]
        if self.retain:
            tail = self._tail
            tail.extend(op)
            if self.compacting and len(tail) >= self._check_at:
                self._maybe_compact()
        else:
            self._released = lsn

    def retain_from_now(self) -> None:
        """Keep the operations appended from now on (a journal made with ``retain=False``,
        whose owner found a consumer for them); no effect on a retaining journal."""
        with self._lock:
            if self.retain:
                return
            self.retain = True
            self._released = self._last
            self._reset(self._last)

    def cut(self, *, pin: bool = False) -> int:
        """Start a new block after the newest operation: a later `release` up to this point
        drops whole blocks (no copy, no long lock hold).

        Args:
            pin: the caller will release up to this cut, or `unpin` it if it cannot: until
                then, compaction never folds operations across it.

        Returns:
            The cut: the LSN of the first operation after it (``last_lsn + 1``).
        """
        with self._lock:
            if self._tail:
                # The next look at compaction stays due after as many appends in all.
                self._check_at = max(_W, self._check_at - len(self._tail))
                self._tail = []
                self._blocks.append(self._tail)
                self._starts.append(self._last + 1)
                self._dense.append(True)
            at = self._last + 1
            if pin:
                self._pins[at] = self._pins.get(at, 0) + 1
            return at

    def unpin(self, at: int) -> None:
        """Give up a pin of `cut` *at* (the consumer's write failed and it will not release
        up to it): the next compaction may fold the operations on both sides of it. Unknown
        or already released cuts are ignored."""
        with self._lock:
            count = self._pins.get(at, 0)
            if count > 1:
                self._pins[at] = count - 1
            elif count:
                del self._pins[at]

    def compact(self) -> int:
        """Fold now, between each two pinned cuts, the operations into their net operations
        (a compacting journal does this by itself as it grows, after its last pinned cut).
        Returns how many operations were dropped."""
        with self._lock:
            dropped = 0
            bounds = [0, *self._pinned_blocks(), len(self._blocks)]
            for lo, hi in reversed(list(pairwise(bounds))):
                dropped += self._fold(lo, hi)
            return dropped

    def _maybe_compact(self) -> None:
        # Called with the lock held when _check_at slots were appended since the last look.
        # Compact when that at least halves what the region holds; else look again once the
        # region has doubled (an insert-only stream pays one look per doubling: O(1) each
        # with the owner's hint, a key count without).
        region = sum(len(b) for b in self._region())
        hint = self.distinct_hint
        worth = hint is None or 2 * hint() * _W <= region
        if worth and self._compact(min_gain=0.5):
            self._check_at = max(_FIRST_CHECK, sum(len(b) for b in self._region()))
        else:
            self._check_at = len(self._tail) + region

    def _region(self) -> list[list[Any]]:
        pinned = self._pinned_blocks()
        return self._blocks[pinned[-1] if pinned else 0 :]

    def _pinned_blocks(self) -> list[int]:
        # Indexes of the blocks that start at a pinned cut (compaction never folds across).
        pins = self._pins
        return [i for i, at in enumerate(self._starts) if i and at in pins]

    def _compact(self, min_gain: float = 0.0) -> int:
        # Fold the blocks after the last pinned cut.
        pinned = self._pinned_blocks()
        return self._fold(pinned[-1] if pinned else 0, len(self._blocks), min_gain)

    def _fold(self, lo: int, hi: int, min_gain: float = 0.0) -> int:
        # Replace blocks[lo:hi] by their net operations (a fresh empty tail follows them when
        # they reach the end); give up unless that drops at least *min_gain* of them.
        region = self._blocks[lo:hi]
        held = [i for i in range(lo, hi) if self._blocks[i]]
        if not held or (len(held) == 1 and not self._dense[held[0]]):
            return 0  # nothing, or folded already
        flat = region[0] if len(region) == 1 else [v for block in region for v in block]
        before = len(flat) // _W
        folded = net_operations(flat, enough=int(before * (1 - min_gain)) if min_gain else None)
        if folded is None:
            return 0
        self.compactions += 1
        blocks, starts, dense = [folded], [self._starts[lo]], [False]
        if hi == len(self._blocks):
            self._tail = []
            blocks.append(self._tail)
            starts.append(self._last + 1)
            dense.append(True)
        self._blocks[lo:hi] = blocks
        self._starts[lo:hi] = starts
        self._dense[lo:hi] = dense
        return before - len(folded) // _W

    def extend(self, ops: Iterable[OpTuple | Operation]) -> None:
        """Append several operations atomically: all of them, or none if one is out of order.

        Raises:
            JournalError: the operations are not consecutive from ``last_lsn + 1``.
        """
        batch = list(ops)
        with self._lock:
            expected = self._last + 1
            for op in batch:
                if op[0] != expected:
                    raise JournalError(f"operation {op[0]} does not follow {expected - 1}")
                expected += 1
            for op in batch:
                self.append_held(op)

    def read(self, from_lsn: int, to_lsn: int | None = None) -> list[Operation]:
        """Copy out the operations with ``from_lsn <= lsn <= to_lsn``.

        Args:
            from_lsn: first LSN wanted (>= 1).
            to_lsn: last LSN wanted; None for the newest.

        Returns:
            The operations, in LSN order (empty when the range is empty).

        Raises:
            JournalError: part of the range was released or lies beyond ``last_lsn``.
        """
        return unflatten(self.read_flat(from_lsn, to_lsn))

    def read_flat(self, from_lsn: int, to_lsn: int | None = None) -> list[Any]:
        """`read`, as a flat list of fields (see `unflatten`).

        Plain list slices, one per block: the cheapest way to copy a range out while holding
        a lock that writers wait for; build the `Operation` views after releasing it.

        Raises:
            JournalError: as `read`.
        """
        with self._lock:
            end = self._last if to_lsn is None else to_lsn
            if end < from_lsn:
                return []
            if from_lsn <= self._released:
                raise JournalError(
                    f"operations {from_lsn}..{self._released} were released from the journal"
                )
            if end > self._last:
                raise JournalError(f"operation {end} is beyond the journal's last {self._last}")
            blocks, starts = self._blocks, self._starts
            b = bisect_right(starts, from_lsn) - 1
            last_b = bisect_right(starts, end) - 1
            dense = self._dense
            if not (dense[b] and dense[last_b]):
                self._check_whole(b, last_b, from_lsn, end)
            lo = (from_lsn - starts[b]) * _W if dense[b] else 0
            hi = (end + 1 - starts[last_b]) * _W if dense[last_b] else len(blocks[last_b])
            if b == last_b:
                return blocks[b][lo:hi]
            out = blocks[b][lo:]
            for i in range(b + 1, last_b):
                out += blocks[i]
            out += blocks[last_b][:hi]
            return out

    def _check_whole(self, b: int, last_b: int, from_lsn: int, end: int) -> None:
        # A compacted block holds net operations: it is read whole or not at all.
        starts = self._starts
        if not self._dense[b] and from_lsn != max(starts[b], self._released + 1):
            raise JournalError(
                f"operations {starts[b]}.. were compacted: a read must start at {starts[b]}"
            )
        if not self._dense[last_b]:
            block_end = starts[last_b + 1] - 1 if last_b + 1 < len(starts) else self._last
            if end != block_end:
                raise JournalError(
                    f"operations ..{block_end} were compacted: a read must end at {block_end}"
                )

    def advance(self, lsn: int, ts: float) -> None:
        """Number operations up to *lsn* in a journal that keeps none (`retain` False): what
        appending each would leave, in one step (bulk statements, replay).

        Raises:
            JournalError: the journal keeps operations (they must be appended), or *lsn* is
                before `last_lsn`.
        """
        with self._lock:
            if self.retain:
                raise JournalError("a journal that keeps operations takes them by append")
            if lsn < self._last:
                raise JournalError(f"cannot advance from {self._last} back to {lsn}")
            self._released = self._last = lsn
            self._last_ts = ts

    def skip_to(self, lsn: int, ts: float) -> None:
        """Declare operations up to *lsn* applied elsewhere: release all, continue after *lsn*.

        Used when state jumps by a compacted delta whose original operations are not here;
        *ts* is the timestamp of operation *lsn*.

        Raises:
            JournalError: *lsn* is before `last_lsn`.
        """
        with self._lock:
            if lsn < self._last:
                raise JournalError(f"cannot skip back from {self._last} to {lsn}")
            for block in self._blocks:
                block.clear()
            self._reset(lsn)
            self._released = self._last = lsn
            self._last_ts = ts

    def release(self, up_to_lsn: int, *, defer_free: bool = False) -> int:
        """Forget the operations with ``lsn <= up_to_lsn``.

        Releasing less than what is already released does nothing. Releasing up to the last
        operation or to a `cut` drops whole blocks (and the pins up to there); elsewhere, the
        released part of a block is blanked under the lock (time ∝ that part). With
        *defer_free* the memory of whole released blocks is handed back only by
        `free_released`, which an owner holding its own lock around this call runs once it
        has let go: dropping a million operations
        takes tens of milliseconds that no writer should wait for.

        Returns:
            How many operations were dropped.

        Raises:
            JournalError: ``up_to_lsn`` is beyond ``last_lsn``, or inside compacted
                operations (they are released whole, up to a pinned cut).
        """
        with self._lock:
            if up_to_lsn > self._last:
                raise JournalError(f"cannot release {up_to_lsn}: last is {self._last}")
            for at in [at for at in self._pins if at <= up_to_lsn + 1]:
                del self._pins[at]
            count = up_to_lsn - self._released
            if count <= 0:
                return 0
            if up_to_lsn < self._last:
                at = bisect_right(self._starts, up_to_lsn + 1) - 1
                if not self._dense[at] and self._starts[at] != up_to_lsn + 1:
                    raise JournalError(
                        f"cannot release up to {up_to_lsn}: operations from "
                        f"{self._starts[at]} on were compacted (release up to a pinned cut)"
                    )
            before, self._released = self._released, up_to_lsn
            if up_to_lsn == self._last:
                self._garbage.extend(self._blocks)
                self._reset(up_to_lsn)
            else:
                # whole blocks: those before the one holding operation up_to_lsn + 1
                whole = bisect_right(self._starts, up_to_lsn + 1) - 1
                if whole:
                    self._garbage.extend(self._blocks[:whole])
                    del self._blocks[:whole]
                    del self._starts[:whole]
                    del self._dense[:whole]
                # Blank the released slots of the first block (none when releasing up to a
                # cut) so that what they held can be freed; the positions stay.
                first = self._blocks[0]
                done = max(0, (before + 1 - self._starts[0]) * _W)  # blanked by earlier releases
                upto = (up_to_lsn + 1 - self._starts[0]) * _W
                if upto > done:
                    first[done:upto] = [None] * (upto - done)
        if not defer_free:
            self.free_released()
        return count

    def free_released(self) -> None:
        """Drop the memory of released blocks, a slice at a time (short GIL holds)."""
        while True:
            with self._lock:
                if not self._garbage:
                    return
                block = self._garbage.pop()
            while block:
                del block[-_FREE_STEP:]

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
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Iterable
from typing import Any

from wal.errors import JournalError
from wal.operation import Operation, OpTuple

_W = len(Operation._fields)  # fields per operation in the flat list
_FREE_STEP = _W * 20_000  # list slots dropped per step by free_released (a few ms)
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
        "_garbage",
        "_last",
        "_last_ts",
        "_lock",
        "_released",
        "_starts",
        "_tail",
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
        self._starts: list[int] = [lsn + 1]  # the LSN in slot 0 of each block

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
        """How many operations are held."""
        return self._last - self._released if self.retain else 0

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
            self._tail.extend(op)
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

    def cut(self) -> None:
        """Start a new block after the newest operation: a later `release` up to this point
        drops whole blocks (no copy, no long lock hold)."""
        with self._lock:
            if self._tail:
                self._tail = []
                self._blocks.append(self._tail)
                self._starts.append(self._last + 1)

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
            lo = (from_lsn - starts[b]) * _W
            hi = (end + 1 - starts[last_b]) * _W
            if b == last_b:
                return blocks[b][lo:hi]
            out = blocks[b][lo:]
            for i in range(b + 1, last_b):
                out += blocks[i]
            out += blocks[last_b][:hi]
            return out

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
        operation or to a `cut` drops whole blocks; elsewhere, the released part of a block is
        blanked under the lock (time ∝ that part). With *defer_free* the memory of whole
        released blocks is handed back only by `free_released`, which an owner holding its
        own lock around this call runs once it has let go: dropping a million operations
        takes tens of milliseconds that no writer should wait for.

        Returns:
            How many operations were dropped.

        Raises:
            JournalError: ``up_to_lsn`` is beyond ``last_lsn``.
        """
        with self._lock:
            if up_to_lsn > self._last:
                raise JournalError(f"cannot release {up_to_lsn}: last is {self._last}")
            count = up_to_lsn - self._released
            if count <= 0:
                return 0
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

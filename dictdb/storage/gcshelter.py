"""Keep CPython's cyclic garbage collector off a snapshot's row-map copies.

A full snapshot copies each table's row map under the database lock (one C call, ~25 ms per
million rows) and encodes the copies outside it. A fresh copy is a young container with one
entry per row, and the next collection of the young generations, which any thread's
allocations can trigger (a writer inserting, typically), walks every entry: 30-60 ms per
million rows, twice (generation 0, then 1), with the GIL held, so every writer waits. That
was most of the worst insert latency during a backup (ARCHITECTURE.md, writer stalls).

`Shelter` freezes the collector's generations right after the copies are made
(`gc.freeze`: O(1), moves every tracked object to the permanent generation, which
collections skip) and, when the last concurrent snapshot is done, unfreezes them
(`gc.unfreeze`: O(1), every frozen object goes to the oldest generation). Collections keep
running meanwhile for objects created after the freeze. Cost to the application: cyclic
garbage that existed when a snapshot started is reclaimed by the next full collection
instead of a young one.

The shelter stays out of the way when it could interfere: if the collector is disabled, or if
something else already froze objects (``gc.get_freeze_count() > 0``, e.g. a pre-fork server
that froze its imports: unfreezing would undo that), it does nothing. Set `ENABLED` to False
to turn it off for the whole process.
"""

from __future__ import annotations

import gc
import threading
from types import TracebackType

#: Whether snapshots shelter their copies (process-wide; read when a snapshot starts).
ENABLED = True

_lock = threading.Lock()
_depth = 0  # snapshots currently inside a shelter
_ours = False  # whether the current run of overlapping shelters froze (and must unfreeze)


class Shelter:
    """One snapshot's stay: ``with Shelter() as shelter:``, then `freeze` after each copy.

    Overlapping shelters (several databases or threads saving at once) share one freeze: the
    first decides, the last one out unfreezes.
    """

    def __enter__(self) -> Shelter:
        global _depth, _ours
        with _lock:
            if _depth == 0:
                _ours = ENABLED and gc.isenabled() and gc.get_freeze_count() == 0
            _depth += 1
        return self

    def freeze(self) -> None:
        """Put every object tracked now, the copies just made included, out of reach of
        collections until the last shelter is left."""
        with _lock:
            if _ours:
                gc.freeze()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _depth, _ours
        with _lock:
            _depth -= 1
            if _depth == 0 and _ours:
                gc.unfreeze()
                _ours = False

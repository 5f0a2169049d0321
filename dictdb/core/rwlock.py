"""`RWLock`: a reader-writer lock for threads, at the reference's ``dictdb.core.rwlock`` path.

Provided for code written against the reference DictDB, which guards its tables with this
class. dictdb itself does not use it: one re-entrant lock per database serializes writers and
readers (ARCHITECTURE.md R8), so a read inside a read, or inside a write, can never deadlock.

Policy:

- **Shared reads, exclusive writes.** Any number of threads may hold the read lock at once; a
  writer holds the lock alone.
- **Writer preference.** Once a writer waits, threads that do not already hold the lock wait
  behind it, so a stream of readers cannot starve writers. The price is the converse: under
  a continuous stream of writers, new readers wait until it pauses. Waiting writers enter one
  at a time, in no promised order.
- **Re-entrant by thread.** The lock counts, per thread, how many times that thread holds it.
  A thread holding the read lock may take it again even while a writer waits (the writer is
  waiting for that very thread: making it queue would deadlock both, the reference's defect
  B7). A thread holding the write lock may take the write or the read lock again; each
  acquisition needs its own release, and the lock is free for others after the last one.
- **No upgrade.** A thread holding only the read lock that asks for the write lock gets
  `RuntimeError` instead of a deadlock: it would wait for itself to stop reading, and two
  such threads would wait for each other. Release the read lock first.
- **Releases are checked.** Releasing a lock the calling thread does not hold raises
  `RuntimeError`, as `threading.RLock` does; the lock's state is left untouched.

Waiting readers and waiting writers sleep on two conditions of one mutex, so a release wakes
the side that can proceed, and never only a thread that would go back to sleep.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RWLock:
    """A reader-writer lock with writer preference, re-entrant per thread.

    Use the context managers::

        with lock.read_lock():
            ...  # shared section
        with lock.write_lock():
            ...  # exclusive section

    or pair `acquire_read` with `release_read` and `acquire_write` with `release_write`, in
    the same thread.
    """

    __slots__ = (
        "_can_read",
        "_can_write",
        "_mutex",
        "_reads",
        "_writer",
        "_writer_depth",
        "_writers_waiting",
    )

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._can_read = threading.Condition(self._mutex)
        self._can_write = threading.Condition(self._mutex)
        # Thread ident → read acquisitions it holds; the number of readers is len(_reads).
        self._reads: dict[int, int] = {}
        # The thread holding the write lock (None when free), and its write acquisitions.
        self._writer: int | None = None
        self._writer_depth = 0
        self._writers_waiting = 0

    def acquire_read(self) -> None:
        """Take the lock shared, blocking while another thread writes or waits to write.

        A thread that already holds the lock (read or write) never blocks here.
        """
        me = threading.get_ident()
        with self._mutex:
            held = self._reads.get(me, 0)
            if held == 0 and self._writer != me:
                while self._writer is not None or self._writers_waiting:
                    self._can_read.wait()
            self._reads[me] = held + 1

    def release_read(self) -> None:
        """Give back one read acquisition of the calling thread.

        Raises:
            RuntimeError: the calling thread does not hold the read lock.
        """
        me = threading.get_ident()
        with self._mutex:
            held = self._reads.get(me, 0)
            if held == 0:
                raise RuntimeError("release_read: this thread does not hold the read lock")
            if held > 1:
                self._reads[me] = held - 1
                return
            del self._reads[me]
            if not self._reads:
                self._wake()

    def acquire_write(self) -> None:
        """Take the lock exclusively, blocking until no other thread reads or writes.

        A thread that already holds the write lock takes it again without blocking.

        Raises:
            RuntimeError: the calling thread holds the read lock but not the write lock
                (an upgrade, which could only deadlock).
        """
        me = threading.get_ident()
        with self._mutex:
            if self._writer == me:
                self._writer_depth += 1
                return
            if me in self._reads:
                raise RuntimeError(
                    "acquire_write: this thread holds the read lock; release it first"
                )
            self._writers_waiting += 1
            try:
                while self._writer is not None or self._reads:
                    self._can_write.wait()
            except BaseException:
                # Interrupted while waiting (KeyboardInterrupt in the main thread): if this
                # was the last waiting writer, the readers held back for it may go now.
                self._writers_waiting -= 1
                self._wake()
                raise
            self._writers_waiting -= 1
            self._writer = me
            self._writer_depth = 1

    def release_write(self) -> None:
        """Give back one write acquisition of the calling thread.

        After the last one, a waiting writer enters if there is one (once no read taken
        inside the write is still held); otherwise every waiting reader does.

        Raises:
            RuntimeError: the calling thread does not hold the write lock.
        """
        me = threading.get_ident()
        with self._mutex:
            if self._writer != me:
                raise RuntimeError("release_write: this thread does not hold the write lock")
            self._writer_depth -= 1
            if self._writer_depth:
                return
            self._writer = None
            self._wake()

    def _wake(self) -> None:
        """With the mutex held: wake whoever can now enter, one writer or every reader.

        Writers come first: while one waits, only it is woken (once the last reader leaves),
        and new readers keep waiting behind it.
        """
        if self._writer is not None:
            return
        if self._writers_waiting:
            if not self._reads:
                self._can_write.notify()
        else:
            self._can_read.notify_all()

    @contextmanager
    def read_lock(self) -> Iterator[None]:
        """Hold the read lock for the ``with`` block; released even if the block raises."""
        self.acquire_read()
        try:
            yield
        finally:
            self.release_read()

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold the write lock for the ``with`` block; released even if the block raises."""
        self.acquire_write()
        try:
            yield
        finally:
            self.release_write()

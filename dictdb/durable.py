"""Durable mode: `DictDB.open(path, fsync=...)`.

A durable database lives in a directory:

    <path>/LOCK                      held (flock) while a process has it open
    <path>/wal/<16 hex>.wal          the write-ahead log segments (`wal.framing`)
    <path>/dictdb_backup_*.json ...  snapshots and deltas, when a BackupManager writes there

Opening: take the lock (a second opener, in this or another process, is refused; the OS
releases it when the process dies, so a crash never blocks reopening); rebuild the newest
state the snapshots and deltas hold (verified, as `restore` does); read the log (a torn tail is
truncated and kept aside; damage before it is an error naming segment and offset) and replay
every operation after that state through `DictDB.apply_operation`; then log every new
operation (DDL included) before applying it.

With ``fsync="always"`` a writer returns once its statement is on disk: the database lock's
outermost release waits for the log (`_DurableLock`), so writers that finish together share
one fsync (group commit) and nobody waits while holding the lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import logging
import os
import threading
from pathlib import Path
from types import TracebackType

from dictdb._engine import Engine
from dictdb._replay import collector_paused, replay_batch
from dictdb.errors import DatabaseLockedError
from dictdb.storage.catalog import scan
from dictdb.storage.restore import restore_snapshots
from dictdb.storage.timeline import read_log_lineage, write_log_lineage
from wal import POLICIES, DurableLog, LogFailedError

log = logging.getLogger("dictdb")

WAL_DIR = "wal"
LOCK_FILE = "LOCK"


class GroupCommitLock:
    """A re-entrant lock whose outermost release waits for the log to reach `pending`.

    Writers set `pending` (through `Engine.commit`) while they hold the lock; the release
    that lets go of the lock then waits outside it, so writers that finish together share
    one fsync (group commit) and nobody waits while holding the lock. `_depth` and `pending`
    are only touched by the thread that holds the lock.
    """

    __slots__ = ("_depth", "_engine", "_lock", "_log", "pending")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        self.pending = 0
        self._log: DurableLog | None = None
        self._engine: Engine | None = None

    def attach(self, wal_log: DurableLog, engine: Engine) -> None:
        """Wait on *wal_log* from now on; a failure is reported as *engine*'s."""
        self._log = wal_log
        self._engine = engine

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(blocking, timeout):
            self._depth += 1
            return True
        return False

    def release(self) -> None:
        self._depth -= 1
        if self._depth:
            self._lock.release()
            return
        pending, self.pending = self.pending, 0
        self._lock.release()
        if pending and self._log is not None:
            try:
                self._log.wait_durable(pending)
            except LogFailedError as exc:
                assert self._engine is not None
                raise self._engine.log_failed(exc) from exc

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _lock_directory(path: Path) -> int:
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise DatabaseLockedError(
                f"{path} is already open (another process or DictDB holds {LOCK_FILE})"
            ) from None
        raise
    return fd


def open_durable(
    path: str | Path,
    fsync: str = "everysec",
    *,
    segment_size: int = 64 << 20,
    compress: bool = False,
    retain_journal: bool | None = None,
) -> tuple[Engine, Closer]:
    """Open (or create) a durable database; see `DictDB.open`.

    Returns:
        The engine, logging to ``path/wal/``, and what releases the log and the directory.
    """
    if fsync not in POLICIES:
        raise ValueError(f"fsync must be one of {', '.join(POLICIES)}, got {fsync!r}")
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    lock_fd = _lock_directory(root)
    try:
        # With fsync="always", writers wait for the disk after releasing the lock: the lock's
        # outermost release does it. Other policies keep the plain (C) lock: the wrapper
        # costs a Python call per acquire and release (benchmarks: wal_everysec_1t).
        sync_lock = GroupCommitLock() if fsync == "always" else None
        # The newest state the snapshots and deltas of the log's own history hold (its
        # lineage is recorded beside the log), or an empty database of that history.
        recorded = read_log_lineage(root / WAL_DIR)
        catalog = scan(root)
        own = None if recorded is None else catalog.history.of_lineage(recorded[0])
        if catalog.chains and (recorded is None or own is not None):
            engine = restore_snapshots(
                root, timeline=None if own is None else own.number, lock=sync_lock
            )
        elif recorded is not None:
            engine = Engine(lock=sync_lock, lineage=recorded[0], parent=recorded[1])
        else:
            engine = Engine(lock=sync_lock)
        if retain_journal is not None:  # else kept once a consumer needs them (R7)
            engine.journal_on_demand = False
            if retain_journal:
                engine.journal.retain_from_now()
        # The log's operations are replayed as each payload is read (`dictdb._replay`),
        # with the cyclic garbage collector paused (see `collector_paused`).
        with collector_paused():
            wal_log, _, torn = DurableLog.open(
                root / WAL_DIR,
                fsync=fsync,
                lock=engine.lock,
                after_lsn=engine.lsn,
                segment_size=segment_size,
                compress=compress,
                replay=functools.partial(replay_batch, engine),
            )
        try:
            if torn is not None:
                log.warning(
                    "dictdb: cut a torn log tail: %s at offset %d (%d bytes, %s), kept as %s",
                    torn.segment,
                    torn.offset,
                    torn.size,
                    torn.reason,
                    torn.saved_as,
                )
            if recorded is None or recorded != (engine.lineage, engine.parent):
                write_log_lineage(root / WAL_DIR, engine.lineage, engine.parent)
            if sync_lock is not None:
                sync_lock.attach(wal_log, engine)
            engine.attach_log(wal_log, sync_lock)
        except BaseException:
            wal_log.close()
            raise
    except BaseException:
        os.close(lock_fd)
        raise
    return engine, Closer(wal_log, lock_fd)


class Closer:
    """Closes a durable database's log and releases its directory lock, once."""

    __slots__ = ("_lock_fd", "_wal", "closed")

    def __init__(self, wal_log: DurableLog, lock_fd: int) -> None:
        self._wal = wal_log
        self._lock_fd = lock_fd
        self.closed = False

    def close(self) -> None:
        """Flush and fsync the log, close it, and release the directory. Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            self._wal.close()
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)

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
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dictdb.errors import StateError
from wal.durable import POLICIES, DurableLog, LogFailedError

if TYPE_CHECKING:
    from dictdb.database import DictDB

log = logging.getLogger("dictdb")

WAL_DIR = "wal"
LOCK_FILE = "LOCK"


class DatabaseLockedError(StateError):
    """The database directory is open in another process (or elsewhere in this one)."""


class DurableLogError(StateError, LogFailedError):
    """The durable log cannot take the operation (it failed, or the database is closed).

    After a log failure the database refuses reads and writes alike: its memory may hold a
    statement the disk does not, and nobody may observe (or back up) that. Reopen the
    directory to recover exactly what is on disk.
    """


class _DurableLock:
    """A re-entrant lock whose outermost release waits for the log to reach `_pending`.

    `_depth` and `_pending` are only touched by the thread that holds the lock.
    """

    __slots__ = ("_depth", "_lock", "_pending", "_wait")

    def __init__(self, wait: Any) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        self._pending = 0
        self._wait = wait

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
        pending, self._pending = self._pending, 0
        self._lock.release()
        if pending:
            self._wait(pending)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _durable_wait(db: DictDB, wal_log: DurableLog) -> Any:
    def wait(lsn: int) -> None:
        try:
            wal_log.wait_durable(lsn)
        except LogFailedError as exc:
            raise db._log_failed(exc) from exc

    return wait


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
    retain_journal: bool = True,
) -> DictDB:
    """Open (or create) a durable database; see `DictDB.open`."""
    from dictdb.database import DictDB
    from dictdb.storage.catalog import scan
    from dictdb.storage.restore import restore_snapshots

    if fsync not in POLICIES:
        raise ValueError(f"fsync must be one of {', '.join(POLICIES)}, got {fsync!r}")
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    lock_fd = _lock_directory(root)
    try:
        # The newest state the snapshots and deltas hold, or an empty database.
        db = restore_snapshots(root) if scan(root).chains else DictDB()
        db._journal.retain = retain_journal
        base = db.lsn
        wal_log, ops, torn = DurableLog.open(
            root / WAL_DIR,
            fsync=fsync,
            lock=None,
            after_lsn=base,
            segment_size=segment_size,
            compress=compress,
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
            db.replay(ops)
            if fsync == "always":
                # Writers wait for the disk after releasing the lock: the lock's outermost
                # release does it. Other policies keep the plain (C) lock: the wrapper costs
                # ~0.8 µs per statement, which matters when no fsync is waited for.
                lock = _DurableLock(_durable_wait(db, wal_log))
                db._lock = lock  # type: ignore[assignment]
                db._journal._lock = lock  # type: ignore[assignment]
            wal_log._owner_lock = db._lock
            db._wal = wal_log
            db._wal_sync = fsync == "always"
            db._closer = _Closer(wal_log, lock_fd)
        except BaseException:
            wal_log.close()
            raise
    except BaseException:
        os.close(lock_fd)
        raise
    return db


class _Closer:
    __slots__ = ("_lock_fd", "_wal", "closed")

    def __init__(self, wal_log: DurableLog, lock_fd: int) -> None:
        self._wal = wal_log
        self._lock_fd = lock_fd
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._wal.close()
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)

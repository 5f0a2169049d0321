"""BackupManager: periodic, on-demand and incremental backups, as the seed guide describes.

Files land in one directory under the seed's names (`dictdb.storage.catalog`). Full
snapshots and deltas come from `dictdb.storage.persist`, so every file appears atomically,
carries a checksum and a digest, and a delta holds exactly the operations up to its cut.

Threads: one worker thread runs the periodic schedule (`start`) and the trailing backups asked
for by `notify_change`; it catches every error, reports it and keeps going. Backups are
serialized by one lock, whoever runs them (the worker or a caller of `backup_now`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from dictdb._engine import Engine, HasEngine
from dictdb.errors import StateError
from dictdb.storage import persist
from dictdb.storage.archive import LogArchiver, trim_shipped
from dictdb.storage.catalog import Chain, next_free_name, scan
from dictdb.storage.names import KEY_INDEX_SUFFIX
from dictdb.storage.target import Located, Place, as_target
from dictdb.storage.timeline import register
from wal import fsync_directory

log = logging.getLogger("dictdb")

FailureCallback = Callable[[BaseException, int], object]
_NAME_RETRIES: Final = 1000
#: Seconds after which a temp file left by an interrupted write is removed by the next backup:
#: far longer than any write takes (a writer holds its temp file for one file's write).
STALE_TEMP_AGE: Final = 3600.0
#: Temp files of the atomic writes of snapshots, deltas and timelines (`dictdb._atomic`).
_TEMP: Final = re.compile(r"^\.dictdb_(backup|delta|timeline)_.*\.tmp$")


def _positive(name: str, value: object, *, integer: bool = False) -> None:
    ok_type = type(value) is int if integer else type(value) in (int, float)
    # Finite and within what threading can wait for: an infinite interval would overflow the
    # worker's timed wait.
    if not ok_type or not 0 < value <= threading.TIMEOUT_MAX:  # type: ignore[operator]
        kind = "an int" if integer else "a number"
        raise ValueError(
            f"{name} must be {kind} > 0 and <= {threading.TIMEOUT_MAX:.0f}, got {value!r}"
        )


class BackupManager:
    """Automatic, periodic and incremental backups of one database into one directory.

    Args:
        db: the database.
        backup_dir: the directory (created if missing), a storage target, or a URL
            (``s3://bucket/prefix``, ``gs://``, ``az://``, ``memory://``; objects are named
            like the files).
        backup_interval: seconds between periodic backups once `start` is called.
        file_format: ``"json"`` or ``"pickle"``; deltas use it too.
        min_backup_interval: the least time, in seconds, between two backups triggered by
            `notify_change`; notifications inside that window are coalesced into one backup
            at its end, never dropped.
        on_backup_failure: called as ``on_backup_failure(error, consecutive_failures)`` after
            each failed backup; an exception it raises is logged and ignored.
        incremental: write deltas between full snapshots (a database made with
            ``retain_journal=False`` keeps no journal to cut deltas from: full snapshots then).
        max_deltas_before_full: in incremental mode, after this many deltas the next backup is
            a full snapshot.
        compression: None or ``"zstd"`` (file names gain ``.zst``).
        keep_chains: retention: keep only the newest *keep_chains* chains (a full snapshot
            and its deltas); None keeps all.
        keep_for: retention: keep only chains whose newest file is younger than this many
            seconds; None keeps all. The newest restorable chain is never deleted.
        storage_options: for a URL, passed to fsspec; credentials otherwise come from the
            backend's standard configuration (for S3: ``AWS_ACCESS_KEY_ID``, ...).
        archive_interval: for a durable database backed up elsewhere than its own
            directory, the log is shipped to the target's ``wal/`` at most this many seconds
            behind the disk while the manager is started (`dictdb.storage.archive`).

    Raises:
        ValueError: an option out of range or an unknown format (at construction, not at
            the first backup).
        OSError: the directory cannot be created or is not a directory.
    """

    def __init__(
        self,
        db: HasEngine,
        backup_dir: Place,
        backup_interval: float = 300,
        file_format: str = "json",
        min_backup_interval: float = 5.0,
        on_backup_failure: FailureCallback | None = None,
        incremental: bool = False,
        max_deltas_before_full: int = 10,
        *,
        compression: str | None = None,
        keep_chains: int | None = None,
        keep_for: float | None = None,
        storage_options: dict[str, Any] | None = None,
        archive_interval: float = 1.0,
    ) -> None:
        engine = getattr(db, "engine", None)
        if not isinstance(engine, Engine):
            raise TypeError(f"db must be a DictDB, got {type(db).__name__}")
        _positive("backup_interval", backup_interval)
        if type(min_backup_interval) not in (int, float) or not (
            0 <= min_backup_interval <= threading.TIMEOUT_MAX
        ):
            raise ValueError(
                f"min_backup_interval must be >= 0 and finite, got {min_backup_interval!r}"
            )
        _positive("max_deltas_before_full", max_deltas_before_full, integer=True)
        _positive("archive_interval", archive_interval)
        if keep_chains is not None:
            _positive("keep_chains", keep_chains, integer=True)
        if keep_for is not None:
            _positive("keep_for", keep_for)
        if on_backup_failure is not None and not callable(on_backup_failure):
            raise TypeError("on_backup_failure must be callable")
        self.db = db
        self._engine = engine
        # Deltas are cut from the journal: operations are kept from the first full backup,
        # the chain's base, on (R7); none before it, which the full backup holds anyway.
        self.target = as_target(backup_dir, storage_options)
        self.backup_dir = self.target.describe()
        self.backup_interval = float(backup_interval)
        self.file_format = persist.check_format(file_format)
        self.min_backup_interval = float(min_backup_interval)
        self.on_backup_failure = on_backup_failure
        self.incremental = bool(incremental)
        self.max_deltas_before_full = max_deltas_before_full
        self.compression = persist.check_compression(compression)
        self.keep_chains = keep_chains
        self.keep_for = keep_for
        self.archive_interval = float(archive_interval)
        self._archiver: LogArchiver | None = None
        self._local = self.target.local_directory()
        if self._local is not None:
            self._local.mkdir(parents=True, exist_ok=True)
            if not self._local.is_dir():
                raise NotADirectoryError(f"backup_dir {self._local} is not a directory")

        self._backup_lock = threading.Lock()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._periodic = False
        self._next_periodic = 0.0
        self._pending_since: float | None = None
        self._last_attempt_mono = float("-inf")

        self._consecutive_failures = 0
        self._deltas_since_full = 0
        self._base_lsn: int | None = None  # the LSN of the last file this manager wrote
        self._base_full: str | None = None  # the full snapshot its chain starts with
        self._timeline: int | None = None  # the history's timeline number in the target
        self.last_success: float | None = None
        self.last_error: BaseException | None = None
        self.last_backup: Path | None = None

    # -- the seed's properties ---------------------------------------------------------------

    @property
    def consecutive_failures(self) -> int:
        """Failed backups since the last success."""
        return self._consecutive_failures

    @property
    def deltas_since_full(self) -> int:
        """Deltas written since the last full snapshot."""
        return self._deltas_since_full

    @property
    def running(self) -> bool:
        """Whether the periodic schedule is on."""
        return self._periodic and self._thread is not None and self._thread.is_alive()

    # -- lifecycle -------------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        # Called with self._cond held.
        if self._thread is None or not self._thread.is_alive():
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="dictdb-backup", daemon=True)
            self._thread.start()

    def start(self) -> None:
        """Start periodic backups (the first one after `backup_interval`), and the log's
        shipping when it applies (see `archive_interval`). Idempotent."""
        with self._cond:
            if not self._periodic:
                self._periodic = True
                self._next_periodic = time.monotonic() + self.backup_interval
            self._ensure_worker()
            self._cond.notify_all()
            if self._archiver is None and self._ships_log():
                self._archiver = LogArchiver(
                    self._engine, self.target, self.archive_interval, self._archive_failed
                )
                self._archiver.start()

    def _ships_log(self) -> bool:
        # A durable database's log goes to targets other than its own directory.
        sink = self._engine.sink
        if sink is None:
            return False
        if self._local is None:
            return True
        try:
            return sink.directory.resolve().parent != self._local.resolve()
        except OSError:
            return True

    def _archive_failed(self, exc: BaseException) -> None:
        with self._backup_lock:
            self._consecutive_failures += 1
            self.last_error = exc
            count = self._consecutive_failures
        self._report_failure(exc, count)

    def ship_log(self) -> int | None:
        """Ship the log now (a started manager of a durable database backed up elsewhere);
        returns the LSN shipped up to, or None when the log is not shipped."""
        archiver = self._archiver
        return None if archiver is None else archiver.ship()

    def stop(self, final_backup: bool = True, timeout: float | None = None) -> None:
        """Stop the schedule, wait for a backup in flight, then optionally back up what is new.

        Idempotent; safe before `start`.

        Args:
            final_backup: write one last backup (per the mode) if anything changed since the
                last one, so that nothing written before `stop` is left out.
            timeout: the longest wait for the worker thread, in seconds (None: no limit).
        """
        with self._cond:
            self._stopping = True
            self._periodic = False
            self._pending_since = None
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            if self._thread is thread:
                self._thread = None
            archiver, self._archiver = self._archiver, None
        if archiver is not None:
            archiver.stop()  # ships what is durable first
        if final_backup and self._changed_since_last_backup():
            self.backup_now()

    def __enter__(self) -> BackupManager:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def notify_change(self) -> None:
        """Ask for a backup soon: within `min_backup_interval` of the previous one.

        Returns at once (the backup runs on the worker thread). Notifications inside the
        window are coalesced into one backup at the window's end.
        """
        with self._cond:
            if self._pending_since is None:
                self._pending_since = time.monotonic()
            self._ensure_worker()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            try:
                if not self._wait_until_due():
                    return
            except BaseException as exc:  # the worker never dies
                log.exception("dictdb backup worker: unexpected error while waiting")
                self._record_failure(exc)
                time.sleep(0.1)
                continue
            failures = self._consecutive_failures
            try:
                if self._changed_since_last_backup():
                    self.backup_now()
            except BaseException as exc:  # the worker never dies
                log.exception("dictdb backup worker: unexpected error")
                self._record_failure(exc)
            if self._consecutive_failures > failures:
                # A failed backup is retried (after the notify window, at least a second),
                # so a notification is never lost to a transient error.
                with self._cond:
                    if self._pending_since is None:
                        self._pending_since = time.monotonic()

    def _wait_until_due(self) -> bool:
        # Returns False when stopping; True when a backup is due.
        with self._cond:
            while True:
                if self._stopping:
                    return False
                now = time.monotonic()
                due = []
                if self._periodic:
                    due.append(self._next_periodic)
                if self._pending_since is not None:
                    due.append(self._last_attempt_mono + self._notify_gap())
                if due and min(due) <= now:
                    break
                wait = None if not due else min(min(due) - now, threading.TIMEOUT_MAX)
                self._cond.wait(wait)
            if self._periodic and self._next_periodic <= now:
                self._next_periodic = now + self.backup_interval
            self._pending_since = None
            return True

    def _notify_gap(self) -> float:
        # After a failure, wait at least a second before the retry: no busy loop.
        if self._consecutive_failures:
            return max(self.min_backup_interval, 1.0)
        return self.min_backup_interval

    def _changed_since_last_backup(self) -> bool:
        return self._base_lsn is None or self._engine.lsn != self._base_lsn

    # -- backups -----------------------------------------------------------------------------

    def backup_now(self) -> Path | None:
        """Back up according to the mode: a full snapshot, or in incremental mode a delta
        (a full one when there is no base yet or `max_deltas_before_full` is reached).

        Returns:
            The file written, or None (nothing new for a delta, or the backup failed: see
            `consecutive_failures` and `last_error`).
        """
        return self._backup("auto" if self.incremental else "full")

    def backup_full(self) -> Path | None:
        """Write a full snapshot now, whatever the mode; it starts a new delta chain.

        Returns:
            The file written, or None if the backup failed.
        """
        return self._backup("full")

    def backup_delta(self) -> Path | None:
        """Write the changes since the last backup as a delta now.

        Without a base full snapshot from this manager still on disk (or if the database's
        chain moved elsewhere), a full snapshot is written instead, so every delta restores.

        Returns:
            The file written, or None if nothing changed or the backup failed.
        """
        return self._backup("delta")

    def _backup(self, want: str) -> Path | None:
        failure: BaseException | None = None
        path: Path | None = None
        count = 0
        with self._backup_lock:
            due_full = want == "auto" and self._deltas_since_full >= self.max_deltas_before_full
            kind = "full" if want == "full" or due_full or not self._chain_intact() else "delta"
            with self._cond:
                self._last_attempt_mono = time.monotonic()
            try:
                path = self._write(kind)
            except Exception as exc:
                failure = exc
                self._consecutive_failures += 1
                self.last_error = exc
                count = self._consecutive_failures
            else:
                if path is not None:
                    if kind == "full":
                        self._deltas_since_full = 0
                    else:
                        self._deltas_since_full += 1
                    self._record_success(path)
                    if kind == "full":
                        self._apply_retention()
        # The callback runs outside the lock: it may call backup_now() or stop().
        if failure is not None:
            self._report_failure(failure, count)
        return path

    def _chain_intact(self) -> bool:
        # A delta may follow only this manager's last file, if the database's cursor is still
        # there and the chain's full snapshot is still on disk.
        cursor = self._engine.cursor
        return (
            self._engine.journal.retain  # deltas are cut from the journal; without it, fulls
            and self._base_lsn is not None
            and cursor is not None
            and cursor.lsn == self._base_lsn
            and self._base_full is not None
            and any(e.name == self._base_full for e in self.target.list())
        )

    def _write(self, kind: str) -> Path | None:
        # Returns None only for a delta with nothing to write.
        db = self._engine
        fmt, comp = self.file_format, self.compression  # one consistent pair per file
        if self._local is not None:
            self._local.mkdir(parents=True, exist_ok=True)
        if self._timeline is None:
            self._timeline = self._register_timeline()
            self._remove_stale_temps()
        timeline = self._timeline
        for _ in range(_NAME_RETRIES):
            name = next_free_name(self.target, kind, fmt, comp, time.time())
            where = Located(self.target, name)
            try:
                if kind == "full":
                    path = persist.save(
                        db, where, fmt, comp, overwrite=False, as_base=True, timeline=timeline
                    )
                    # The snapshot is this chain's base only if the database's cursor is
                    # at it (another writer may have moved it meanwhile).
                    lsn = persist.read_header(where)["lsn"]
                    cursor = db.cursor
                    based = cursor is not None and cursor.lsn == lsn
                    self._base_lsn = lsn if based else None
                    self._base_full = name if based else None
                    return path
                delta = persist.save_delta(db, where, fmt, comp, overwrite=False, timeline=timeline)
                if delta is None:
                    return None
            except FileExistsError:
                continue  # another writer took the name between the check and the link
            cursor = db.cursor
            self._base_lsn = None if cursor is None else cursor.lsn
            return delta
        raise StateError(f"no free backup file name in {self.backup_dir}")

    def _register_timeline(self) -> int:
        # The history's timeline in the target, registered before its first file there
        # (`dictdb.storage.timeline`): a fork takes the next number, never a clock's word.
        catalog = scan(self.target)
        engine = self._engine
        with engine.lock:
            lineage, parent = engine.lineage, engine.parent
        return register(self.target, catalog.history, lineage, parent)

    def _remove_stale_temps(self) -> None:
        # Temp files of interrupted writes (a killed process leaves them): removed once older
        # than any running writer could still be writing (`STALE_TEMP_AGE`), never younger.
        horizon = time.time() - STALE_TEMP_AGE
        for entry in self.target.list():
            if entry.regular and _TEMP.match(entry.name) and 0 < entry.mtime < horizon:
                self.target.delete(entry.name)
                log.info("dictdb: removed a stale temp file %s", entry.name)

    def _record_success(self, path: Path) -> None:
        self._consecutive_failures = 0
        self.last_success = time.time()
        self.last_backup = path
        self.last_error = None

    def _record_failure(self, exc: BaseException) -> None:
        with self._backup_lock:
            self._consecutive_failures += 1
            self.last_error = exc
            count = self._consecutive_failures
        self._report_failure(exc, count)

    def _report_failure(self, exc: BaseException, count: int) -> None:
        log.error("dictdb backup failed (%d in a row): %s", count, exc)
        callback = self.on_backup_failure
        if callback is not None:
            try:
                callback(exc, count)
            except Exception:
                log.exception("dictdb on_backup_failure callback raised")

    # -- retention ---------------------------------------------------------------------------

    def _apply_retention(self) -> None:
        if self.keep_chains is None and self.keep_for is None:
            return
        try:
            chains = list(scan(self.target).chains)
        except OSError as exc:
            log.warning("dictdb retention: cannot scan %s: %s", self.backup_dir, exc)
            return
        if len(chains) <= 1:
            return
        newest = chains[-1]
        keep: list[Chain] = [newest]
        candidates = chains[:-1]
        if self.keep_chains is not None:
            candidates = candidates[max(0, len(candidates) - (self.keep_chains - 1)) :]
        if self.keep_for is not None:
            horizon = time.time() - self.keep_for
            candidates = [c for c in candidates if c.files[-1].written_ts >= horizon]
        keep.extend(candidates)
        kept = {f.path for c in keep for f in c.files}
        removed = 0
        for chain in chains:
            # Newest delta first, the full snapshot last: a reader listing meanwhile sees the
            # chain shortened, never deltas without the snapshot they follow.
            for f in reversed(chain.files):
                if f.path not in kept:
                    self.target.delete(f.path.name)
                    if self._local is not None:  # its key index, if `dictdb index` wrote one
                        self.target.delete(f.path.name + KEY_INDEX_SUFFIX)
                    removed += 1
        if removed and self._local is not None:
            fsync_directory(self._local)
            log.info("dictdb retention: removed %d files from %s", removed, self.backup_dir)
        self._trim_log(min(c.full.last_lsn for c in keep))

    def _trim_log(self, oldest_kept_lsn: int) -> None:
        # A durable database logging into this directory keeps its log back to the oldest
        # retained snapshot (op-exact restore across the retained window), and no further.
        wal_log = self._engine.sink
        if wal_log is None:
            return
        if self._ships_log():
            # The shipped log: pieces wholly before the oldest retained snapshot go.
            removed = trim_shipped(self.target, oldest_kept_lsn)
            if removed:
                log.info("dictdb retention: removed %d shipped log pieces", removed)
            return
        dropped = wal_log.drop_segments_through(oldest_kept_lsn)
        if dropped:
            log.info("dictdb retention: removed %d log segments", len(dropped))

    def health(self) -> dict[str, object]:
        """A snapshot of the manager's state for health checks."""
        return {
            "running": self.running,
            "consecutive_failures": self._consecutive_failures,
            "deltas_since_full": self._deltas_since_full,
            "last_success": self.last_success,
            "last_error": None if self.last_error is None else repr(self.last_error),
            "last_backup": None if self.last_backup is None else str(self.last_backup),
            "base_lsn": self._base_lsn,
        }

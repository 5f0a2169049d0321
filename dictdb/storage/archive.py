"""Shipping a durable database's log to a backup target, at most `interval` seconds behind.

A `BackupManager` whose database is durable (`DictDB.open`) and whose target is not the
database's own directory runs a `LogArchiver` while it is started: every `interval` seconds
it reads what the log made durable since the last shipment (`wal.LogTail`: whole frames, byte
for byte) and stores it as one *piece* under the target's ``wal/``: a standalone segment named
like a local one (its first LSN as 16 hex digits, ``.wal``), written with ``overwrite=False``.
Beside the pieces, ``wal/LINEAGE`` records the history they belong to, exactly as in a durable
directory. So a target's ``wal/`` reads back like a durable directory's log, and restore
reaches every shipped operation from the target alone.

Only operations on disk locally are shipped (never past `durable_lsn`), so a target is never
ahead of the log it copies. A failed shipment keeps its piece and is retried at the next tick
(the failure is reported through the manager's `on_backup_failure`); while the target is down
the log waits on local disk, so memory does not grow. A target whose ``wal/`` belongs to
another history is not shipped to (one shipped log per target; a fork's snapshots and deltas
still go there).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from itertools import pairwise
from typing import TYPE_CHECKING, Final

from dictdb.errors import CorruptFileError
from dictdb.storage.target import Target
from dictdb.storage.timeline import LOG_LINEAGE, log_lineage_bytes, parse_log_lineage
from wal import (
    LogTail,
    Piece,
    WALError,
    list_segments,
    parse_segment_name,
    read_wal,
    segment_name,
)

if TYPE_CHECKING:
    from pathlib import Path

    from dictdb._engine import Engine

log = logging.getLogger("dictdb")

#: The shipped log's folder in a target (a durable directory's is the same).
WAL_FOLDER: Final = "wal"


class LogArchiver:
    """Ships a durable engine's log to *target*'s ``wal/`` every *interval* seconds.

    Args:
        engine: the durable engine (its sink is the log).
        target: where the backups go.
        interval: the most seconds shipping lags behind the disk.
        on_failure: called with each failed shipment's error.
    """

    def __init__(
        self,
        engine: Engine,
        target: Target,
        interval: float,
        on_failure: Callable[[BaseException], None],
    ) -> None:
        sink = engine.sink
        assert sink is not None
        self._engine = engine
        self._log_dir: Path = sink.directory
        self._wal = target.child(WAL_FOLDER)
        self._interval = interval
        self._on_failure = on_failure
        self._tail: LogTail | None = None
        self._pending: Piece | None = None
        self._disabled = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one shipment at a time
        self.shipped_lsn = 0
        self.failures = 0

    def start(self) -> None:
        """Start shipping in the background. Idempotent."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="dictdb-archive", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop, after one last shipment of what is durable."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()
        self.ship()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.ship()

    def ship(self) -> int:
        """Ship what the log made durable since the last shipment; returns the LSN shipped
        up to (failures are reported, never raised)."""
        with self._lock:
            try:
                self._ship()
            except Exception as exc:
                self.failures += 1
                self._on_failure(exc)
            return self.shipped_lsn

    def _ship(self) -> None:
        if self._disabled:
            return
        sink = self._engine.sink
        if sink is None:
            return
        if self._tail is None:
            start = self._begin()
            if start is None:
                return
            self._tail = LogTail(self._log_dir, start)
            self.shipped_lsn = start
        while True:
            piece = self._pending or self._tail.read(sink.durable_lsn)
            if piece is None:
                return
            self._pending = piece
            self._store(piece)
            self._pending = None
            self.shipped_lsn = piece.last_lsn

    def _begin(self) -> int | None:
        # Where shipping resumes: after the last shipped piece of this history, else before
        # the oldest operation the local log holds. None: the target's log is another's.
        engine = self._engine
        with engine.lock:
            lineage, parent = engine.lineage, engine.parent
        names = {e.name for e in self._wal.list() if e.regular}
        if LOG_LINEAGE in names:
            with self._wal.open(LOG_LINEAGE) as handle:
                recorded = parse_log_lineage(self._wal.describe(LOG_LINEAGE), handle.read())
            if recorded[0] != lineage:
                log.warning(
                    "dictdb: not shipping the log to %s: it holds another history's log",
                    self._wal.describe(),
                )
                self._disabled = True
                return None
        else:
            writer = self._wal.create(LOG_LINEAGE, overwrite=False)
            writer.write(log_lineage_bytes(lineage, parent))
            writer.publish()
        firsts = sorted(n for n in (parse_segment_name(name) for name in names) if n is not None)
        local = list_segments(self._log_dir)
        oldest_local = local[0][0] - 1 if local else engine.lsn
        if not firsts:
            return oldest_local
        last = self._last_lsn_of(firsts[-1])
        if last < oldest_local:
            log.warning(
                "dictdb: the shipped log in %s ends at LSN %d; the local log starts after %d: "
                "operations in between are not shipped",
                self._wal.describe(),
                last,
                oldest_local,
            )
            return oldest_local
        return last

    def _last_lsn_of(self, first: int) -> int:
        # The last operation of the newest shipped piece (read back and verified).
        import tempfile
        from pathlib import Path

        name = segment_name(first)
        with tempfile.TemporaryDirectory(prefix="dictdb-piece-") as tmp:
            with self._wal.open(name) as handle:
                (Path(tmp) / name).write_bytes(handle.read())
            ops, _, _ = read_wal(Path(tmp), repair=False)
        if not ops:
            raise CorruptFileError(self._wal.describe(name), "a shipped piece holds nothing")
        return ops[-1].lsn

    def _store(self, piece: Piece) -> None:
        name = segment_name(piece.first_lsn)
        writer = self._wal.create(name, overwrite=False)
        try:
            writer.write(piece.data)
        except BaseException:
            writer.discard()
            raise
        try:
            writer.publish()
        except FileExistsError:
            # Shipped before (a retry after a lost answer): the same bytes, or damage.
            with self._wal.open(name) as handle:
                if handle.read() != piece.data:
                    raise WALError(f"{self._wal.describe(name)} holds other operations") from None


def trim_shipped(target: Target, oldest_kept_lsn: int) -> int:
    """Delete the shipped pieces whose operations all lie at or before *oldest_kept_lsn*
    (the oldest retained snapshot's LSN: restore never needs them); returns how many."""
    wal = target.child(WAL_FOLDER)
    firsts = sorted(
        (first, e.name)
        for e in wal.list()
        if e.regular and (first := parse_segment_name(e.name)) is not None
    )
    removed = 0
    for (_, name), (following, _) in pairwise(firsts):
        if following - 1 <= oldest_kept_lsn:  # the next piece starts at or before it
            wal.delete(name)
            removed += 1
    return removed

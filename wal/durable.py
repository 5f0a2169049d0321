"""The durable log: operations framed into segment files, fsynced by policy.

Policies:

- ``always``: a writer returns only once its operations are on disk. Writers that wait at the
  same time share one write and one fsync (group commit): the first waiter becomes the
  leader, takes everything pending, writes and fsyncs it, and wakes the others.
- ``everysec``: a background thread writes what is pending every `flush_interval` seconds
  (default 0.05: waking more often costs writers GIL hand-offs) and fsyncs at most once a
  second: a crash of the machine loses at most about one second; a crash of the process loses
  at most `flush_interval`.
- ``off``: the background thread writes, the OS decides when data reaches the disk (fsync
  only on rotation and close).

The writer API is `submit` (a statement of several operations) and `submit_one` (a statement
of one operation, the common case), the only ways in: the owner calls them holding its own
lock (passed as *lock*), so statements enter the log whole and in LSN order. Submitting is
cheap (list appends). Once the pending statements hold `BATCH` operations, the submitting
writer encodes them: their objects are still in the CPU cache then, and encoding them ~50 ms
later on the flusher thread, with the GIL held all the same, cost about twice as much. Each
batch joins the payload of the next flush, one JSON array (one frame of at most
`FRAME_TARGET` bytes). The rest of the encoding, the framing and the I/O happen on the
flusher or leader thread, which writes the frames of a flush with one `os.writev` (each call
that releases the GIL costs the flusher up to a switch interval to get it back from a busy
writer).

After a write or fsync failure the log is *failed*: every later `submit`, `submit_one` and
`wait_durable` raises `LogFailedError` (the page cache can no longer be trusted; reopen to
recover from what is on disk).

Segments rotate when they exceed *segment_size*; a new segment's file and its directory entry
are fsynced before any frame goes into it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any, Final, TypeAlias

from wal.directory import fsync_directory
from wal.errors import WALError
from wal.framing import WIDTH, Batch, encode_flat, encode_header, frame_parts, segment_name
from wal.keyindex import index_path
from wal.operation import Operation, OpTuple
from wal.recovery import SegmentInfo, TornTail, list_segments, read_wal, replay_wal

POLICIES: Final = ("always", "everysec", "off")

Buffer: TypeAlias = bytes | bytearray | memoryview

#: A flush writes what writers encoded as one frame, or as several of at most this size
#: (unless one statement alone is larger) when there is more: a frame is checked and decoded
#: whole when the log is read. Frames that size (~2,800 plain inserts) decode while their
#: objects are still in the CPU cache: replaying a log of 1M inserts cost ~1.3 µs per
#: operation (CPU) with frames of 64 KiB to 512 KiB, 1.4 with 1 MiB, 1.7 with 8 MiB (the
#: size before); writing them cost no more.
FRAME_TARGET: Final = 256 << 10

#: Pending operations a writer encodes at once (see the module docstring): 256 plain inserts
#: are ~30 KB of payload, ~30 µs on that writer every 256th statement.
BATCH: Final = 256

#: `BATCH` operations' worth of pending fields (`WIDTH` per operation).
BATCH_FIELDS: Final = BATCH * WIDTH

#: Buffers per `os.writev` call (the usual IOV_MAX).
_IOV_MAX: Final = 1024


class LogFailedError(WALError):
    """The durable log hit an I/O error; nothing more can be made durable through it."""


class DurableLog:
    """Append-only, segmented, checksummed operation log with an fsync policy.

    Use `DurableLog.open`, which recovers what the directory holds first.
    """

    #: Seconds a group-commit leader waits for the writers it just woke (see `wait_durable`).
    #: 0 still lets go of the GIL once (`time.sleep(0)`), which is what matters: the woken
    #: writers run until they wait for the log, and then the leader goes on. Measured with
    #: 8 threads: ~3.0-3.7x the throughput of one thread (2.4-2.7x without it); real delays
    #: of 20-100 µs did no better.
    GROUP_COMMIT_DELAY: float = 0.0

    def __init__(
        self,
        directory: Path,
        segments: list[SegmentInfo],
        last_lsn: int,
        *,
        fsync: str,
        lock: Any,
        segment_size: int,
        compress: bool,
        flush_interval: float,
    ) -> None:
        self.directory = directory
        self.policy = fsync
        self.segment_size = segment_size
        self.compress = compress
        self.flush_interval = flush_interval
        self._owner_lock = lock  # guards _pending, _tagged, _encoded* (held by submitters)
        # Pending operations, flat (`WIDTH` fields each, like the payload): one tracked list,
        # not one tuple per operation for the garbage collector to walk; and the positions
        # in it of those whose images may need tags. Both lists live as long as the log and
        # are emptied in place, never replaced: a list made for each batch stayed young, so
        # every young-generation collection (one per ~200 inserts) walked the up to 2,048
        # fields it held; measured ~60 ns per insert. An old list is not walked by them.
        self._pending: list[Any] = []
        self._tagged: list[int] = []
        # Statements encoded by their writers, not yet written, in LSN order and before
        # `_pending` (guarded like it): one payload (a JSON array) of operations
        # _encoded_first.._encoded_last that grows batch by batch (see `encode_pending`),
        # and the earlier payloads set aside at `FRAME_TARGET`, as (first, last, payload).
        self._encoded: list[tuple[int, int, Buffer]] = []
        self._encoded_data = bytearray()
        self._encoded_first = self._encoded_last = 0
        self._cond = threading.Condition()  # guards the fields below
        self._io_lock = threading.Lock()  # one writer of the file at a time
        self._durable_lsn = last_lsn
        self._written_lsn = last_lsn
        self._flushing = False
        self._sleepers = 0  # threads waiting in `wait_durable` while another one writes
        self._crowd = 0  # how many were waiting when the last group commit ended
        self._failed: BaseException | None = None
        self._closing = False  # no new statements (set first by close)
        # True once the log takes no more statements (it failed, or it is closing): then
        # `_refusal()` says why.
        self._refusing = False
        self._closed = False
        self._last_fsync = time.monotonic()
        self._fd: int | None = None
        self._segment_first = 0
        self._segment_bytes = 0
        self._segments = list(segments)
        if segments and segments[-1].last_lsn == last_lsn:
            tail = segments[-1]
            self._fd = os.open(tail.path, os.O_WRONLY | os.O_APPEND)
            self._segment_first = tail.first_lsn
            self._segment_bytes = tail.valid_size
        self._thread: threading.Thread | None = None
        if fsync != "always":
            self._thread = threading.Thread(target=self._flusher, name="dictdb-wal", daemon=True)
            self._thread.start()

    @classmethod
    def open(
        cls,
        directory: str | Path,
        *,
        fsync: str = "everysec",
        lock: Any = None,
        after_lsn: int = 0,
        base_lsn: int | None = None,
        segment_size: int = 64 << 20,
        compress: bool = False,
        flush_interval: float = 0.05,
        replay: Callable[[Batch], object] | None = None,
    ) -> tuple[DurableLog, list[Operation], TornTail | None]:
        """Recover a WAL directory (repairing a torn tail) and open it for appending.

        Args:
            directory: the WAL directory (created if missing).
            fsync: ``"always"``, ``"everysec"`` or ``"off"``.
            lock: the owner's lock, held by the owner around `submit` (default: a new one).
            after_lsn: operations up to this LSN are already in the owner's state.
            base_lsn: the LSN the owner's state is at before replaying (None: after_lsn).
                When the log ends before it (the state came from a snapshot that is newer
                than the log), the next segment starts right after the owner's state.
            segment_size: rotate segments past this many bytes.
            compress: zstd-compress frame payloads.
            flush_interval: seconds between background writes (everysec, off).
            replay: when given, takes the operations after *after_lsn* as they are read, one
                decoded payload (`wal.framing.Batch`) at a time, in LSN order, instead of
                their being returned (see `wal.recovery.replay_wal`): what it raises
                propagates, and the log is not opened.

        Returns:
            The log, the operations after *after_lsn* to replay (none when *replay* took
            them), and the torn tail cut (if any).

        Raises:
            ValueError: an unknown policy or bad sizes.
            RecoveryError: damage before the tail, a gap, or an overlap.
        """
        if fsync not in POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(POLICIES)}, got {fsync!r}")
        if segment_size < 4096:
            raise ValueError(f"segment_size must be >= 4096, got {segment_size}")
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        ops: list[Operation] = []
        if replay is None:
            ops, segments, torn = read_wal(path, repair=True, after_lsn=after_lsn)
            count = len(ops)
            if ops and ops[0].lsn != after_lsn + 1:
                raise WALError(
                    f"the log resumes at LSN {ops[0].lsn} but the state is at {after_lsn}: "
                    "operations in between are missing"
                )
        else:
            count, segments, torn = replay_wal(path, replay, repair=True, after_lsn=after_lsn)
        log_last = segments[-1].last_lsn if segments else 0
        state_lsn = after_lsn if base_lsn is None else base_lsn
        last = max(log_last, state_lsn + count)
        log = cls(
            path,
            segments,
            last,
            fsync=fsync,
            lock=threading.RLock() if lock is None else lock,
            segment_size=segment_size,
            compress=compress,
            flush_interval=flush_interval,
        )
        return log, ops, torn

    # -- appending ------------------------------------------------------------------------------

    @property
    def durable_lsn(self) -> int:
        """Operations up to this LSN are on disk (fsynced)."""
        return self._durable_lsn

    @property
    def failed(self) -> BaseException | None:
        """The I/O error that failed the log, if any."""
        return self._failed

    def submit(self, ops: Sequence[OpTuple | Operation], plain: Sequence[bool]) -> None:
        """Queue one statement's operations (the caller holds the owner's lock).

        Args:
            ops: the operations, consecutive LSNs following what was submitted before.
            plain: per operation, True when its after- and before-images and its meta need
                no tags (the key is checked when the batch is encoded).

        Raises:
            LogFailedError: the log failed or is closed; nothing was queued.
        """
        if self._refusing:
            raise self._refusal()
        pending = self._pending
        base = len(pending) // WIDTH
        for op in ops:
            pending.extend(op)
        self._tagged.extend(base + i for i, p in enumerate(plain) if not p)
        if len(pending) >= BATCH_FIELDS:
            self._encode_pending()

    def submit_one(self, op: OpTuple | Operation, plain: bool) -> None:
        """`submit` for a one-operation statement (the common case; no lists to build).

        Args:
            op: the operation, its LSN following what was submitted before.
            plain: True when its after- and before-images and its meta need no tags.

        Raises:
            LogFailedError: the log failed or is closed; nothing was queued.
        """
        if self._refusing:
            raise self._refusal()
        pending = self._pending
        if not plain:
            self._tagged.append(len(pending) // WIDTH)
        pending.extend(op)
        if len(pending) >= BATCH_FIELDS:
            self._encode_pending()

    def _encode_pending(self) -> None:
        # Encode the pending statements, by the writer that submitted the last one (holding
        # the owner's lock). Raises LogFailedError when they cannot be: the log has failed.
        ops, tagged = self._pending, self._tagged
        first, last = ops[0], ops[-WIDTH]
        try:
            self._join(first, last, encode_flat(ops, tagged))
        except BaseException as exc:
            # As if the flusher had failed to encode them: the log fails (these statements,
            # and those already acknowledged in this batch, never reach the disk).
            self._fail(exc)
            raise LogFailedError(f"the durable log failed: {exc!r}") from exc
        finally:
            ops.clear()
            tagged.clear()

    def _join(self, first: int, last: int, payload: bytes) -> None:
        # The batch joins the next flush's payload: its array's items follow those before
        # (the closing bracket becomes a comma), so that a flush writes one frame, checksummed
        # in one call that lets go of the GIL, not one frame per batch; a payload that would
        # pass FRAME_TARGET is set aside as a frame first. Copied at once and the encoder's
        # bytes dropped, so that its memory is reused, still in the CPU cache, by the next
        # encoding: keeping each batch's bytes until the flush (~100 of them) made every
        # encoding write to fresh memory (125-140 ns per operation instead of 60-65).
        data = self._encoded_data
        if data and len(data) + len(payload) > FRAME_TARGET:
            self._encoded.append((self._encoded_first, self._encoded_last, data))
            self._encoded_data = data = bytearray()
        if data:
            data[-1:] = b","
            data += memoryview(payload)[1:]
        else:
            self._encoded_first = first
            data += payload
        self._encoded_last = last

    def _refusal(self) -> LogFailedError:
        # The error that refuses a statement once `_refusing` is set.
        if self._closing and self._failed is None:
            return LogFailedError("the durable log is closed")
        return LogFailedError(f"the durable log failed earlier: {self._failed!r}")

    def _take(self) -> tuple[list[tuple[int, int, Buffer]], list[Any], list[int]]:
        # What was submitted: the payloads writers encoded, as (first LSN, last LSN,
        # payload), and the operations pending after them (copied: the lists stay, see
        # `__init__`).
        with self._owner_lock:
            encoded, data = self._encoded, self._encoded_data
            if data:
                encoded.append((self._encoded_first, self._encoded_last, data))
            self._encoded, self._encoded_data = [], bytearray()
            ops, tagged = self._pending[:], self._tagged[:]
            self._pending.clear()
            self._tagged.clear()
        return encoded, ops, tagged

    def wait_durable(self, lsn: int) -> None:
        """Return once operations up to *lsn* are on disk (group commit).

        The first waiter becomes the leader: it writes and fsyncs everything pending while
        the others sleep, then wakes them. When others were waiting at the end of the
        previous commit, they are about to submit their next statements: the leader first
        lets them (`GROUP_COMMIT_DELAY`), so one fsync serves them all instead of the first
        one or two. A lone writer never waits for it.

        Raises:
            LogFailedError: the log failed before they were.
        """
        with self._cond:
            while self._durable_lsn < lsn:
                if self._failed is not None:
                    raise self._refusal()
                if self._flushing:
                    self._sleepers += 1
                    try:
                        self._cond.wait()
                    finally:
                        self._sleepers -= 1
                    continue
                self._flushing = True
                crowd = self._crowd
                self._cond.release()
                try:
                    if crowd:
                        time.sleep(self.GROUP_COMMIT_DELAY)
                    self._write_pending(sync=True)
                finally:
                    self._cond.acquire()
                    self._flushing = False
                    self._crowd = self._sleepers
                    self._cond.notify_all()
            if self._failed is not None and self._durable_lsn < lsn:
                raise self._refusal()

    def flush(self, *, sync: bool = True) -> None:
        """Write everything submitted so far (and fsync it when *sync*).

        Raises:
            LogFailedError: the log failed.
        """
        with self._cond:
            while self._flushing:
                self._cond.wait()
            self._flushing = True
        try:
            self._write_pending(sync=sync)
        finally:
            with self._cond:
                self._flushing = False
                self._cond.notify_all()
        if self._failed is not None:
            raise self._refusal()

    def _write_pending(self, *, sync: bool) -> None:
        # Called by one thread at a time (the _flushing flag). Never raises: failures are
        # recorded in self._failed.
        if self._failed is not None:
            return
        batches, ops, tagged = self._take()
        try:
            if ops:
                batches.append((ops[0], ops[-WIDTH], encode_flat(ops, tagged)))
                del ops
            with self._io_lock:
                if batches:
                    self._append_frames(batches)
                    self._written_lsn = batches[-1][1]
                if sync and self._fd is not None and self._durable_lsn < self._written_lsn:
                    os.fsync(self._fd)
                    self._last_fsync = time.monotonic()
                    with self._cond:
                        self._durable_lsn = self._written_lsn
        except BaseException as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        # The log takes nothing more; waiters learn it.
        with self._cond:
            self._failed = exc
            self._refusing = True
            self._cond.notify_all()

    def _append_frames(self, batches: list[tuple[int, int, Buffer]]) -> None:
        # One frame per payload; a segment that has reached its size is closed before the
        # next frame (named by that frame's first LSN).
        buffers: list[Buffer] = []
        for first, _, payload in batches:
            if self._fd is None or self._segment_bytes >= self.segment_size:
                if buffers:
                    assert self._fd is not None
                    _write_all(self._fd, buffers)
                    buffers = []
                self._rotate(first)
            header, body = frame_parts(payload, zstd=self.compress)
            buffers += (header, body)
            self._segment_bytes += len(header) + len(body)
        assert self._fd is not None
        _write_all(self._fd, buffers)

    def _rotate(self, first_lsn: int) -> None:
        if self._fd is not None:
            os.fsync(self._fd)  # what the old segment holds is durable before moving on
            with self._cond:
                self._durable_lsn = max(self._durable_lsn, self._written_lsn)
            os.close(self._fd)
            self._fd = None
        path = self.directory / segment_name(first_lsn)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            _write_all(fd, [encode_header(first_lsn)])
            os.fsync(fd)
            fsync_directory(self.directory)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        self._fd = fd
        self._segment_first = first_lsn
        self._segment_bytes = 0
        self._segments.append(SegmentInfo(path, first_lsn, first_lsn - 1, 0))

    def _flusher(self) -> None:
        while True:
            with self._cond:
                if self._closed or self._failed is not None:
                    return
                self._cond.wait(self.flush_interval)
                if self._closed:
                    return
                while self._flushing:
                    self._cond.wait()
                self._flushing = True
            try:
                sync = self.policy == "everysec" and time.monotonic() - self._last_fsync >= 1.0
                self._write_pending(sync=sync)
            finally:
                with self._cond:
                    self._flushing = False
                    self._cond.notify_all()

    # -- maintenance --------------------------------------------------------------------------

    def drop_segments_through(self, lsn: int) -> list[Path]:
        """Delete whole segments whose operations all have LSN <= *lsn* (never the current).

        Returns:
            The files removed.
        """
        removed: list[Path] = []
        with self._io_lock:
            listing = list_segments(self.directory)
            for (_, path), (next_first, _) in pairwise(listing):
                if next_first - 1 <= lsn:
                    path.unlink()
                    removed.append(path)
                    with contextlib.suppress(FileNotFoundError):  # its key index, a cache
                        index_path(path).unlink()
            if removed:
                fsync_directory(self.directory)
        return removed

    def close(self) -> None:
        """Write and fsync everything submitted, stop the flusher, close the file.

        Idempotent.

        Raises:
            LogFailedError: the final write failed (the log was failed).
        """
        if self._closed:
            return
        # Refuse new statements first, under the owner's lock (statements are submitted while
        # it is held, so none is half-way): everything accepted is then in the final flush.
        with self._owner_lock:
            self._closing = True
            self._refusing = True
        try:
            self.flush(sync=True)
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            if self._thread is not None:
                self._thread.join()
            with self._io_lock:
                if self._fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(self._fd)
                    self._fd = None


def _write_all(fd: int, buffers: Sequence[Buffer]) -> None:
    # All of *buffers*, in order, in as few calls as the OS takes (a write may be short).
    views = [memoryview(b) for b in buffers]
    start = 0
    while start < len(views):
        group = views[start : start + _IOV_MAX]
        written = os.writev(fd, group)
        if not written and any(group):
            raise OSError(errno.EIO, "a write to the log made no progress")
        while start < len(views) and written >= len(views[start]):
            written -= len(views[start])
            start += 1
        if written:
            views[start] = views[start][written:]

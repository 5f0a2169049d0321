"""`wal.durable.DurableLog`: appending, fsync policies, group commit, rotation, failure.

``os.fsync`` and ``os.write`` are wrapped (monkeypatch) to count, slow down, block or fail
the calls made on segment files; the wrappers tell segment files from directories and other
files by the path behind the descriptor.
"""

# The suite asserts `expected == actual` (STYLE.md), which SIM300 calls a Yoda condition.

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

import wal.durable as durable_module
from wal.durable import BATCH, FRAME_TARGET, DurableLog, LogFailedError
from wal.errors import WALError
from wal.framing import (
    HEADER_SIZE,
    WIDTH,
    decode_batch,
    encode_batch,
    encode_header,
    iter_frames,
    segment_name,
)
from wal.operation import Operation, OpTuple
from wal.recovery import list_segments, read_wal

SEGMENT_SIZE = 4096
_real_fsync = os.fsync
_real_write = os.write
_real_writev = os.writev


def op(lsn: int, value: Any = None, pad: int = 0) -> OpTuple:
    return (
        lsn,
        1000.0 + lsn,
        "insert",
        "t",
        lsn,
        {"id": lsn, "v": value, "p": "x" * pad},
        None,
        None,
    )


def fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def is_segment(fd: int) -> bool:
    return fd_path(fd).endswith(".wal")


class Calls:
    """Records ``os.fsync``/``os.write``/``os.writev`` calls on segment files; hooks can delay,
    block or fail them (a writev reaches ``before_write`` as its buffers joined)."""

    def __init__(self) -> None:
        self.fsyncs: list[tuple[str, float]] = []
        self.lock = threading.Lock()
        self.before_fsync: Callable[[int], None] | None = None
        self.before_write: Callable[[int, Any], Any] | None = None

    def fsync(self, fd: int) -> None:
        if is_segment(fd):
            if self.before_fsync is not None:
                self.before_fsync(fd)
            with self.lock:
                self.fsyncs.append((fd_path(fd), time.monotonic()))
        _real_fsync(fd)

    def write(self, fd: int, data: Any) -> int:
        if self.before_write is not None and is_segment(fd):
            result = self.before_write(fd, data)
            if result is not None:
                return int(result)
        return _real_write(fd, data)

    def writev(self, fd: int, buffers: Any) -> int:
        if self.before_write is not None and is_segment(fd):
            result = self.before_write(fd, b"".join(buffers))
            if result is not None:
                return int(result)
        return _real_writev(fd, buffers)

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.fsyncs)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    recorder = Calls()
    monkeypatch.setattr(os, "fsync", recorder.fsync)
    monkeypatch.setattr(os, "write", recorder.write)
    monkeypatch.setattr(os, "writev", recorder.writev)
    return recorder


def open_log(directory: Path, **kwargs: Any) -> tuple[DurableLog, list[Operation]]:
    kwargs.setdefault("segment_size", SEGMENT_SIZE)
    log, ops, _ = DurableLog.open(directory, **kwargs)
    return log, ops


def submit(log: DurableLog, ops: list[OpTuple]) -> None:
    with log._owner_lock:
        log.submit(ops, [True] * len(ops))


def on_disk(directory: Path) -> list[int]:
    return [o.lsn for o in read_wal(directory)[0]]


# -- opening -----------------------------------------------------------------------------------


def test_an_unknown_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync"):
        DurableLog.open(tmp_path, fsync="sometimes")


def test_a_segment_size_below_4096_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="segment_size"):
        DurableLog.open(tmp_path, segment_size=4095)


def test_opening_creates_the_directory_and_an_empty_log(tmp_path: Path) -> None:
    log, ops = open_log(tmp_path / "a" / "wal")
    assert ([], 0) == (ops, log.durable_lsn)
    log.close()
    assert (tmp_path / "a" / "wal").is_dir()


@pytest.mark.parametrize("policy", ["always", "everysec", "off"])
@pytest.mark.parametrize("compress", [False, True])
def test_appended_ops_read_back_after_close_and_reopen(
    tmp_path: Path, policy: str, compress: bool
) -> None:
    log, _ = open_log(tmp_path, fsync=policy, compress=compress)
    expected = []
    for lsn in range(1, 301, 3):
        batch = [op(lsn, value=[lsn, {"a": "é"}], pad=30), op(lsn + 1), op(lsn + 2, pad=90)]
        submit(log, batch)
        log.flush(sync=lsn % 2 == 0)
        expected.extend(batch)
    log.close()
    assert 1 < len(list_segments(tmp_path))
    log, ops = open_log(tmp_path, fsync=policy, compress=not compress)
    assert expected == [tuple(o) for o in ops]
    submit(log, [op(301)])
    log.close()
    assert list(range(1, 302)) == on_disk(tmp_path)


def test_segments_rotate_past_the_size_and_are_named_by_their_first_lsn(tmp_path: Path) -> None:
    log, _ = open_log(tmp_path, fsync="always")
    for lsn in range(1, 200):
        submit(log, [op(lsn, pad=100)])
        log.flush()
    log.close()
    _, segments, _ = read_wal(tmp_path)
    assert 3 < len(segments)
    for info in segments:
        assert segment_name(info.first_lsn) == info.path.name
        assert encode_header(info.first_lsn) == info.path.read_bytes()[:HEADER_SIZE]
    for before, after in pairwise(segments):
        assert before.last_lsn + 1 == after.first_lsn
        assert SEGMENT_SIZE <= before.valid_size < SEGMENT_SIZE + 400


def test_a_segment_is_fsynced_before_the_next_one_starts(tmp_path: Path, calls: Calls) -> None:
    log, _ = open_log(tmp_path, fsync="off", flush_interval=3600)
    for lsn in range(1, 120):
        submit(log, [op(lsn, pad=100)])
        log.flush(sync=False)
    names = [Path(p).name for p, _ in calls.fsyncs]
    segments = [p.name for _, p in list_segments(tmp_path)]
    log.close()
    # Each new segment: its header fsynced once; each rotation: the old segment fsynced
    # right before the new one's header.
    expected = [segments[0]]
    for old, new in pairwise(segments):
        expected += [old, new]
    assert expected == names


def test_base_lsn_ahead_of_the_log_starts_the_next_segment_after_the_state(tmp_path: Path) -> None:
    log, _ = open_log(tmp_path)
    submit(log, [op(1), op(2)])
    log.close()
    log, ops, _ = DurableLog.open(tmp_path, after_lsn=5, segment_size=SEGMENT_SIZE)
    assert [] == ops
    submit(log, [op(6)])
    log.close()
    assert [1, 6] == [first for first, _ in list_segments(tmp_path)]
    assert [6] == [o.lsn for o in read_wal(tmp_path, after_lsn=5)[0]]


def test_a_log_that_resumes_after_the_state_is_refused(tmp_path: Path) -> None:
    log, _ = open_log(tmp_path)
    submit(log, [op(1), op(2)])
    log.close()
    (tmp_path / segment_name(1)).rename(tmp_path / segment_name(3))
    (tmp_path / segment_name(3)).write_bytes(
        encode_header(3) + (tmp_path / segment_name(3)).read_bytes()[HEADER_SIZE:]
    )
    with pytest.raises(WALError):
        DurableLog.open(tmp_path, after_lsn=0)


def test_drop_segments_through_removes_whole_old_segments_only(tmp_path: Path) -> None:
    log, _ = open_log(tmp_path, fsync="always")
    for lsn in range(1, 150):
        submit(log, [op(lsn, pad=100)])
        log.flush()
    firsts = [first for first, _ in list_segments(tmp_path)]
    cut = firsts[2] + 1  # inside the third segment
    removed = log.drop_segments_through(cut)
    assert [segment_name(f) for f in firsts[:2]] == [p.name for p in removed]
    assert firsts[2:] == [first for first, _ in list_segments(tmp_path)]
    assert [] == log.drop_segments_through(0)
    everything = log.drop_segments_through(10**9)
    assert [segment_name(f) for f in firsts[2:-1]] == [p.name for p in everything]
    submit(log, [op(150)])
    log.close()
    assert [firsts[-1]] == [first for first, _ in list_segments(tmp_path)]
    log, ops = open_log(tmp_path, after_lsn=firsts[-1] - 1)
    assert list(range(firsts[-1], 151)) == [o.lsn for o in ops]
    log.close()


# -- policies ----------------------------------------------------------------------------------


def test_always_wait_durable_returns_only_after_the_fsync(tmp_path: Path, calls: Calls) -> None:
    log, _ = open_log(tmp_path, fsync="always")
    submit(log, [op(1)])
    log.wait_durable(1)  # the segment exists: the next fsync is the frame's
    gate = threading.Event()
    entered = threading.Event()

    def blocked(fd: int) -> None:
        entered.set()
        gate.wait(10)

    calls.before_fsync = blocked
    submit(log, [op(2)])
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (log.wait_durable(2), done.set()))
    waiter.start()
    assert entered.wait(5)
    time.sleep(0.1)
    assert (False, 1) == (done.is_set(), log.durable_lsn)
    assert [1, 2] == on_disk(tmp_path)  # written, not yet acknowledged
    gate.set()
    waiter.join(5)
    assert (True, 2) == (done.is_set(), log.durable_lsn)
    calls.before_fsync = None
    log.close()


def test_always_every_acknowledged_op_was_fsynced(tmp_path: Path, calls: Calls) -> None:
    log, _ = open_log(tmp_path, fsync="always")
    sizes: list[int] = []

    def record(fd: int) -> None:
        sizes.append(os.fstat(fd).st_size)

    calls.before_fsync = record
    for lsn in range(1, 40):
        submit(log, [op(lsn)])
        log.wait_durable(lsn)
        segment = list_segments(tmp_path)[-1][1]
        assert segment.stat().st_size == sizes[-1]
        assert lsn == log.durable_lsn
    log.close()


def write_concurrently(
    log: DurableLog, threads: int, per_thread: int, after_lsn: int
) -> list[tuple[int, int]]:
    """*threads* threads each submit *per_thread* one-operation statements (LSNs following
    *after_lsn*) and wait until each is durable; returns ``(lsn, durable_lsn)`` for every
    wait that returned too early (none, if group commit keeps its promise)."""
    late: list[tuple[int, int]] = []
    start = threading.Barrier(threads)
    submitted = [after_lsn]  # the last LSN submitted, under the owner's lock

    def writer() -> None:
        start.wait()
        for _ in range(per_thread):
            with log._owner_lock:
                lsn = submitted[0] = submitted[0] + 1
                log.submit([op(lsn)], [True])
            log.wait_durable(lsn)
            if log.durable_lsn < lsn:
                late.append((lsn, log.durable_lsn))

    pool = [threading.Thread(target=writer) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(30)
    return late


def test_group_commit_shares_fsyncs_between_concurrent_writers(
    tmp_path: Path, calls: Calls
) -> None:
    log, _ = open_log(tmp_path, fsync="always", segment_size=1 << 20)
    calls.before_fsync = lambda fd: time.sleep(0.003)
    threads, per_thread = 8, 25
    late = write_concurrently(log, threads, per_thread, after_lsn=0)
    total = threads * per_thread
    fsyncs = calls.count
    log.close()
    assert [] == late
    assert list(range(1, total + 1)) == on_disk(tmp_path)
    assert fsyncs < total, f"{fsyncs} fsyncs for {total} acknowledged operations"


def test_a_group_commit_leader_yields_to_woken_writers_but_a_lone_writer_never_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: Calls
) -> None:
    import wal.durable

    sleeps: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(wal.durable.time, "sleep", sleep)
    log, _ = open_log(tmp_path, fsync="always")
    for lsn in range(1, 21):  # one writer: nobody else to wait for
        with log._owner_lock:
            log.submit([op(lsn)], [True])
        log.wait_durable(lsn)
    assert [] == sleeps
    calls.before_fsync = lambda fd: real_sleep(0.003)  # a slow disk: writers pile up
    assert [] == write_concurrently(log, 4, 10, after_lsn=20)
    log.close()
    assert sleeps  # leaders that found others waiting let them submit first
    assert {wal.durable.DurableLog.GROUP_COMMIT_DELAY} == set(sleeps)
    assert list(range(1, 61)) == on_disk(tmp_path)


def test_everysec_writes_in_the_background_and_fsyncs_within_about_a_second(
    tmp_path: Path, calls: Calls
) -> None:
    log, _ = open_log(tmp_path, fsync="everysec")
    time.sleep(1.05)  # the last fsync is now more than a second ago
    submit(log, [op(1)])
    t0 = time.monotonic()
    while on_disk(tmp_path) != [1] and time.monotonic() - t0 < 2:
        time.sleep(0.005)
    assert [1] == on_disk(tmp_path)
    while log.durable_lsn < 1 and time.monotonic() - t0 < 3:
        time.sleep(0.01)
    assert 1 == log.durable_lsn
    assert time.monotonic() - t0 < 1.5
    log.close()


def test_everysec_fsyncs_at_most_about_once_a_second(tmp_path: Path, calls: Calls) -> None:
    log, _ = open_log(tmp_path, fsync="everysec", segment_size=1 << 24)
    t0 = time.monotonic()
    lsn = 0
    while time.monotonic() - t0 < 1.6:
        lsn += 1
        submit(log, [op(lsn)])
        time.sleep(0.002)
    times = [t - t0 for _, t in calls.fsyncs[1:]]  # after the new segment's header
    log.close()
    assert 1 <= len(times) <= 2, times
    assert list(range(1, lsn + 1)) == on_disk(tmp_path)


def test_off_writes_in_the_background_without_fsync(tmp_path: Path, calls: Calls) -> None:
    log, _ = open_log(tmp_path, fsync="off", segment_size=1 << 20)
    submit(log, [op(1)])
    t0 = time.monotonic()
    while on_disk(tmp_path) != [1] and time.monotonic() - t0 < 2:
        time.sleep(0.005)
    header_fsyncs = calls.count
    for lsn in range(2, 50):
        submit(log, [op(lsn)])
        time.sleep(0.001)
    time.sleep(0.1)
    assert list(range(1, 50)) == on_disk(tmp_path)
    assert (1, 0) == (header_fsyncs, log.durable_lsn)
    assert header_fsyncs == calls.count
    log.close()
    assert 49 == log.durable_lsn


# -- failure -----------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["always", "everysec"])
def test_an_fsync_failure_fails_the_log(tmp_path: Path, calls: Calls, policy: str) -> None:
    log, _ = open_log(tmp_path, fsync=policy)
    submit(log, [op(1)])
    log.flush()
    fired = threading.Event()

    def fail(fd: int) -> None:
        fired.set()
        raise OSError(errno.EIO, "injected fsync failure")

    calls.before_fsync = fail
    submit(log, [op(2)])
    with pytest.raises(LogFailedError):
        log.wait_durable(2)
    assert fired.is_set()
    assert isinstance(log.failed, OSError)
    assert 1 == log.durable_lsn
    with pytest.raises(LogFailedError), log._owner_lock:
        log.submit([op(3)], [True])
    with pytest.raises(LogFailedError):
        log.flush()
    with pytest.raises(LogFailedError):
        log.close()
    log.close()  # closed now: idempotent
    calls.before_fsync = None
    log, ops = open_log(tmp_path, fsync=policy)
    assert [1, 2] == [o.lsn for o in ops]  # what reached the file
    submit(log, [op(3)])
    log.close()
    assert [1, 2, 3] == on_disk(tmp_path)


def _half_then_no_space() -> Callable[[int, Any], Any]:
    state = {"n": 0}

    def short(fd: int, data: Any) -> int:
        state["n"] += 1
        if state["n"] == 1:
            return _real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "injected: no space left")

    return short


def _no_progress() -> Callable[[int, Any], Any]:
    return lambda fd, data: 0  # a write that writes nothing: must fail, not spin


@pytest.mark.parametrize(
    ("hook", "torn"),
    [(_half_then_no_space, True), (_no_progress, False)],
    ids=["short-write-then-error", "no-progress"],
)
def test_a_failed_segment_write_fails_the_log_and_reopen_repairs_the_tail(
    tmp_path: Path, calls: Calls, hook: Callable[[], Callable[[int, Any], Any]], torn: bool
) -> None:
    log, _ = open_log(tmp_path, fsync="always")
    submit(log, [op(1)])
    log.wait_durable(1)
    calls.before_write = hook()
    submit(log, [op(2, pad=200)])
    with pytest.raises(LogFailedError):
        log.wait_durable(2)
    assert isinstance(log.failed, OSError)
    calls.before_write = None
    with pytest.raises(LogFailedError):
        log.close()
    log, ops, cut = DurableLog.open(tmp_path, segment_size=SEGMENT_SIZE)
    assert [1] == [o.lsn for o in ops]
    assert torn == (cut is not None)
    submit(log, [op(2)])
    log.close()
    assert [1, 2] == on_disk(tmp_path)


def test_a_failure_while_rotating_fails_the_log_and_reopen_recovers(
    tmp_path: Path, calls: Calls
) -> None:
    log, _ = open_log(tmp_path, fsync="always")
    lsn = 0
    while len(list_segments(tmp_path)) == 1:
        lsn += 1
        submit(log, [op(lsn, pad=200)])
        log.wait_durable(lsn)
    segments = len(list_segments(tmp_path))

    def fail(fd: int) -> None:
        raise OSError(errno.EIO, "injected")

    calls.before_fsync = fail
    while log.failed is None:
        lsn += 1
        submit(log, [op(lsn, pad=200)])
        with pytest.raises(LogFailedError):
            log.wait_durable(lsn)
    calls.before_fsync = None
    with pytest.raises(LogFailedError):
        log.close()
    written = on_disk(tmp_path)
    assert written == list(range(1, len(written) + 1))
    assert lsn - 1 <= len(written) <= lsn
    log, ops = open_log(tmp_path)
    assert written == [o.lsn for o in ops]
    submit(log, [op(len(written) + 1)])
    log.close()
    assert list(range(1, len(written) + 2)) == on_disk(tmp_path)
    assert segments <= len(list_segments(tmp_path))


def test_submit_after_close_is_refused(tmp_path: Path) -> None:
    log, _ = open_log(tmp_path)
    log.close()
    with pytest.raises(LogFailedError, match="closed"), log._owner_lock:
        log.submit([op(1)], [True])


# -- known bugs ------------------------------------------------------------------------------


def test_operation_records_submitted_as_plain_are_written(tmp_path: Path) -> None:
    log, _ = open_log(tmp_path, fsync="always")
    record = Operation(*op(1))
    with log._owner_lock:
        log.submit([record], [True])
    log.wait_durable(1)
    log.close()
    assert [record] == read_wal(tmp_path)[0]


@pytest.mark.parametrize("size", [0, 1, HEADER_SIZE - 1])
def test_reopening_after_a_crash_inside_a_new_segments_header_continues(
    tmp_path: Path, size: int
) -> None:
    log, _ = open_log(tmp_path, fsync="always")
    submit(log, [op(1), op(2)])
    log.close()
    (tmp_path / segment_name(3)).write_bytes(encode_header(3)[:size])
    log, ops = open_log(tmp_path, fsync="always")
    assert [1, 2] == [o.lsn for o in ops]
    submit(log, [op(3)])
    log.close()
    assert [1, 2, 3] == on_disk(tmp_path)


def test_close_writes_what_was_submitted_while_its_final_flush_ran(
    tmp_path: Path, calls: Calls
) -> None:
    log, _ = open_log(tmp_path, fsync="always")
    submit(log, [op(1)])
    log.flush(sync=False)  # written, not yet durable: close's flush will fsync it
    gate, entered = threading.Event(), threading.Event()

    def slow(fd: int) -> None:
        entered.set()
        gate.wait(10)

    calls.before_fsync = slow
    closer = threading.Thread(target=log.close)
    closer.start()
    assert entered.wait(5)
    accepted = True
    try:
        submit(log, [op(2)])  # close() has not returned: either refused, or written by it
    except LogFailedError:
        accepted = False
    gate.set()
    closer.join(10)
    calls.before_fsync = None
    assert ([1, 2] if accepted else [1]) == on_disk(tmp_path)


def test_a_closed_log_never_writes_again(tmp_path: Path, calls: Calls) -> None:
    log, _ = open_log(tmp_path, fsync="always")
    submit(log, [op(1)])
    log.flush(sync=False)
    gate, entered = threading.Event(), threading.Event()

    def slow(fd: int) -> None:
        calls.before_fsync = None
        entered.set()
        gate.wait(10)

    calls.before_fsync = slow
    closer = threading.Thread(target=log.close)
    closer.start()
    assert entered.wait(5)
    accepted = True
    try:
        submit(log, [op(2)])
    except LogFailedError:
        accepted = False
    gate.set()
    closer.join(10)
    after_close = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    if accepted:  # a writer of the "always" policy then waits for its operation
        with contextlib.suppress(LogFailedError):
            log.wait_durable(2)
    assert after_close == {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert ([1, 2] if accepted else [1]) == on_disk(tmp_path)


# -- batches encoded by writers, frames written together ---------------------------------------


def frames(directory: Path) -> list[list[int]]:
    """The LSNs of each frame on disk, segment by segment, frame by frame."""
    out = []
    for info in list_segments(directory):
        data = info[1].read_bytes()
        for _, _, payload in iter_frames(data, HEADER_SIZE):
            out.append([o.lsn for o in decode_batch(payload)])
    return out


@pytest.mark.parametrize("policy", ["always", "everysec", "off"])
@pytest.mark.parametrize("frame_target", [FRAME_TARGET, 1])
def test_frames_hold_whole_statements_whatever_their_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str, frame_target: int
) -> None:
    # Writers encode pending statements once they hold BATCH operations, and join each batch
    # to the payload of the next flush until it reaches FRAME_TARGET: a frame must never
    # split a statement (recovery could then keep half of one).
    monkeypatch.setattr(durable_module, "FRAME_TARGET", frame_target)
    sizes = [1, BATCH - 1, 2, 1, BATCH + 7, 3, 1] + [1] * (2 * BATCH) + [BATCH, 5]
    log, _ = open_log(tmp_path, fsync=policy, segment_size=1 << 20, flush_interval=3600)
    statements = []
    lsn = 0
    for size in sizes:
        statement = [op(lsn + i + 1) for i in range(size)]
        lsn += size
        submit(log, statement)
        statements.append([o[0] for o in statement])
    log.close()
    written = frames(tmp_path)
    assert [n for frame in written for n in frame] == list(range(1, lsn + 1))
    where = {n: i for i, frame in enumerate(written) for n in frame}
    for statement in statements:
        assert len({where[n] for n in statement}) == 1, statement
    # Nothing was written before close: the writers' batches, then the 5 operations after
    # them, which the closing flush encodes.
    assert written[-1] == list(range(lsn - 4, lsn + 1))
    if frame_target > 1:  # all the batches joined in one frame
        assert len(written) == 2
    else:  # one frame per batch: each holds BATCH operations or a little more
        assert len(written) > 3
        assert all(BATCH <= len(frame) < 2 * BATCH + 8 for frame in written[:-1])


def test_joined_frames_stay_within_the_frame_target_unless_one_batch_is_larger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = 3 * len(encode_batch([op(n, pad=40) for n in range(1, BATCH + 1)], [True] * BATCH))
    monkeypatch.setattr(durable_module, "FRAME_TARGET", target)
    log, _ = open_log(tmp_path, fsync="off", segment_size=1 << 24, flush_interval=3600)
    lsn = 0
    for _ in range(10 * BATCH):
        lsn += 1
        submit(log, [op(lsn, pad=40)])
    huge = [op(lsn + i, pad=4000) for i in range(1, BATCH + 1)]  # one statement > the target
    submit(log, huge)
    lsn += BATCH
    for _ in range(BATCH):
        lsn += 1
        submit(log, [op(lsn, pad=40)])
    log.close()
    sizes = []
    for info in list_segments(tmp_path):
        data = info[1].read_bytes()
        sizes += [len(payload) for _, _, payload in iter_frames(data, HEADER_SIZE)]
    assert list(range(1, lsn + 1)) == on_disk(tmp_path)
    large = [size for size in sizes if size > target]
    assert 1 == len(large)  # the huge statement's batch, alone in its frame
    assert len(sizes) >= 10 // 3 + 2
    assert max(s for s in sizes if s <= target) > target // 2  # batches were joined


def test_the_pending_lists_are_emptied_in_place_never_replaced(tmp_path: Path) -> None:
    # A list made for each batch stayed young, and every young-generation collection walked
    # the fields it held; the log's lists live as long as it does (see `DurableLog.__init__`).
    log, _ = open_log(tmp_path, fsync="everysec", flush_interval=3600)
    pending, tagged = log._pending, log._tagged
    with log._owner_lock:
        for lsn in range(1, BATCH + 3):
            log.submit_one(op(lsn), plain=lsn % 2 == 0)
    assert (2 * WIDTH, [0]) == (len(pending), tagged)  # the batch was encoded, two remain
    log.flush()
    assert ([], []) == (pending, tagged)
    assert pending is log._pending
    assert tagged is log._tagged
    log.close()
    assert list(range(1, BATCH + 3)) == on_disk(tmp_path)


@pytest.mark.parametrize("where", ["encoding", "joining"])
def test_a_writer_that_cannot_encode_its_batch_fails_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    log, _ = open_log(tmp_path, fsync="everysec", flush_interval=3600)
    for lsn in range(1, 11):
        submit(log, [op(lsn)])
    log.flush()
    for lsn in range(11, 10 + BATCH):
        submit(log, [op(lsn)])
    bad = (10 + BATCH, 1.0, "insert", "t", 1, {"id": 1, "v": object()}, None, None)
    if where == "joining":  # encoded, but no memory to join it to the flush's payload

        def no_memory(*args: Any) -> None:
            raise MemoryError

        monkeypatch.setattr(log, "_join", no_memory)
        bad = op(10 + BATCH)
    with pytest.raises(LogFailedError, match="failed"):
        submit(log, [bad])  # the batch is full now: this writer encodes it, and fails
    assert ([], []) == (log._pending, log._tagged)
    assert log.failed is not None
    with pytest.raises(LogFailedError):
        submit(log, [op(11 + BATCH)])
    with pytest.raises(LogFailedError):
        log.close()
    reopened, ops = open_log(tmp_path)
    assert list(range(1, 11)) == [o.lsn for o in ops]  # what was flushed before
    reopened.close()


def test_frames_written_a_few_bytes_at_a_time_arrive_whole(tmp_path: Path, calls: Calls) -> None:
    # One flush writes many frames with os.writev, which may write less than asked.
    log, _ = open_log(tmp_path, fsync="everysec", segment_size=1 << 20, flush_interval=3600)
    sizes: list[int] = []

    def short(fd: int, data: Any) -> int:
        size = 1 + len(sizes) % 7 * 13  # 1 to 79 bytes per call
        sizes.append(size)
        return _real_write(fd, bytes(data)[:size])

    for lsn in range(1, 3 * BATCH + 40):
        submit(log, [op(lsn, pad=lsn % 5)])
    calls.before_write = short
    log.flush()
    calls.before_write = None
    assert len(sizes) > 100
    log.close()
    assert list(range(1, 3 * BATCH + 40)) == on_disk(tmp_path)
    assert 2 == len(frames(tmp_path))  # the writers' batches, joined, and the rest


def test_one_flush_of_many_frames_rotates_segments_between_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable_module, "FRAME_TARGET", 5000)  # a frame every 1 or 2 batches
    log, _ = open_log(tmp_path, fsync="off", flush_interval=3600)  # 4096-byte segments
    last = 4 * BATCH
    for lsn in range(1, last + 1):
        submit(log, [op(lsn, pad=10)])
    log.flush()
    log.close()
    segments = list_segments(tmp_path)
    assert len(segments) > 1
    written = frames(tmp_path)
    assert len(written) > 2
    assert [n for frame in written for n in frame] == list(range(1, last + 1))
    firsts = [frame[0] for frame in written]
    assert all(first in firsts for first, _ in segments)  # each segment starts at a frame
    reopened, ops = open_log(tmp_path)
    assert list(range(1, last + 1)) == [o.lsn for o in ops]
    reopened.close()

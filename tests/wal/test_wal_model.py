"""`wal.durable.DurableLog` against a list model, crashes included (hypothesis state machine).

The log runs with ``fsync="off"`` and a flusher that never fires on a timer; the machine
decides when bytes are written (``flush(sync=False)``) and when they are durable
(``flush(sync=True)``). A crash is simulated faithfully: the disk image keeps every byte up
to the last sync point, plus an arbitrary prefix of the bytes written since (segments in LSN
order, so the cut may tear the last record or a segment header), optionally followed by a
zero-filled tail (at a frame boundary or inside the torn frame); the image is written to a
fresh directory and recovered there. After every recovery: every synced operation is
present, the operations are a prefix of those appended (type for type: nothing damaged is
ever accepted), and the log continues cleanly after them.
"""

# The suite asserts `expected == actual` (STYLE.md), which SIM300 calls a Yoda condition.

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tests import strategies as s
from tests.dictdb._scripts.strict import diff
from wal.durable import DurableLog, LogFailedError
from wal.framing import HEADER_SIZE, FrameError, iter_frames
from wal.operation import OpTuple
from wal.recovery import list_segments, read_wal

SEGMENT_SIZE = 4096
NEVER = 3600.0  # the flusher's interval: it only runs when woken


def stream(directory: Path) -> list[tuple[str, bytes]]:
    """Every segment file's name and bytes, in LSN order."""
    return [(path.name, path.read_bytes()) for _, path in list_segments(directory)]


def frame_ends(data: bytes) -> set[int]:
    """The offsets where a frame of *data* ends (the header's end included), up to the first
    frame that is torn."""
    ends = {HEADER_SIZE}
    with contextlib.suppress(FrameError):
        ends.update(stop for _, stop, _ in iter_frames(data, HEADER_SIZE))
    return ends


def write_image(segments: list[tuple[str, bytes]], keep: int, directory: Path, zeros: int) -> bool:
    """Write into *directory* the first *keep* bytes of the segment stream, then *zeros* zero
    bytes (a file whose size got ahead of its data: after a frame boundary, or inside a torn
    frame). Returns False when the cut tears a segment header (a crash while a new
    segment was being created: its file is left shorter than a header, even empty).
    """
    directory.mkdir()
    start = 0
    last: tuple[str, bytes] | None = None
    whole = True
    for name, blob in segments:
        if start > keep:
            break
        part = blob[: keep - start]
        start += len(blob)
        (directory / name).write_bytes(part)
        if len(part) < HEADER_SIZE:
            whole = False
            break
        last = (name, part)
    if zeros and last is not None and whole:  # (a torn header: see test_recovery.py)
        boundary = len(last[1]) in frame_ends(last[1])
        event(
            f"crash: zero-filled tail {'at a frame boundary' if boundary else 'after a torn frame'}"
        )
        (directory / last[0]).write_bytes(last[1] + bytes(zeros))
    return whole


class DurableLogMachine(RuleBasedStateMachine):
    """The model: `appended` (every op submitted, in order) and `durable` (how many synced).

    With ``off``, the background flusher (woken by every flush) may also write pending
    operations at any moment; the ``always`` variant has no thread, so every byte on disk comes
    from the machine's own flushes (``always`` only matters to `wait_durable`, never called).
    """

    POLICY = "off"

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="walmodel-"))
        self.generation = 0
        self.appended: list[OpTuple] = []
        self.durable = 0
        self.durable_bytes = 0  # length of the segment stream at the last sync point
        self.log: DurableLog | None = None
        self.lock = threading.RLock()
        self.compress = False

    # -- helpers ------------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self.root / f"gen{self.generation}"

    def open_log(self) -> list[Any]:
        self.lock = threading.RLock()
        self.log, ops, torn = DurableLog.open(
            self.directory,
            fsync=self.POLICY,
            lock=self.lock,
            segment_size=SEGMENT_SIZE,
            compress=self.compress,
            flush_interval=NEVER,
        )
        if torn is not None:
            event(f"recovery: cut a torn tail ({torn.reason})")
        return ops

    def assert_recovered(self, ops: list[Any], at_least: int) -> None:
        """*ops* are a prefix of the appended ops, type for type, and hold the first
        *at_least* of them."""
        assert at_least <= len(ops) <= len(self.appended)
        assert list(range(1, len(ops) + 1)) == [op.lsn for op in ops]
        assert [] == diff([list(op) for op in self.appended[: len(ops)]], [list(op) for op in ops])

    def stream_length(self) -> int:
        return sum(len(data) for _, data in stream(self.directory))

    # -- rules --------------------------------------------------------------------------------

    @initialize(compress=st.booleans())
    def start(self, compress: bool) -> None:
        self.compress = compress
        assert [] == self.open_log()

    @rule(
        statements=st.lists(
            st.tuples(
                st.lists(
                    s.plain_json(text_size=30, container_size=4, max_leaves=10),
                    min_size=1,
                    max_size=4,
                ),
                st.lists(s.domain_values(max_leaves=3), max_size=2),
                st.sampled_from([0, 60, 600]),
            ),
            min_size=1,
            max_size=4,
        ),
        ts=st.floats(min_value=0, max_value=4e9),
    )
    def append(self, statements: list[tuple[list[Any], list[Any], int]], ts: float) -> None:
        """Submit statements: consecutive LSNs, plain rows and a few tagged ones, padded so
        that segments rotate often."""
        assert self.log is not None
        for rows, tagged, pad in statements:
            first = len(self.appended) + 1
            ops: list[OpTuple] = []
            plain: list[bool] = []
            for i, row in enumerate([*rows, *tagged]):
                kind = ("insert", "update", "delete")[i % 3]
                after = {"row": row, "pad": "p" * pad}
                ops.append((first + i, ts, kind, "t", first + i, after, None, None))
                plain.append(i < len(rows))
            with self.lock:
                self.log.submit(ops, plain)
            self.appended.extend(ops)

    @rule()
    def write(self) -> None:
        """Write what is pending, without fsync: on disk for a process crash only."""
        assert self.log is not None
        self.log.flush(sync=False)

    @rule()
    def sync(self) -> None:
        assert self.log is not None
        self.log.flush(sync=True)
        self.durable = len(self.appended)
        self.durable_bytes = self.stream_length()
        assert self.durable == self.log.durable_lsn

    @precondition(lambda self: len(self.appended) > self.durable)
    @rule(data=st.data(), zeros=st.sampled_from([0, 0, 1, 9, 4096]))
    def crash(self, data: st.DataObject, zeros: int) -> None:
        """Lose everything after the sync point except a random prefix of what was written.

        Every cut point worth trying (segment starts and frame ends, one byte either side) is
        first checked with a repairing `read_wal` on its own image; one drawn cut then
        becomes the new state of the log, which must continue cleanly.
        """
        assert self.log is not None
        # Quiesce the directory first: with "off", the flusher may be writing right now, and
        # a copy taken mid-write is no crash image (a torn frame in a segment followed by
        # another). After this flush nothing is pending, so nothing more gets written.
        self.log.flush(sync=False)
        segments = stream(self.directory)
        total = sum(len(b) for _, b in segments)
        assert self.durable_bytes <= total
        points: set[int] = {total}
        start = 0
        for _, blob in segments:
            points.update(start + end + d for end in (0, *frame_ends(blob)) for d in (-1, 0, 1))
            start += len(blob)
        ordered = sorted(p for p in points if self.durable_bytes <= p <= total)
        scratch = self.root / "scratch"
        for i, cut in enumerate(ordered[:: max(1, len(ordered) // 40)]):
            if write_image(segments, cut, scratch, 4096 if i % 2 else 0):
                ops, _, _ = read_wal(scratch, repair=True)
                self.assert_recovered(ops, self.durable)
            shutil.rmtree(scratch)
        # Drawn so that the draws do not depend on the bytes (the "off" flusher may have
        # written more or less by now): a kind of cut, and a number reduced into range.
        snap = data.draw(st.booleans(), label="cut at a boundary")
        pick = data.draw(st.integers(0, 2**32), label="cut")
        if snap:
            keep = ordered[pick % len(ordered)]
        else:
            keep = self.durable_bytes + pick % (total - self.durable_bytes + 1)
        old_directory, old_log = self.directory, self.log
        self.generation += 1
        if not write_image(segments, keep, self.directory, zeros):
            event("crash: tore a segment header")
        if keep < total:
            event("crash: lost written bytes")
        event(f"crash: {min(len(segments), 3)}{'+' if len(segments) >= 3 else ''} segments")
        old_log.close()
        shutil.rmtree(old_directory)
        image = {p.name: p.read_bytes() for p in self.directory.iterdir()}
        ops, _, _ = read_wal(self.directory, repair=False)
        assert image == {p.name: p.read_bytes() for p in self.directory.iterdir()}
        self.assert_recovered(ops, self.durable)
        recovered = self.open_log()
        assert [list(op) for op in ops] == [list(op) for op in recovered]
        self.assert_recovered(recovered, self.durable)
        self.appended = self.appended[: len(recovered)]
        self.durable = len(recovered)
        self.durable_bytes = self.stream_length()

    @rule()
    def close_and_reopen(self) -> None:
        """A clean close writes and syncs everything; a closed log refuses new operations."""
        assert self.log is not None
        self.log.close()
        self.log.close()  # idempotent
        refused = False
        try:
            with self.lock:
                self.log.submit(
                    [(len(self.appended) + 1, 0.0, "insert", "t", 0, {}, None, None)], [True]
                )
        except LogFailedError:
            refused = True
        assert refused
        recovered = self.open_log()
        assert len(self.appended) == len(recovered)
        self.assert_recovered(recovered, len(self.appended))
        self.durable = len(self.appended)
        self.durable_bytes = self.stream_length()

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def durable_lsn_covers_the_synced_ops(self) -> None:
        if self.log is not None:
            assert self.durable <= self.log.durable_lsn <= len(self.appended)
            assert None is self.log.failed

    def teardown(self) -> None:
        if self.log is not None:
            self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


class DeterministicDurableLogMachine(DurableLogMachine):
    POLICY = "always"


MACHINE_SETTINGS = settings(
    max_examples=30,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
DurableLogMachine.TestCase.settings = MACHINE_SETTINGS
DeterministicDurableLogMachine.TestCase.settings = MACHINE_SETTINGS
TestDurableLogModel = DurableLogMachine.TestCase
TestDurableLogModelWithoutFlusher = DeterministicDurableLogMachine.TestCase

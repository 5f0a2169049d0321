"""Durable mode (`DictDB.open`): op-exact point-in-time restore, reopen, the directory lock,
audit metadata in the log, fsync policies, group commit and I/O failure.

``os.fsync``/``os.write`` are wrapped (monkeypatch) to count, block or fail the calls made on
WAL segment files, told apart by the path behind the descriptor.
"""

# The suite asserts `expected == actual` (STYLE.md), which SIM300 calls a Yoda condition.

from __future__ import annotations

import datetime as dt
import decimal
import errno
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dictdb import (
    BackupManager,
    DictDB,
    DictDBError,
    Field,
    RestoreError,
    StateError,
    ValueDomainError,
    list_backups,
    restore,
)
from dictdb.errors import DatabaseLockedError, DurableLogError
from tests.dictdb._scripts.strict import db_diff, diff
from tests.dictdb._scripts.workload import random_statement, sample_values
from wal.durable import LogFailedError
from wal.operation import Operation
from wal.recovery import RecoveryError, list_segments, read_wal

ROOT = Path(__file__).resolve().parents[2]
SEGMENT_SIZE = 4096
_real_fsync = os.fsync
_real_write = os.write
_real_writev = os.writev


def is_segment(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").endswith(".wal")
    except OSError:
        return False


class SegmentIO:
    """Counts ``os.fsync`` on segment files; hooks may block or fail fsyncs and writes (a
    writev reaches ``before_write`` as its buffers joined)."""

    def __init__(self) -> None:
        self.fsyncs = 0
        self.lock = threading.Lock()
        self.before_fsync: Callable[[int], None] | None = None
        self.before_write: Callable[[int, Any], None] | None = None

    def fsync(self, fd: int) -> None:
        if is_segment(fd):
            if self.before_fsync is not None:
                self.before_fsync(fd)
            with self.lock:
                self.fsyncs += 1
        _real_fsync(fd)

    def write(self, fd: int, data: Any) -> int:
        if self.before_write is not None and is_segment(fd):
            self.before_write(fd, data)
        return _real_write(fd, data)

    def writev(self, fd: int, buffers: Any) -> int:
        if self.before_write is not None and is_segment(fd):
            self.before_write(fd, b"".join(buffers))
        return _real_writev(fd, buffers)


@pytest.fixture
def segment_io(monkeypatch: pytest.MonkeyPatch) -> SegmentIO:
    io = SegmentIO()
    monkeypatch.setattr(os, "fsync", io.fsync)
    monkeypatch.setattr(os, "write", io.write)
    monkeypatch.setattr(os, "writev", io.writev)
    return io


def logged(root: Path) -> list[Operation]:
    return read_wal(root / "wal")[0]


def child_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


def holder(mode: str, root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.dictdb._scripts.durable_holder", mode, str(root)],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def replayed_states(ops: list[Operation]) -> list[dict[str, Any]]:
    """The state after each operation: index n holds the state right after operation n."""
    db = DictDB()
    states = [db.to_dict()]
    for operation in ops:
        db.apply_operation(operation)
        states.append(db.to_dict())
    return states


# -- op-exact point-in-time restore --------------------------------------------------------------


FORMATS = st.sampled_from([("json", None), ("json", "zstd"), ("pickle", None), ("pickle", "zstd")])


@settings(max_examples=12)
@given(
    data=st.data(),
    statements=st.integers(min_value=5, max_value=45),
    every=st.integers(min_value=2, max_value=12),
    deltas=st.integers(min_value=1, max_value=4),
    file_format=FORMATS,
)
def test_restore_by_lsn_and_by_time_equals_the_state_right_after_that_operation(
    data: st.DataObject,
    statements: int,
    every: int,
    deltas: int,
    file_format: tuple[str, str | None],
) -> None:
    """A random history on a durable database, fulls and deltas cut into the same directory
    every few statements: `restore(lsn=n)` equals the state right after operation n for any
    n, and `restore(at=t)` the state after the last operation at or before t."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "db"
        db = DictDB.open(root, fsync="off", segment_size=SEGMENT_SIZE)
        manager = BackupManager(
            db,
            root,
            incremental=True,
            max_deltas_before_full=deltas,
            file_format=file_format[0],
            compression=file_format[1],
        )
        live = {0: db.to_dict()}
        for i in range(statements):
            random_statement(data, db)
            live[db.lsn] = db.to_dict()
            if i % every == every - 1:
                manager.backup_now()
        db.close()
        ops = logged(root)
        assert list(range(1, db.lsn + 1)) == [op.lsn for op in ops]
        states = replayed_states(ops)
        for lsn, state in live.items():  # the replay agrees with the live database
            assert [] == db_diff(state, states[lsn]), lsn
        last = len(ops)
        targets = data.draw(st.lists(st.integers(0, last), max_size=10), label="lsn targets")
        for n in sorted({0, last, *targets}):
            restored = restore(root, lsn=n)
            assert n == restored.lsn
            assert [] == db_diff(states[n], restored.to_dict()), f"lsn={n}"
        with pytest.raises(RestoreError, match=f"past the newest point .* LSN {last} "):
            restore(root, lsn=last + 5)
        # Times: at an operation's own timestamp, and strictly between two operations.
        if not ops:
            return
        times: list[tuple[float, int]] = [(ops[0].ts - 1.0, 0)]
        picks = data.draw(st.lists(st.integers(1, last), max_size=8), label="time targets")
        for n in {last, *picks}:
            ts = ops[n - 1].ts
            following = ops[n].ts if n < last else ts + 1.0
            if ts < following:  # n ends a statement (a statement shares one timestamp)
                times.append((ts, n))
                middle = (ts + following) / 2
                if ts < middle < following:
                    times.append((middle, n))
        for at, n in times:
            restored = restore(root, at=at)
            assert n == restored.lsn, f"at={at!r}"
            assert [] == db_diff(states[n], restored.to_dict()), f"at={at!r}"
        with DictDB.open(root) as again:  # from the newest backup, then the log's tail
            assert (last, []) == (again.lsn, db_diff(states[last], again.to_dict()))


def test_restore_at_a_datetime_between_two_statements(tmp_path: Path) -> None:
    root = tmp_path / "db"
    with DictDB.open(root, fsync="off") as db:
        table = db.create_table("t")
        table.insert({"v": 1})
        time.sleep(0.01)
        middle = dt.datetime.now(dt.UTC)
        time.sleep(0.01)
        table.insert({"v": 2})
    expected = replayed_states(logged(root))  # after close: everything is written
    restored = restore(root, at=middle)
    assert (2, []) == (restored.lsn, db_diff(expected[2], restored.to_dict()))
    assert 3 == restore(root, at=middle + dt.timedelta(seconds=5)).lsn


def test_restore_needs_no_backup_when_the_log_starts_at_operation_1(tmp_path: Path) -> None:
    root = tmp_path / "db"
    with DictDB.open(root) as db:
        db.create_table("t").insert([{"v": i} for i in range(5)])
        expected = db.to_dict()
    assert [] == db_diff(expected, restore(root).to_dict())
    assert [] == db_diff({}, restore(root, lsn=0).to_dict())


def test_retention_keeps_op_exact_restore_across_the_retained_window(tmp_path: Path) -> None:
    root = tmp_path / "db"
    # "always": the log is written as it goes, so segments exist when retention trims.
    db = DictDB.open(root, fsync="always", segment_size=SEGMENT_SIZE)
    manager = BackupManager(db, root, incremental=True, max_deltas_before_full=2, keep_chains=2)
    table = db.create_table("t")
    for i in range(200):
        table.insert({"id": i, "pad": "x" * 60})
        if i % 20 == 19:
            manager.backup_now()
    db.close()
    fulls = sorted(f.last_lsn for f in list_backups(root).files if f.is_full)
    assert 2 == len(fulls)
    first_segment = list_segments(root / "wal")[0][0]
    assert 1 < first_segment <= fulls[0] + 1  # trimmed, but back to the oldest kept snapshot
    with pytest.raises(DictDBError):
        restore(root, lsn=first_segment - 2)
    with DictDB.open(root) as again:
        assert (db.lsn, 200) == (again.lsn, len(again.get_table("t")))
    expected = replayed_states_from(root, fulls[0])
    for n in range(fulls[0], db.lsn + 1, 7):
        restored = restore(root, lsn=n)
        assert (n, []) == (restored.lsn, db_diff(expected[n], restored.to_dict()))


def replayed_states_from(root: Path, base: int) -> dict[int, dict[str, Any]]:
    """States after each operation from *base* on (the snapshot at *base*, then the log)."""
    db = restore(root, lsn=base)
    states = {base: db.to_dict()}
    for operation in read_wal(root / "wal", after_lsn=base)[0]:
        db.apply_operation(operation)
        states[operation.lsn] = db.to_dict()
    return states


# -- reopen ------------------------------------------------------------------------------------


@settings(max_examples=10)
@given(
    data=st.data(),
    policy=st.sampled_from(["always", "everysec", "off"]),
    compress=st.booleans(),
)
def test_reopening_after_close_gives_the_same_database(
    data: st.DataObject, policy: str, compress: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "db"
        db = DictDB.open(root, fsync=policy, compress=compress, segment_size=SEGMENT_SIZE)
        odd = db.create_table("odd", "k")
        odd.insert({"k": "sample", **sample_values()})
        for _ in range(data.draw(st.integers(0, 25), label="statements")):
            random_statement(data, db)
        expected, lsn = db.to_dict(), db.lsn
        db.close()
        with DictDB.open(root, fsync=policy, compress=not compress) as again:
            assert lsn == again.lsn
            assert [] == db_diff(expected, again.to_dict())
            assert list(expected) == again.list_tables()


def test_an_unknown_fsync_policy_is_refused_before_anything_is_locked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync"):
        DictDB.open(tmp_path / "db", fsync="sometimes")
    with DictDB.open(tmp_path / "db") as db:
        assert 0 == db.lsn


def test_an_open_that_fails_on_damage_releases_the_directory(tmp_path: Path) -> None:
    root = tmp_path / "db"
    with DictDB.open(root, fsync="always", segment_size=SEGMENT_SIZE) as db:
        table = db.create_table("t")
        for i in range(120):
            table.insert({"id": i, "pad": "z" * 40})
    first = list_segments(root / "wal")[0][1]
    pristine = first.read_bytes()
    first.write_bytes(pristine[:60] + bytes([pristine[60] ^ 0xFF]) + pristine[61:])
    for _ in range(2):
        with pytest.raises(RecoveryError):
            DictDB.open(root)
    first.write_bytes(pristine)
    with DictDB.open(root) as db:
        assert 121 == db.lsn


def test_close_is_idempotent_and_a_context_manager_closes(tmp_path: Path) -> None:
    with DictDB.open(tmp_path / "db") as db:
        assert db.durable
        db.create_table("t").insert({"id": 1})
    db.close()
    db.close()
    with DictDB.open(tmp_path / "db") as again:  # the lock was released
        assert [{"id": 1}] == again.get_table("t").all()
    DictDB().close()  # an in-memory database has nothing to close


def test_a_write_after_close_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    db = DictDB.open(tmp_path / "db")
    table = db.create_table("t")
    table.insert({"id": 1})
    db.close()
    before = (db.lsn, db.to_dict())
    for write in (
        lambda: table.insert({"id": 2}),
        lambda: table.upsert({"id": 1, "v": 2}),
        lambda: table.delete(where=Field("id") == 1),
        lambda: db.create_table("u"),
        lambda: db.drop_table("t"),
    ):
        with pytest.raises(Exception) as info:  # which type: see the next test
            write()
        assert isinstance(info.value, DictDBError | LogFailedError)
        assert before == (db.lsn, db.to_dict())
    assert [1, 2] == [op.lsn for op in logged(tmp_path / "db")]


def test_a_write_after_close_raises_a_dictdb_state_error(tmp_path: Path) -> None:
    db = DictDB.open(tmp_path / "db")
    table = db.create_table("t")
    db.close()
    with pytest.raises(StateError):
        table.insert({"id": 1})


def test_ddl_survives_reopen(tmp_path: Path) -> None:
    root = tmp_path / "db"
    with DictDB.open(root, fsync="always") as db:
        db.create_table("typed", "id", {"id": "int", "amount": "Decimal", "when": "datetime"})
        db.get_table("typed").insert(
            {"id": 1, "amount": decimal.Decimal("1.50"), "when": dt.datetime(2024, 1, 1)}
        )
        db.create_table("gone").insert({"id": 1})
        db.drop_table("gone")
        db.create_table("$t", "$key").insert({"$key": "a", "$date": "not a tag"})
        db.create_table("gone", "other", {"other": "str"}).insert({"other": "again"})
        expected = db.to_dict()
    with DictDB.open(root) as db:
        assert ["typed", "$t", "gone"] == db.list_tables()
        assert [] == db_diff(expected, db.to_dict())
        assert ("other", {"other": str}) == (
            db.get_table("gone").primary_key,
            db.get_table("gone").schema,
        )
        with pytest.raises(DictDBError):
            db.get_table("typed").insert({"id": 2, "amount": "not a decimal"})


@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_operations_applied_from_outside_are_logged_and_survive_reopen(
    tmp_path: Path, fsync: str
) -> None:
    # apply_operation/replay once skipped the log: the next write then left a hole in it, and
    # the directory no longer opened ("frame starts at LSN 3, expected 2").
    root = tmp_path / "db"
    when = dt.datetime(2024, 5, 6, 7, 8, 9)
    with DictDB.open(root, fsync=fsync) as db:
        db.create_table("t")
        db.apply_operation(Operation(2, 1.0, "insert", "t", 1, {"id": 1, "at": when}, None, None))
        db.replay(
            [
                Operation(3, 2.0, "update", "t", 1, {"id": 1, "at": "text"}, {"id": 1}, None),
                Operation(4, 3.0, "insert", "t", 2, {"id": 2}, None, {"actor": "sync"}),
                Operation(5, 4.0, "delete", "t", 2, None, {"id": 2, "at": when}, None),
            ]
        )
        db.get_table("t").insert({"id": 3})
        expected = db.to_dict()
    assert [1, 2, 3, 4, 5, 6] == [op.lsn for op in logged(root)]
    logged_ops = {op.lsn: op for op in logged(root)}
    assert {"id": 1, "at": when} == logged_ops[2].after  # type for type, tagged in the log
    assert {"id": 2, "at": when} == logged_ops[5].before
    assert {"actor": "sync"} == logged_ops[4].meta
    with DictDB.open(root) as db:
        assert 6 == db.lsn
        assert [] == db_diff(expected, db.to_dict())


def test_apply_delta_is_refused_on_a_durable_database(tmp_path: Path) -> None:
    # A delta holds the net effect of a range of operations, not the operations the log needs.
    from dictdb.storage import persist

    source = DictDB()
    source.create_table("t")
    persist.save(source, tmp_path / "base.json")
    source.get_table("t").insert({"id": 1})
    delta = persist.save_delta(source, tmp_path / "delta.json")
    assert delta is not None
    root = tmp_path / "db"
    with DictDB.open(root, fsync="always") as db:
        db.create_table("t")
        with pytest.raises(StateError, match="durable"):
            persist.apply_delta(db, delta)
        assert (1, 0) == (db.lsn, len(db.get_table("t")))
        db.get_table("t").insert({"id": 5})
    with DictDB.open(root) as db:
        assert (2, [{"id": 5}]) == (db.lsn, db.get_table("t").select())


# -- the directory lock ----------------------------------------------------------------------


@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_keys_of_every_kind_survive_reopen_type_for_type(tmp_path: Path, fsync: str) -> None:
    # The log writes keys untagged when JSON carries them (str, ints) and tags the others;
    # keys past 64 bits (explicit, then auto after one) make the batch fall back to tags.
    root = tmp_path / "db"
    keys: list[Any] = ["s", 1, 2**63, uuid.UUID(int=9), b"\x00k", dt.date(2020, 1, 2)]
    keys += [dt.datetime(2020, 1, 2, 3, 4, 5), -(2**63) - 1, 2**64]
    with DictDB.open(root, fsync=fsync) as db:
        t = db.create_table("t")
        for key in keys:
            t.insert({"id": key, "v": repr(key)})
        t.insert({"v": "auto"})  # 2**64 + 1
        t.upsert({"id": uuid.UUID(int=9), "v": "changed"})
        t.delete(where=Field("id") == b"\x00k")
        expected = db.to_dict()
    with DictDB.open(root) as db:
        assert [] == db_diff(expected, db.to_dict())
        assert {"v": "auto", "id": 2**64 + 1} == db.get_table("t").select(
            where=Field("v") == "auto"
        )[0]


def test_a_second_open_in_the_same_process_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "db"
    with DictDB.open(root) as db:
        db.create_table("t")
        with pytest.raises(DatabaseLockedError):
            DictDB.open(root)
        other = Path(os.path.relpath(root))
        with pytest.raises(DatabaseLockedError):
            DictDB.open(other)
        assert isinstance(DatabaseLockedError("x"), StateError)
        db.get_table("t").insert({"id": 1})  # the refused opener did not disturb the owner
    with DictDB.open(root) as db:
        assert 2 == db.lsn


def test_an_open_in_another_process_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "db"
    with DictDB.open(root):
        proc = holder("try", root)
        out, err = proc.communicate(timeout=30)
        assert ("locked", 0) == (out.strip(), proc.returncode), err
    proc = holder("try", root)
    out, err = proc.communicate(timeout=30)
    assert "opened" == out.strip(), err


def test_the_lock_of_a_killed_process_is_released_by_the_os(tmp_path: Path) -> None:
    root = tmp_path / "db"
    proc = holder("hold", root)
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("READY"), proc.stderr.read() if proc.stderr else ""
        with pytest.raises(DatabaseLockedError):
            DictDB.open(root)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    with DictDB.open(root) as db:
        assert int(ready.split()[1]) == db.lsn
        assert [{"id": 1, "by": "holder"}] == db.get_table("held").all()


# -- audit metadata ------------------------------------------------------------------------


def test_audit_metadata_is_stored_in_the_log_records(tmp_path: Path) -> None:
    root = tmp_path / "db"
    when = dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with DictDB.open(root) as db:
        table = db.create_table("t")
        with db.audit(actor="alice", reason="ticket 42"):
            table.insert({"id": 1})
            with db.audit(
                reason="inner",
                when=when,
                amount=decimal.Decimal("-0.50"),
                raw={"$date": "not a tag", "b": b"\x00", "big": 2**80},
            ):
                table.insert([{"id": 2}, {"id": 3}])
            table.upsert({"id": 1, "v": True})
        table.delete(where=Field("id") == 3)
        with db.audit(actor="bob"):
            db.drop_table("t")
    outer = {"actor": "alice", "reason": "ticket 42"}
    inner = {
        "actor": "alice",
        "reason": "inner",
        "when": when,
        "amount": decimal.Decimal("-0.50"),
        "raw": {"$date": "not a tag", "b": b"\x00", "big": 2**80},
    }
    expected = [None, outer, inner, inner, outer, None, {"actor": "bob"}]
    metas = [op.meta for op in logged(root)]
    assert expected == metas
    assert [] == diff(inner, metas[2])  # type for type (Decimal exponent, offset)


@pytest.mark.parametrize(
    "meta",
    [{"actor": {1, 2}}, {"reason": float("nan")}, {"extra": object()}, {"when": dt.time(1)}],
    ids=["set", "nan", "object", "time"],
)
def test_out_of_domain_audit_metadata_is_refused_and_logs_nothing(
    tmp_path: Path, meta: dict[str, Any]
) -> None:
    root = tmp_path / "db"
    with DictDB.open(root) as db:
        table = db.create_table("t")
        with pytest.raises(Exception) as info:  # which type: see the next test
            with db.audit(**meta):
                table.insert({"id": 1})
        assert isinstance(info.value, TypeError | ValueError)
        assert (1, 0) == (db.lsn, len(table))
        table.insert({"id": 2})
    assert [None, None] == [op.meta for op in logged(root)]


def test_out_of_domain_audit_metadata_raises_value_domain_error(tmp_path: Path) -> None:
    with DictDB.open(tmp_path / "db") as db, pytest.raises(ValueDomainError):
        db.audit(actor="x", tags={1, 2})


# -- fsync policies ----------------------------------------------------------------------------


def test_always_a_write_returns_only_after_its_fsync(tmp_path: Path, segment_io: SegmentIO) -> None:
    with DictDB.open(tmp_path / "db", fsync="always") as db:
        table = db.create_table("t")  # the segment exists: the next fsync is the insert's
        gate, entered, returned = threading.Event(), threading.Event(), threading.Event()

        def blocked(fd: int) -> None:
            entered.set()
            gate.wait(10)

        segment_io.before_fsync = blocked
        writer = threading.Thread(target=lambda: (table.insert({"id": 1}), returned.set()))
        writer.start()
        assert entered.wait(5)
        time.sleep(0.1)
        assert False is returned.is_set()
        assert [1, 2] == [op.lsn for op in logged(tmp_path / "db")]  # written, not yet synced
        gate.set()
        writer.join(5)
        assert True is returned.is_set()
        segment_io.before_fsync = None
        fsyncs = segment_io.fsyncs
        for i in range(2, 12):
            table.insert({"id": i})
        assert fsyncs + 10 == segment_io.fsyncs


def test_always_group_commit_uses_fewer_fsyncs_than_operations(
    tmp_path: Path, segment_io: SegmentIO
) -> None:
    root = tmp_path / "db"
    writers, per_writer = 8, 30
    with DictDB.open(root, fsync="always", segment_size=1 << 24) as db:
        table = db.create_table("t")
        segment_io.before_fsync = lambda fd: time.sleep(0.002)
        start_fsyncs = segment_io.fsyncs
        barrier = threading.Barrier(writers)
        acknowledged: list[str] = []

        def write(w: int) -> None:
            barrier.wait()
            for i in range(per_writer):
                table.insert({"id": f"{w}-{i}"})
                acknowledged.append(f"{w}-{i}")

        pool = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(60)
        fsyncs = segment_io.fsyncs - start_fsyncs
        segment_io.before_fsync = None
    operations = writers * per_writer
    assert operations == len(acknowledged)
    assert fsyncs < operations, f"{fsyncs} fsyncs for {operations} operations"
    with DictDB.open(root) as db:
        assert set(acknowledged) == set(db.get_table("t").records)


def test_everysec_data_reaches_the_file_within_about_a_second_without_close(
    tmp_path: Path, segment_io: SegmentIO
) -> None:
    root = tmp_path / "db"
    db = DictDB.open(root, fsync="everysec")
    try:
        db.create_table("t").insert({"id": 1})
        t0 = time.monotonic()
        while len(logged(root)) < 2 and time.monotonic() - t0 < 3:
            time.sleep(0.01)
        assert [1, 2] == [op.lsn for op in logged(root)]
        assert time.monotonic() - t0 < 1.2
        while segment_io.fsyncs < 2 and time.monotonic() - t0 < 3:  # header, then data
            time.sleep(0.01)
        assert 2 <= segment_io.fsyncs
        assert time.monotonic() - t0 < 1.5
    finally:
        db.close()


def test_off_writes_without_fsync_until_close(tmp_path: Path, segment_io: SegmentIO) -> None:
    root = tmp_path / "db"
    db = DictDB.open(root, fsync="off", segment_size=1 << 24)
    table = db.create_table("t")
    for i in range(20):
        table.insert({"id": i})
    t0 = time.monotonic()
    while len(logged(root)) < 21 and time.monotonic() - t0 < 3:
        time.sleep(0.01)
    assert (21, 1) == (len(logged(root)), segment_io.fsyncs)  # only the header's
    db.close()
    assert 2 == segment_io.fsyncs


# -- failure -----------------------------------------------------------------------------------


def test_every_write_that_returned_before_close_returned_survives_reopen(tmp_path: Path) -> None:
    """A writer thread racing close(): whatever returned successfully before close() returned
    must be in the log (close flushes "everything submitted"). A tiny GIL switch interval
    makes the threads interleave finely; tried a few times."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    lost: list[tuple[int, int, list[int]]] = []
    try:
        for attempt in range(12):
            root = tmp_path / f"db{attempt}"
            db = DictDB.open(root, fsync="everysec")
            table = db.create_table("t")
            returned: list[int] = []
            stop = threading.Event()

            def write(table: Any = table, returned: list[int] = returned, stop: Any = stop) -> None:
                i = 0
                while not stop.is_set():
                    try:
                        table.insert({"id": i})
                    except (DictDBError, LogFailedError):
                        return
                    returned.append(i)
                    i += 1

            writer = threading.Thread(target=write)
            writer.start()
            time.sleep(0.002)
            db.close()
            done = len(returned)  # every insert counted here returned before close() did
            stop.set()
            writer.join(10)
            keys = {op.key for op in logged(root) if op.kind == "insert"}
            missing = [k for k in returned[:done] if k not in keys]
            if missing:
                lost.append((attempt, done, missing[:3]))
    finally:
        sys.setswitchinterval(previous)
    assert [] == lost


def test_an_fsync_failure_fails_the_log_and_reopen_recovers_what_is_on_disk(
    tmp_path: Path, segment_io: SegmentIO
) -> None:
    root = tmp_path / "db"
    db = DictDB.open(root, fsync="always")
    table = db.create_table("t")
    table.insert({"id": 1})

    def fail(fd: int) -> None:
        raise OSError(errno.EIO, "injected fsync failure")

    segment_io.before_fsync = fail
    with pytest.raises(LogFailedError):
        table.insert({"id": 2})
    assert isinstance(db.engine.sink.failed if db.engine.sink else None, OSError)
    for refused in (lambda: table.insert({"id": 3}), lambda: db.create_table("u")):
        with pytest.raises(LogFailedError):
            refused()
    segment_io.before_fsync = None
    with pytest.raises(LogFailedError):
        db.close()
    db.close()
    on_disk = logged(root)
    assert [1, 2, 3] == [op.lsn for op in on_disk]  # the failed fsync's data was written
    with DictDB.open(root, fsync="always") as again:
        assert [] == db_diff(replayed_states(on_disk)[-1], again.to_dict())
        again.get_table("t").insert({"id": 3})
    assert [1, 2, 3, 4] == [op.lsn for op in logged(root)]


def test_a_statement_whose_log_write_fails_changes_nothing(
    tmp_path: Path, segment_io: SegmentIO
) -> None:
    db = DictDB.open(tmp_path / "db", fsync="always")
    table = db.create_table("t")
    table.insert({"id": 1})

    def fail(fd: int, data: Any) -> None:
        raise OSError(errno.ENOSPC, "injected: no space left on device")

    segment_io.before_write = fail
    with pytest.raises(LogFailedError):
        table.insert({"id": 2})
    segment_io.before_write = None
    # Memory may hold the failed statement, so nobody may observe it: reads are refused too.
    with pytest.raises(StateError):
        table.all()
    with pytest.raises(StateError):
        table.insert({"id": 3})
    with pytest.raises(LogFailedError):
        db.close()
    with DictDB.open(tmp_path / "db", fsync="always") as reopened:
        assert (2, [1]) == (reopened.lsn, list(reopened.get_table("t").records))


def test_a_backup_is_never_ahead_of_the_durable_log(tmp_path: Path, segment_io: SegmentIO) -> None:
    """While a writer's operation is applied but not yet fsynced, a backup must not put it in
    a file: a crash would leave a backup ahead of the log, and the log resuming past a hole.
    (A regression test: backups used to capture such operations.)"""
    root = tmp_path / "db"
    db = DictDB.open(root, fsync="always", segment_size=SEGMENT_SIZE)
    manager = BackupManager(db, root, incremental=True)
    table = db.create_table("t")
    for i in range(10):
        table.insert({"id": i})
    manager.backup_now()
    gate, entered = threading.Event(), threading.Event()

    def stuck(fd: int) -> None:
        entered.set()
        gate.wait(10)

    segment_io.before_fsync = stuck
    writer = threading.Thread(target=lambda: table.insert({"id": 99}))
    writer.start()
    assert entered.wait(5)
    segment_io.before_fsync = None
    backup = threading.Thread(target=manager.backup_now)
    backup.start()
    ahead = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.3:
        durable = db.engine.sink.durable_lsn if db.engine.sink is not None else 0
        ahead += [f.path.name for f in list_backups(root).files if f.last_lsn > durable]
        time.sleep(0.01)
    gate.set()
    writer.join(10)
    backup.join(10)
    db.close()
    assert [] == ahead
    assert 12 == max(f.last_lsn for f in list_backups(root).files)


def test_op_exact_restore_reads_the_log_up_to_a_hole_left_by_a_crash(tmp_path: Path) -> None:
    """A directory whose backup holds an operation its log lost (a crash image from before
    backups waited for the log): restores before the hole, and from the backup on, are exact;
    the database reopens at the backup's state and the log goes on after it."""
    root = tmp_path / "db"
    db = DictDB.open(root, fsync="always", segment_size=SEGMENT_SIZE)
    manager = BackupManager(db, root, incremental=True)
    table = db.create_table("t")
    for i in range(30):
        table.insert({"id": i})
    manager.backup_now()  # full at LSN 31
    for i in range(30, 40):
        table.insert({"id": i})
    segment = list_segments(root / "wal")[-1][1]
    before_42 = segment.stat().st_size
    table.insert({"id": 99})
    assert manager.backup_now() is not None  # a delta up to LSN 42
    db.close()
    # The crash image: the backup is on disk, the log lost operation 42.
    with open(segment, "r+b") as handle:
        handle.truncate(before_42)
    with DictDB.open(root, fsync="always", segment_size=SEGMENT_SIZE) as db:
        assert 42 == db.lsn
        for i in range(100, 110):
            db.get_table("t").insert({"id": i})
    for n in (32, 35, 41, 42, 45, 52):
        restored = restore(root, lsn=n)
        assert (n, n - 1) == (restored.lsn, len(restored.get_table("t")))
    assert 52 == restore(root).lsn


def test_a_damaged_log_names_the_segment_and_offset_on_open(tmp_path: Path) -> None:
    root = tmp_path / "db"
    with DictDB.open(root, fsync="always", segment_size=SEGMENT_SIZE) as db:
        table = db.create_table("t")
        for i in range(80):  # one frame each: byte 100 is in an early one
            table.insert({"id": i, "pad": "y" * 30})
    first = list_segments(root / "wal")[0][1]
    data = bytearray(first.read_bytes())
    data[100] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(RecoveryError) as info:
        DictDB.open(root)
    assert str(first) == info.value.segment
    assert 0 < info.value.offset <= 100
    with pytest.raises(DictDBError) as restore_error:
        restore(root)
    assert str(first) == getattr(restore_error.value, "path", None)


@pytest.mark.parametrize("fsync", ["everysec", "off"])
def test_a_background_write_failure_names_the_operations_not_on_disk(
    tmp_path: Path, segment_io: SegmentIO, fsync: str
) -> None:
    """With everysec/off, writes are acknowledged before they reach the disk: when the log
    fails in the background, the next caller learns which operations are not on disk, and
    `durable_lsn` tells where the disk stops."""
    db = DictDB.open(tmp_path / "db", fsync=fsync)
    assert db.durable_lsn is not None
    table = db.create_table("t")
    table.insert({"id": 0})
    db.engine.sink.flush()  # type: ignore[union-attr]
    on_disk = db.durable_lsn

    def fail(fd: int, data: Any) -> None:
        raise OSError(errno.ENOSPC, "injected: no space left on device")

    segment_io.before_write = fail
    acknowledged = [table.insert({"id": i}) for i in range(1, 6)]
    assert [1, 2, 3, 4, 5] == acknowledged
    applied = db.lsn
    deadline = time.monotonic() + 10
    while db.engine.sink.failed is None and time.monotonic() < deadline:  # type: ignore[union-attr]
        time.sleep(0.01)
    with pytest.raises(DurableLogError) as err:
        table.insert({"id": 99})
    assert (on_disk, (on_disk + 1, applied)) == (err.value.durable_lsn, err.value.lost)
    assert f"operations {on_disk + 1}..{applied}" in str(err.value)
    assert on_disk == db.durable_lsn
    segment_io.before_write = None
    with pytest.raises(LogFailedError):
        db.close()
    with DictDB.open(tmp_path / "db", fsync=fsync) as again:
        assert on_disk == again.lsn  # exactly what the disk held, as the error said


def test_an_in_memory_database_has_no_durable_lsn() -> None:
    assert DictDB().durable_lsn is None

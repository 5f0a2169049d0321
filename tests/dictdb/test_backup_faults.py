"""BackupManager under I/O failures: defects A8 and A9 of the reference DictDB
(``shared/reference/upstream-defects.md``) shown impossible here.

Every failure must leave no partial file under a final name and no ``.tmp`` leftover, call
``on_backup_failure(error, consecutive_failures)`` with 1, 2, ... and reset the count at the
next success, and lose nothing: a restore after that success equals the live database.

Tests run as root, so permission errors are injected by monkeypatching, not chmod.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dictdb import BackupManager, DictDB, restore
from dictdb.storage import persist
from dictdb.storage.names import NAME_PATTERN
from dictdb.storage.target import LocalDirectory
from dictdb.storage.timeline import TIMELINE_PATTERN, read_timeline
from tests.dictdb._scripts.strict import db_diff
from tests.dictdb.test_backup import Failures, wait_until

# -- helpers --------------------------------------------------------------------------------------


def assert_clean(directory: Path) -> None:
    """No temp leftovers, nothing but backups, and every backup verifies completely."""
    entries = sorted(os.listdir(directory))
    assert [n for n in entries if n.endswith(".tmp") or n.startswith(".")] == []
    assert [n for n in entries if not (NAME_PATTERN.match(n) or TIMELINE_PATTERN.match(n))] == []
    for name in entries:
        if TIMELINE_PATTERN.match(name):
            read_timeline(LocalDirectory(directory), name)  # checksum and fields
        else:
            persist.read_document(directory / name)  # checksum, format, version: complete


def assert_restores(directory: Path, live: DictDB) -> None:
    restored = restore(directory)
    assert db_diff(live.to_dict(), restored.to_dict()) == []
    assert live.lsn == restored.lsn


class _FaultyFile:
    """A file object whose ``write`` may fail after writing part of the data."""

    def __init__(self, real: Any, injector: Injector) -> None:
        self._real = real
        self._injector = injector

    def write(self, data: bytes) -> int:
        error = self._injector.hit("write")
        if error is not None:
            self._real.write(data[: len(data) // 2])  # a partial write, then the error
            self._real.flush()
            raise error
        return int(self._real.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def __enter__(self) -> _FaultyFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._real.close()


class Injector:
    """Counts the os-level calls a backup makes and fails the Nth call of one of them.

    ``write`` is the write of the file's bytes (through the file object ``os.fdopen`` returns);
    ``fsync``, ``link``, ``replace`` and ``unlink`` are the `os` functions.
    """

    OPS = ("write", "fsync", "link", "replace", "unlink")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: Counter[str] = Counter()
        self.target: tuple[str, int, OSError] | None = None
        self.lock = threading.Lock()
        for name in ("fsync", "link", "replace", "unlink"):
            monkeypatch.setattr(os, name, self._wrap(name, getattr(os, name)))
        real_fdopen = os.fdopen

        def fdopen(*args: Any, **kwargs: Any) -> Any:
            handle = real_fdopen(*args, **kwargs)
            mode = args[1] if len(args) > 1 else kwargs.get("mode", "r")
            return _FaultyFile(handle, self) if "w" in mode else handle

        monkeypatch.setattr(os, "fdopen", fdopen)

    def _wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            error = self.hit(name)
            if error is not None:
                raise error
            return real(*args, **kwargs)

        return wrapper

    def hit(self, name: str) -> OSError | None:
        with self.lock:
            self.counts[name] += 1
            target = self.target
            if target is not None and target[0] == name and target[1] == self.counts[name]:
                return target[2]
        return None

    def arm(self, name: str, n: int, error: OSError | None = None) -> None:
        with self.lock:
            self.counts.clear()
            self.target = (name, n, error or OSError(errno.EIO, f"injected {name} #{n}"))

    def disarm(self) -> None:
        with self.lock:
            self.target = None
            self.counts.clear()


@pytest.fixture
def injector(monkeypatch: pytest.MonkeyPatch) -> Injector:
    return Injector(monkeypatch)


def new_db() -> DictDB:
    db = DictDB()
    db.create_table("users").insert([{"name": f"u{i}", "n": i} for i in range(50)])
    return db


def change(db: DictDB, i: int) -> None:
    users = db.get_table("users")
    users.insert({"name": f"new{i}"})
    users.upsert({"id": 1, "name": f"v{i}"})
    if i % 2:
        db.create_table(f"t{i}").insert({"i": i})


# -- the calls a normal backup makes --------------------------------------------------------------


def normal_counts(kind: str) -> Counter[str]:
    """The os-level calls one normal backup of *kind* makes (measured, not assumed)."""
    mp = pytest.MonkeyPatch()
    try:
        inj = Injector(mp)
        with tempfile.TemporaryDirectory() as tmp:
            db = new_db()
            manager = BackupManager(db, tmp, incremental=True)
            manager.backup_full()
            change(db, 0)
            inj.disarm()
            path = manager.backup_full() if kind == "full" else manager.backup_delta()
            assert path is not None
            return Counter(inj.counts)
    finally:
        mp.undo()


def test_the_sweep_covers_every_call_a_normal_backup_makes() -> None:
    # If a backup starts making more calls, SWEEP below must grow to cover them.
    expected = Counter({"write": 1, "fsync": 2, "link": 1, "unlink": 1})
    for kind in ("full", "delta"):
        assert expected == normal_counts(kind)
    assert {(p.values[0], p.values[1]) for p in SWEEP} == {
        (op, n) for op, count in expected.items() for n in range(1, count + 1)
    }


# The sweep: (operation, N) for every call a normal backup makes (os.replace is not used: the
# manager publishes with os.link, which refuses an existing name; see the test above). A
# failure *after* the file was published (the directory fsync, or removing the temp name after
# the link) is the known bug below.
SWEEP = [
    pytest.param("write", 1, id="write#1"),
    pytest.param("fsync", 1, id="fsync#1-file"),
    pytest.param("fsync", 2, id="fsync#2-dir"),
    pytest.param("link", 1, id="link#1"),
    pytest.param("unlink", 1, id="unlink#1-tmp"),
]


@pytest.mark.parametrize("kind", ["full", "delta"])
@pytest.mark.parametrize(("op", "n"), SWEEP)
def test_failure_at_each_call_loses_nothing(
    tmp_path: Path, injector: Injector, op: str, n: int, kind: str
) -> None:
    failures = Failures()
    db = new_db()
    manager = BackupManager(
        db, tmp_path, incremental=True, max_deltas_before_full=100, on_backup_failure=failures
    )
    assert manager.backup_full() is not None

    def attempt() -> Path | None:
        return manager.backup_full() if kind == "full" else manager.backup_delta()

    states = {db.lsn: db.to_dict()}  # every state a backup was made or attempted at
    for round_, expected_counts in ((1, [1]), (2, [1, 2])):
        change(db, round_)
        states[db.lsn] = db.to_dict()
        injector.arm(op, n)
        result = attempt()
        injector.disarm()
        assert None is result
        assert expected_counts == failures.counts
        assert round_ == manager.consecutive_failures
        assert isinstance(manager.last_error, OSError)
        assert_clean(tmp_path)
        # Whatever the failure left, the directory restores to a state the database had.
        restored = restore(tmp_path)
        assert restored.lsn in states
        assert db_diff(states[restored.lsn], restored.to_dict()) == []
    change(db, 3)
    assert manager.backup_now() is not None
    assert manager.consecutive_failures == 0
    assert None is manager.last_error
    assert manager.last_success is not None
    assert_clean(tmp_path)
    assert_restores(tmp_path, db)


# -- named failures -------------------------------------------------------------------------------


def run_failing_then_recovering(
    directory: Path,
    db: DictDB,
    manager: BackupManager,
    failures: Failures,
    fail: Callable[[], None],
    heal: Callable[[], None],
    attempts: int = 3,
) -> None:
    """*attempts* failed backups (counts 1..n), then a success (reset), then a full check."""
    fail()
    try:
        for i in range(attempts):
            change(db, 10 + i)
            assert None is manager.backup_now()
            assert i + 1 == manager.consecutive_failures
        assert list(range(1, attempts + 1)) == failures.counts
    finally:
        heal()
    if directory.is_dir():
        assert_clean(directory)
    change(db, 99)
    assert manager.backup_now() is not None
    assert manager.consecutive_failures == 0
    assert_clean(directory)
    assert_restores(directory, db)


@pytest.mark.parametrize("incremental", [False, True])
def test_backup_dir_replaced_by_a_file_before_the_first_backup(
    tmp_path: Path, incremental: bool
) -> None:
    directory = tmp_path / "backups"
    failures = Failures()
    db = new_db()
    manager = BackupManager(db, directory, incremental=incremental, on_backup_failure=failures)

    def fail() -> None:
        shutil.rmtree(directory)
        directory.write_text("not a directory")

    def heal() -> None:
        directory.unlink()
        directory.mkdir()

    run_failing_then_recovering(directory, db, manager, failures, fail, heal)
    assert isinstance(failures.calls[0][0], OSError)


@pytest.mark.parametrize("incremental", [False, True], ids=["fulls", "incremental"])
def test_backup_dir_replaced_by_a_file_then_restored_recovers_with_a_new_full(
    tmp_path: Path, incremental: bool
) -> None:
    # Between fulls; and in incremental mode, the directory wiped under the chain: the next
    # success starts a new full.
    directory = tmp_path / "backups"
    failures = Failures()
    db = new_db()
    manager = BackupManager(db, directory, incremental=incremental, on_backup_failure=failures)
    assert manager.backup_now() is not None

    def fail() -> None:
        shutil.rmtree(directory)
        directory.write_text("not a directory")

    def heal() -> None:
        directory.unlink()
        directory.mkdir()

    run_failing_then_recovering(directory, db, manager, failures, fail, heal)


@pytest.mark.parametrize("incremental", [False, True])
def test_fsync_enospc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, incremental: bool) -> None:
    failures = Failures()
    db = new_db()
    manager = BackupManager(db, tmp_path, incremental=incremental, on_backup_failure=failures)
    assert manager.backup_now() is not None
    failing = threading.Event()
    real = os.fsync

    def fsync(fd: int) -> None:
        if failing.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    run_failing_then_recovering(tmp_path, db, manager, failures, failing.set, failing.clear)
    assert all(e.errno == errno.ENOSPC for e, _ in failures.calls)  # type: ignore[attr-defined]


@pytest.mark.parametrize("incremental", [False, True])
def test_write_enospc_after_a_partial_write(
    tmp_path: Path, injector: Injector, incremental: bool
) -> None:
    failures = Failures()
    db = new_db()
    manager = BackupManager(db, tmp_path, incremental=incremental, on_backup_failure=failures)
    assert manager.backup_now() is not None
    failing = threading.Event()
    real_hit = injector.hit

    def hit(name: str) -> OSError | None:
        real_hit(name)
        if name == "write" and failing.is_set():
            return OSError(errno.ENOSPC, "No space left on device")
        return None

    injector.hit = hit  # type: ignore[method-assign]
    run_failing_then_recovering(tmp_path, db, manager, failures, failing.set, failing.clear)


@pytest.mark.parametrize("incremental", [False, True])
def test_link_and_replace_raising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, incremental: bool
) -> None:
    failures = Failures()
    db = new_db()
    manager = BackupManager(db, tmp_path, incremental=incremental, on_backup_failure=failures)
    assert manager.backup_now() is not None
    failing = threading.Event()

    def failing_version(real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if failing.is_set():
                raise OSError(errno.EIO, f"injected {real.__name__} failure")
            return real(*args, **kwargs)

        return wrapper

    # Whichever of the two publishes the file, publication fails with nothing left behind.
    monkeypatch.setattr(os, "link", failing_version(os.link))
    monkeypatch.setattr(os, "replace", failing_version(os.replace))
    run_failing_then_recovering(tmp_path, db, manager, failures, failing.set, failing.clear)


@pytest.mark.parametrize("file_format", ["json", "pickle"])
def test_save_over_a_good_file_with_replace_failing_keeps_the_good_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_format: str
) -> None:
    # A8(A): a failed save over an existing file leaves the previous version intact.
    db = new_db()
    path = tmp_path / f"snapshot.{file_format}"
    db.save(path, file_format)
    good = path.read_bytes()
    saved = db.to_dict()
    change(db, 1)

    def replace(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EIO, "injected replace failure")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="injected"):
        db.save(path, file_format)
    monkeypatch.undo()
    assert good == path.read_bytes()
    assert [path.name] == os.listdir(tmp_path)
    assert db_diff(saved, DictDB.load(path).to_dict()) == []


@pytest.mark.parametrize("incremental", [False, True])
def test_permission_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, incremental: bool
) -> None:
    failures = Failures()
    db = new_db()
    manager = BackupManager(db, tmp_path, incremental=incremental, on_backup_failure=failures)
    assert manager.backup_now() is not None
    failing = threading.Event()
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args: Any, **kwargs: Any) -> Any:
        if failing.is_set():
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    run_failing_then_recovering(tmp_path, db, manager, failures, failing.set, failing.clear)
    assert all(isinstance(e, PermissionError) for e, _ in failures.calls)


def test_failed_delta_keeps_its_changes_for_the_next_delta(
    tmp_path: Path, injector: Injector
) -> None:
    db = new_db()
    manager = BackupManager(db, tmp_path, incremental=True)
    manager.backup_now()
    change(db, 1)
    injector.arm("fsync", 1, OSError(errno.ENOSPC, "full"))
    assert None is manager.backup_delta()
    injector.disarm()
    assert manager.deltas_since_full == 0
    path = manager.backup_delta()
    assert path is not None
    assert manager.deltas_since_full == 1
    upserts = persist.read_document(path)["tables"]["users"]["upserts"]
    assert {"v1", "new1"} <= {row["name"] for row in upserts}
    assert_restores(tmp_path, db)


def test_health_reports_the_last_error_and_success(tmp_path: Path, injector: Injector) -> None:
    db = new_db()
    manager = BackupManager(db, tmp_path)
    assert manager.backup_now() is not None
    first_success = manager.last_success
    assert first_success is not None
    change(db, 1)
    injector.arm("fsync", 1, OSError(errno.ENOSPC, "full"))
    manager.backup_now()
    injector.disarm()
    health = manager.health()
    assert health["consecutive_failures"] == 1
    assert "ENOSPC" in str(health["last_error"]) or "full" in str(health["last_error"])
    assert first_success == health["last_success"]
    assert manager.backup_now() is not None
    health = manager.health()
    assert (health["consecutive_failures"], health["last_error"]) == (0, None)


def test_periodic_worker_recovers_from_a_failing_disk(tmp_path: Path, injector: Injector) -> None:
    failures = Failures()
    db = new_db()
    manager = BackupManager(
        db, tmp_path, backup_interval=0.01, incremental=True, on_backup_failure=failures
    )
    manager.start()
    try:
        assert wait_until(lambda: manager.last_success is not None)
        change(db, 1)
        injector.arm("write", 1, OSError(errno.ENOSPC, "full"))
        # Fail every write until healed: re-arm after each hit.
        deadline = time.monotonic() + 5
        while len(failures.calls) < 3 and time.monotonic() < deadline:
            if injector.counts["write"] >= 1:
                injector.arm("write", 1, OSError(errno.ENOSPC, "full"))
            time.sleep(0.002)
        injector.disarm()
        assert len(failures.calls) >= 3
        assert failures.counts == list(range(1, len(failures.counts) + 1))
        assert True is manager.running
        assert wait_until(lambda: manager.consecutive_failures == 0)
        change(db, 2)
        lsn = db.lsn
        assert wait_until(lambda: manager.health()["base_lsn"] == lsn)
    finally:
        manager.stop()
    assert_clean(tmp_path)
    assert_restores(tmp_path, db)


def test_a_restore_never_sees_a_half_written_backup(tmp_path: Path, injector: Injector) -> None:
    # A8: a crash in the middle of the write leaves the previous backup intact and restorable.
    db = new_db()
    manager = BackupManager(db, tmp_path)
    manager.backup_now()
    saved = (db.lsn, db.to_dict())
    change(db, 1)
    injector.arm("write", 1, OSError(errno.EIO, "crash in the middle of the write"))
    assert None is manager.backup_now()
    injector.disarm()
    assert_clean(tmp_path)
    restored = restore(tmp_path)
    assert saved[0] == restored.lsn
    assert db_diff(saved[1], restored.to_dict()) == []

"""BackupManager: every sentence of the seed guide (``shared/seed/backups-guide.fr.txt``), and
the manager/restore defects of the reference DictDB (A1, A2, A13, A14, A15, A16 in
``shared/reference/upstream-defects.md``), each shown impossible here.

Faults (A8, A9) are in ``test_backup_faults.py``; point-in-time restore in ``test_restore.py``.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from dictdb import (
    BackupManager,
    DictDB,
    Field,
    RestoreError,
    list_backups,
    plan_restore,
    restore,
)
from dictdb.errors import CorruptFileError
from dictdb.storage import persist
from dictdb.storage.persist import apply_delta
from dictdb.storage.timeline import TIMELINE_PATTERN
from tests.dictdb._scripts.strict import db_diff

FULL_NAME = re.compile(r"^dictdb_backup_(\d+)_(\d{6})\.(json|pickle)(\.zst)?$")
DELTA_NAME = re.compile(r"^dictdb_delta_(\d+)_(\d{6})\.(json|pickle)(\.zst)?$")

# -- helpers --------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.005) -> bool:
    """Poll *predicate* until it holds or *timeout* seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def names(directory: Path) -> list[str]:
    """Every entry of *directory* but its timeline objects (`dictdb.storage.timeline`), sorted."""
    return sorted(n for n in os.listdir(directory) if not TIMELINE_PATTERN.match(n))


def fulls(directory: Path) -> list[str]:
    return [n for n in names(directory) if FULL_NAME.match(n)]


def deltas(directory: Path) -> list[str]:
    return [n for n in names(directory) if DELTA_NAME.match(n)]


def reached(directory: Path) -> int:
    """The LSN a restore of *directory* would reach (headers only), or -1 if none."""
    try:
        return plan_restore(directory).lsn
    except RestoreError:
        return -1


def assert_same(live: DictDB, restored: DictDB) -> None:
    """Same tables, definitions, next keys and rows (type for type), and the same LSN."""
    assert db_diff(live.to_dict(), restored.to_dict()) == []
    assert live.lsn == restored.lsn


def assert_restores(directory: Path, live: DictDB) -> None:
    assert_same(live, restore(directory))


def make_db(rows: int = 3) -> DictDB:
    db = DictDB()
    users = db.create_table("users")
    if rows:
        users.insert([{"name": f"user{i}", "age": i} for i in range(rows)])
    return db


class Failures:
    """An `on_backup_failure` callback that records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[BaseException, int]] = []
        self.lock = threading.Lock()

    def __call__(self, error: BaseException, consecutive_failures: int) -> None:
        with self.lock:
            self.calls.append((error, consecutive_failures))

    @property
    def counts(self) -> list[int]:
        with self.lock:
            return [n for _, n in self.calls]


@pytest.fixture
def failing_save(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """While the event is set, `persist.save` (every full backup) raises OSError."""
    failing = threading.Event()
    real = persist.save

    def save(*args: Any, **kwargs: Any) -> Any:
        if failing.is_set():
            raise OSError(28, "No space left on device (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(persist, "save", save)
    return failing


@pytest.fixture
def manager_factory(tmp_path: Path) -> Iterator[Callable[..., BackupManager]]:
    """Build managers and stop them all (without a final backup) at teardown."""
    made: list[BackupManager] = []

    def make(db: DictDB, **options: Any) -> BackupManager:
        options.setdefault("backup_dir", tmp_path / "backups")
        manager = BackupManager(db=db, **options)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.stop(final_backup=False, timeout=10)


# -- the guide: basic use and options -------------------------------------------------------------


def test_guide_basic_usage_start_then_stop_leaves_a_restorable_backup(tmp_path: Path) -> None:
    db = DictDB()
    db.create_table("users")
    backup = BackupManager(
        db=db, backup_dir=str(tmp_path / "backups"), backup_interval=300, file_format="json"
    )
    backup.start()
    assert True is backup.running
    db.get_table("users").insert({"name": "Alice"})
    backup.stop()
    assert False is backup.running
    assert len(fulls(tmp_path / "backups")) == 1
    assert_restores(tmp_path / "backups", db)


def test_guide_option_defaults(tmp_path: Path) -> None:
    expected = {
        "backup_interval": 300,
        "file_format": "json",
        "min_backup_interval": 5.0,
        "on_backup_failure": None,
        "incremental": False,
        "max_deltas_before_full": 10,
    }
    params = inspect.signature(BackupManager).parameters
    assert expected == {name: params[name].default for name in expected}
    manager = BackupManager(DictDB(), tmp_path)
    actual = {name: getattr(manager, name) for name in expected}
    assert expected == actual
    assert manager.consecutive_failures == 0
    assert manager.deltas_since_full == 0


def test_guide_every_option_is_taken_by_keyword(tmp_path: Path) -> None:
    def ma_gestion_erreur(error: Exception, consecutive_failures: int) -> None:
        pass

    backup = BackupManager(
        db=DictDB(),
        backup_dir=tmp_path / "backups",
        backup_interval=12,
        file_format="pickle",
        min_backup_interval=1.5,
        on_backup_failure=ma_gestion_erreur,
        incremental=True,
        max_deltas_before_full=4,
    )
    expected = (12.0, "pickle", 1.5, ma_gestion_erreur, True, 4)
    actual = (
        backup.backup_interval,
        backup.file_format,
        backup.min_backup_interval,
        backup.on_backup_failure,
        backup.incremental,
        backup.max_deltas_before_full,
    )
    assert expected == actual
    assert (tmp_path / "backups").is_dir()


# -- manual backups -------------------------------------------------------------------------------


def test_backup_now_in_full_mode_writes_a_full_backup_each_time(tmp_path: Path) -> None:
    db = make_db()
    manager = BackupManager(db, tmp_path)
    first = manager.backup_now()
    db.get_table("users").insert({"name": "x"})
    second = manager.backup_now()
    assert first is not None
    assert second is not None
    assert [first.name, second.name] == fulls(tmp_path)
    assert deltas(tmp_path) == []
    assert manager.deltas_since_full == 0
    assert_restores(tmp_path, db)


def test_backup_now_in_incremental_mode_writes_a_full_then_deltas(tmp_path: Path) -> None:
    db = make_db()
    users = db.get_table("users")
    manager = BackupManager(db, tmp_path, incremental=True)
    first = manager.backup_now()
    assert first is not None
    assert FULL_NAME.match(first.name)
    written = []
    for i in range(3):
        users.insert({"name": f"new{i}"})
        path = manager.backup_now()
        assert path is not None
        written.append(path.name)
        assert i + 1 == manager.deltas_since_full
    assert written == deltas(tmp_path)
    assert [first.name] == fulls(tmp_path)
    assert_restores(tmp_path, db)


def test_backup_full_writes_a_full_backup_regardless_of_mode(tmp_path: Path) -> None:
    db = make_db()
    manager = BackupManager(db, tmp_path, incremental=True)
    manager.backup_now()
    db.get_table("users").insert({"name": "x"})
    manager.backup_now()
    assert manager.deltas_since_full == 1
    db.get_table("users").insert({"name": "y"})
    path = manager.backup_full()
    assert path is not None
    assert FULL_NAME.match(path.name)
    assert manager.deltas_since_full == 0
    assert len(fulls(tmp_path)) == 2
    assert [path] == [f.path for f in plan_restore(tmp_path).files]
    assert_restores(tmp_path, db)


def test_backup_delta_writes_a_delta_in_incremental_mode(tmp_path: Path) -> None:
    db = make_db()
    manager = BackupManager(db, tmp_path, incremental=True)
    manager.backup_full()
    db.get_table("users").insert({"name": "x"})
    path = manager.backup_delta()
    assert path is not None
    assert DELTA_NAME.match(path.name)
    assert manager.deltas_since_full == 1
    assert None is manager.backup_delta()  # nothing new: no empty file
    assert len(deltas(tmp_path)) == 1
    assert_restores(tmp_path, db)


def test_backup_delta_without_a_base_writes_a_full_first(tmp_path: Path) -> None:
    db = make_db()
    manager = BackupManager(db, tmp_path, incremental=True)
    path = manager.backup_delta()
    assert path is not None
    assert FULL_NAME.match(path.name)
    assert_restores(tmp_path, db)


# -- incremental mode -----------------------------------------------------------------------------


def test_delta_holds_only_created_changed_and_deleted_rows(tmp_path: Path) -> None:
    db = DictDB()
    users = db.create_table("users")
    users.insert([{"id": i, "name": f"u{i}"} for i in range(1, 1001)])
    manager = BackupManager(db, tmp_path, incremental=True)
    manager.backup_now()
    users.insert({"id": 5000, "name": "created"})
    users.update({"name": "changed"}, where=Field("id") == 10)
    users.delete(where=Field("id") == 20)
    path = manager.backup_now()
    assert path is not None
    doc = orjson.loads(path.read_bytes())
    expected = {
        "upserts": [{"id": 5000, "name": "created"}, {"id": 10, "name": "changed"}],
        "deletes": [20],
    }
    change = doc["tables"]["users"]
    assert expected == {"upserts": change["upserts"], "deletes": change["deletes"]}
    assert list(doc["tables"]) == ["users"]
    assert_restores(tmp_path, db)


def test_full_backup_resets_delta_tracking(tmp_path: Path) -> None:
    # A13(C): the delta after a full must not repeat what the full already holds.
    db = DictDB()
    users = db.create_table("users")
    users.insert([{"name": f"u{i}"} for i in range(500)])
    manager = BackupManager(db, tmp_path, incremental=True)
    manager.backup_now()
    users.insert([{"name": f"v{i}"} for i in range(500)])
    manager.backup_full()
    users.update({"name": "one"}, where=Field("id") == 1)
    path = manager.backup_delta()
    assert path is not None
    doc = orjson.loads(path.read_bytes())
    assert doc["tables"]["users"]["upserts"] == [{"id": 1, "name": "one"}]
    assert doc["tables"]["users"]["deletes"] == []


def test_a_full_is_written_after_max_deltas_before_full_deltas(tmp_path: Path) -> None:
    db = make_db()
    users = db.get_table("users")
    manager = BackupManager(db, tmp_path, incremental=True, max_deltas_before_full=3)
    kinds = []
    counters = []
    for i in range(9):
        users.insert({"name": f"n{i}"})
        path = manager.backup_now()
        assert path is not None
        kinds.append("full" if FULL_NAME.match(path.name) else "delta")
        counters.append(manager.deltas_since_full)
    assert kinds == ["full", "delta", "delta", "delta", "full", "delta", "delta", "delta", "full"]
    assert counters == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert_restores(tmp_path, db)


def test_delta_file_structure_is_the_guides(tmp_path: Path) -> None:
    db = DictDB()
    users = db.create_table("users")
    users.insert([{"id": 1, "name": "A"}, {"id": 2, "name": "B"}, {"id": 3, "name": "C"}])
    manager = BackupManager(db, tmp_path, incremental=True)
    manager.backup_now()
    users.upsert({"id": 1, "name": "Alice"})
    users.delete(where=Field("id") == 2)
    users.delete(where=Field("id") == 3)
    before = time.time()
    path = manager.backup_now()
    after = time.time()
    assert path is not None
    doc = orjson.loads(path.read_bytes())
    assert doc["type"] == "delta"
    assert float is type(doc["timestamp"])
    assert before <= doc["timestamp"] <= after
    expected = {"users": {"upserts": [{"id": 1, "name": "Alice"}], "deletes": [2, 3]}}
    actual = {
        name: {"upserts": t["upserts"], "deletes": t["deletes"]}
        for name, t in doc["tables"].items()
    }
    assert expected == actual


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_pickle_delta_has_the_same_structure(tmp_path: Path, compression: str | None) -> None:
    db = DictDB()
    users = db.create_table("users")
    users.insert([{"id": 1, "name": "A"}, {"id": 2, "name": "B"}])
    manager = BackupManager(
        db, tmp_path, file_format="pickle", incremental=True, compression=compression
    )
    manager.backup_now()
    users.upsert({"id": 1, "name": "Alice"})
    users.delete(where=Field("id") == 2)
    path = manager.backup_now()
    assert path is not None
    doc = persist.read_document(path)
    assert ("delta", float) == (doc["type"], type(doc["timestamp"]))
    expected = {"upserts": [{"id": 1, "name": "Alice"}], "deletes": [2]}
    change = doc["tables"]["users"]
    assert expected == {"upserts": change["upserts"], "deletes": change["deletes"]}
    assert_restores(tmp_path, db)


# -- monitoring and failures ----------------------------------------------------------------------


def test_on_backup_failure_gets_the_error_and_consecutive_count(
    tmp_path: Path, failing_save: threading.Event
) -> None:
    failures = Failures()
    db = make_db()
    manager = BackupManager(db, tmp_path, on_backup_failure=failures)
    failing_save.set()
    for expected in (1, 2, 3):
        assert None is manager.backup_now()
        assert expected == manager.consecutive_failures
    assert failures.counts == [1, 2, 3]
    assert all(isinstance(e, OSError) and e.errno == 28 for e, _ in failures.calls)
    assert isinstance(manager.last_error, OSError)
    failing_save.clear()
    assert manager.backup_now() is not None
    assert manager.consecutive_failures == 0
    assert None is manager.last_error
    failing_save.set()
    manager.backup_now()
    assert failures.counts == [1, 2, 3, 1]
    assert_restores(tmp_path, db)


def test_deltas_since_full_property_counts_deltas(tmp_path: Path) -> None:
    db = make_db()
    manager = BackupManager(db, tmp_path, incremental=True)
    assert manager.deltas_since_full == 0
    manager.backup_now()
    observed = [manager.deltas_since_full]
    for i in range(4):
        db.get_table("users").insert({"i": i})
        manager.backup_delta()
        observed.append(manager.deltas_since_full)
    manager.backup_full()
    observed.append(manager.deltas_since_full)
    assert observed == [0, 1, 2, 3, 4, 0]


def test_raising_callback_is_logged_not_fatal(
    tmp_path: Path, failing_save: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    def callback(error: BaseException, count: int) -> None:
        raise RuntimeError("the callback itself is broken")

    db = make_db()
    manager = BackupManager(db, tmp_path, on_backup_failure=callback)
    failing_save.set()
    with caplog.at_level(logging.ERROR, logger="dictdb"):
        assert None is manager.backup_now()
        assert None is manager.backup_now()
    assert manager.consecutive_failures == 2
    assert any("callback raised" in r.getMessage() for r in caplog.records)
    failing_save.clear()
    assert manager.backup_now() is not None
    assert manager.consecutive_failures == 0


def test_callback_may_call_back_into_the_manager(
    tmp_path: Path, failing_save: threading.Event
) -> None:
    db = make_db()
    holder: list[BackupManager] = []

    def callback(error: BaseException, count: int) -> None:
        failing_save.clear()
        holder[0].stop()  # e.g. "give up and flush what we can" after a failure

    manager = BackupManager(db, tmp_path, on_backup_failure=callback)
    holder.append(manager)
    failing_save.set()
    caller = threading.Thread(target=manager.backup_now, daemon=True)
    caller.start()
    caller.join(3)
    assert False is caller.is_alive()  # a deadlocked daemon thread is left behind otherwise
    assert_restores(tmp_path, db)


# -- file names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_format", "compression", "suffix"),
    [
        ("json", None, ".json"),
        ("pickle", None, ".pickle"),
        ("json", "zstd", ".json.zst"),
        ("pickle", "zstd", ".pickle.zst"),
    ],
)
def test_file_names_follow_the_guide(
    tmp_path: Path, file_format: str, compression: str | None, suffix: str
) -> None:
    db = make_db()
    manager = BackupManager(
        db, tmp_path, file_format=file_format, compression=compression, incremental=True
    )
    full = manager.backup_now()
    db.get_table("users").insert({"x": 1})
    delta = manager.backup_now()
    assert full is not None
    assert delta is not None
    full_match = FULL_NAME.match(full.name)
    delta_match = DELTA_NAME.match(delta.name)
    assert full_match is not None
    assert delta_match is not None
    assert full.name.endswith(suffix)
    assert delta.name.endswith(suffix)
    assert [full.name, delta.name] == names(tmp_path)
    # The stamp in the name is the write time, to the microsecond.
    stamp = int(delta_match.group(1)) + int(delta_match.group(2)) / 1e6
    assert abs(time.time() - stamp) < 60
    assert_restores(tmp_path, db)


# -- the guide's manual restore recipe ------------------------------------------------------------


def _stamp(path: Path) -> tuple[int, int]:
    match = FULL_NAME.match(path.name) or DELTA_NAME.match(path.name)
    assert match is not None
    return int(match.group(1)), int(match.group(2))


def test_guide_manual_restore_recipe_works_on_a_manager_directory(tmp_path: Path) -> None:
    backup_dir = tmp_path / "backups"
    db = make_db()
    users = db.get_table("users")
    manager = BackupManager(db, backup_dir, incremental=True, max_deltas_before_full=3)
    for i in range(8):
        users.upsert({"id": 1, "name": f"v{i}"})
        users.insert({"n": i})
        if i % 3 == 2:
            db.create_table(f"extra{i}").insert({"i": i})
        manager.backup_now()
        time.sleep(0.002)  # distinct microsecond stamps, as in any real run

    # The recipe, word for word, plus the filtering the guide leaves "à prévoir".
    full_backups = sorted(backup_dir.glob("dictdb_backup_*.json"))
    assert full_backups
    latest = full_backups[-1]
    restored = DictDB.load(str(latest), file_format="json")
    applied = []
    for delta_file in sorted(backup_dir.glob("dictdb_delta_*.json")):
        if _stamp(delta_file) <= _stamp(latest):
            continue  # a delta from before the chosen full
        nb_touches = apply_delta(restored, delta_file)
        applied.append(nb_touches)
    assert applied == [3, 2, 2]  # the deltas after the newest full: rows touched
    assert_same(db, restored)
    assert_same(db, restore(backup_dir))


def test_guide_recipe_without_filtering_fails_loudly_instead_of_rolling_back(
    tmp_path: Path,
) -> None:
    # A13(H): applying deltas older than the base must not silently roll values back.
    db = make_db()
    users = db.get_table("users")
    manager = BackupManager(db, tmp_path, incremental=True)
    manager.backup_now()
    users.upsert({"id": 1, "name": "v1"})
    manager.backup_now()
    users.upsert({"id": 1, "name": "v2"})
    latest = manager.backup_full()
    assert latest is not None
    restored = DictDB.load(str(latest), file_format="json")
    before = restored.to_dict()
    old_delta = sorted(tmp_path.glob("dictdb_delta_*.json"))[0]
    with pytest.raises(CorruptFileError, match="overlap"):
        apply_delta(restored, old_delta)
    assert db_diff(before, restored.to_dict()) == []
    assert restored.get_table("users").get(1)["name"] == "v2"


# -- lifecycle (A16) ------------------------------------------------------------------------------


def test_stop_before_start_is_harmless(tmp_path: Path) -> None:
    manager = BackupManager(make_db(), tmp_path)
    manager.stop(final_backup=False)
    manager.stop()
    assert False is manager.running


def test_start_twice_and_start_after_stop(tmp_path: Path) -> None:
    db = make_db()
    manager = BackupManager(db, tmp_path, backup_interval=0.02)
    manager.start()
    manager.start()
    assert True is manager.running
    assert sum(t.name == "dictdb-backup" and t.is_alive() for t in threading.enumerate()) == 1
    manager.stop()
    assert False is manager.running
    manager.start()
    assert True is manager.running
    db.get_table("users").insert({"after": "restart"})
    assert wait_until(lambda: reached(tmp_path) == db.lsn)
    manager.stop()
    assert_restores(tmp_path, db)


def test_context_manager_starts_and_stops_with_a_final_backup(tmp_path: Path) -> None:
    db = make_db()
    with BackupManager(db, tmp_path, backup_interval=3600) as manager:
        assert True is manager.running
        db.get_table("users").insert({"inside": True})
    assert False is manager.running
    assert_restores(tmp_path, db)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"file_format": "jsn"}, ValueError),
        ({"file_format": "JSONX"}, ValueError),
        ({"backup_interval": -1}, ValueError),
        ({"backup_interval": 0}, ValueError),
        ({"min_backup_interval": -0.5}, ValueError),
        ({"max_deltas_before_full": 0}, ValueError),
        ({"max_deltas_before_full": -3}, ValueError),
        ({"max_deltas_before_full": 2.5}, ValueError),
        ({"compression": "gzip"}, ValueError),
        ({"keep_chains": 0}, ValueError),
        ({"keep_for": -1}, ValueError),
        ({"on_backup_failure": "not callable"}, TypeError),
    ],
)
def test_options_are_validated_at_construction(
    tmp_path: Path, options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        BackupManager(make_db(), tmp_path / "b", **options)
    assert not (tmp_path / "b").exists() or names(tmp_path / "b") == []


def test_backup_dir_that_is_a_file_is_refused_at_construction(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(OSError):
        BackupManager(make_db(), target)


def test_huge_backup_interval_is_refused_or_keeps_the_worker_alive(tmp_path: Path) -> None:
    db = make_db()
    try:
        manager = BackupManager(db, tmp_path, backup_interval=float("inf"), min_backup_interval=0)
    except ValueError:
        return  # refusing it at construction is fine too
    try:
        manager.start()
        time.sleep(0.05)
        db.get_table("users").insert({"x": 1})
        manager.notify_change()
        assert wait_until(lambda: len(fulls(tmp_path)) == 1, timeout=2)
        assert True is manager.running
    finally:
        manager.stop(final_backup=False, timeout=5)


def test_stop_waits_for_a_backup_in_flight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = threading.Event()
    finished = threading.Event()
    real = persist.save

    def slow_save(*args: Any, **kwargs: Any) -> Any:
        started.set()
        time.sleep(0.3)
        path = real(*args, **kwargs)
        finished.set()
        return path

    monkeypatch.setattr(persist, "save", slow_save)
    db = make_db()
    manager = BackupManager(db, tmp_path, min_backup_interval=0)
    manager.notify_change()
    assert started.wait(5)
    manager.stop(final_backup=False)
    assert True is finished.is_set()
    assert len(fulls(tmp_path)) == 1
    assert_restores(tmp_path, db)


@pytest.mark.parametrize("incremental", [False, True])
def test_stop_final_backup_flushes_changes_since_the_last_backup(
    tmp_path: Path, incremental: bool
) -> None:
    db = make_db()
    manager = BackupManager(db, tmp_path, backup_interval=3600, incremental=incremental)
    manager.start()
    manager.backup_now()
    db.get_table("users").insert({"late": 1})
    db.create_table("late_table").insert({"x": 1})
    manager.stop()
    assert_restores(tmp_path, db)


def test_stop_without_final_backup_writes_nothing(tmp_path: Path) -> None:
    db = make_db()
    manager = BackupManager(db, tmp_path, backup_interval=3600, incremental=True)
    manager.start()
    manager.backup_now()
    before = names(tmp_path)
    db.get_table("users").insert({"late": 1})
    manager.stop(final_backup=False)
    assert before == names(tmp_path)
    assert db.lsn - 1 == restore(tmp_path).lsn


def test_stop_with_nothing_new_writes_nothing(tmp_path: Path) -> None:
    db = make_db()
    manager = BackupManager(db, tmp_path, incremental=True)
    manager.backup_now()
    before = names(tmp_path)
    manager.stop()
    assert before == names(tmp_path)


def test_periodic_backups_run_every_backup_interval(tmp_path: Path) -> None:
    db = make_db()
    manager = BackupManager(db, tmp_path, backup_interval=0.03, incremental=True)
    manager.start()
    try:
        for i in range(4):
            db.get_table("users").insert({"i": i})
            lsn = db.lsn
            assert wait_until(lambda lsn=lsn: reached(tmp_path) == lsn, timeout=5)
    finally:
        manager.stop()
    assert len(deltas(tmp_path)) >= 1
    assert_restores(tmp_path, db)


# -- A1: consistent cuts under concurrent writers -------------------------------------------------


def run_consistent_cut_round(directory: Path, writers: int = 3, min_deltas: int = 15) -> None:
    """Writers insert and upsert while another thread takes deltas in a loop; then a last delta:
    the restore must equal the live database."""
    db = DictDB()
    table = db.create_table("t")
    table.insert([{"v": 0, "w": -1} for _ in range(2000)])
    manager = BackupManager(db, directory, incremental=True, max_deltas_before_full=10**6)
    assert manager.backup_full() is not None
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in itertools.count():
                if stop.is_set():
                    return
                key = table.insert({"v": i, "w": k})
                table.upsert({"id": (i * 7 + k) % 2000 + 1, "v": i, "w": k})
                table.upsert({"id": key, "v": -i, "w": k})
                if i % 20 == 0:
                    time.sleep(0.001)  # let the backup thread run: deltas cut mid-stream
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    written = 0
    deadline = time.monotonic() + 10
    while written < min_deltas and time.monotonic() < deadline:
        if manager.backup_delta() is not None:
            written += 1
        time.sleep(0.002)
    stop.set()
    for t in threads:
        t.join(10)
    assert errors == []
    assert min_deltas <= written
    assert manager.backup_delta() is not None
    assert manager.consecutive_failures == 0
    assert_restores(directory, db)


def test_deltas_taken_during_concurrent_writes_lose_nothing(tmp_path: Path) -> None:
    for round_ in range(3):
        run_consistent_cut_round(tmp_path / f"round{round_}")


@pytest.mark.slow
def test_deltas_taken_during_concurrent_writes_lose_nothing_20_rounds(tmp_path: Path) -> None:
    for round_ in range(20):
        run_consistent_cut_round(tmp_path / f"round{round_}", writers=4)


# -- A2: table lifecycle --------------------------------------------------------------------------


def test_tables_created_dropped_and_recreated_after_the_full_are_restored(
    tmp_path: Path,
) -> None:
    db = DictDB()
    db.create_table("users").insert({"name": "u"})
    db.create_table("old").insert([{"x": 1}, {"x": 2}])
    db.create_table("recreated").insert([{"name": "old1"}, {"name": "old2"}])
    manager = BackupManager(db, tmp_path, incremental=True)
    manager.backup_now()
    db.create_table("orders", primary_key="order_id").insert({"order_id": "o1", "n": 1})
    db.create_table("events", schema={"id": int, "what": str}).insert({"what": "boot"})
    db.drop_table("old")
    db.drop_table("recreated")
    db.create_table("recreated").insert({"id": 3, "name": "new3"})
    path = manager.backup_now()
    assert path is not None
    assert DELTA_NAME.match(path.name)
    restored = restore(tmp_path)
    assert_same(db, restored)
    assert restored.list_tables() == ["users", "orders", "events", "recreated"]
    assert restored.get_table("recreated").all() == [{"id": 3, "name": "new3"}]
    assert restored.get_table("orders").primary_key == "order_id"


def test_a_drop_alone_produces_a_delta(tmp_path: Path) -> None:
    db = make_db()
    db.create_table("b").insert({"x": 1})
    manager = BackupManager(db, tmp_path, incremental=True)
    manager.backup_now()
    db.drop_table("b")
    path = manager.backup_now()
    assert path is not None
    assert DELTA_NAME.match(path.name)
    doc = orjson.loads(path.read_bytes())
    assert [{"lsn": db.lsn, "op": "drop", "table": "b"}] == doc["ddl"]
    assert restore(tmp_path).list_tables() == ["users"]


def test_drop_then_recreate_with_other_rows_does_not_resurrect_old_rows(tmp_path: Path) -> None:
    db = DictDB()
    t = db.create_table("t")
    t.insert([{"id": 1, "v": "old1"}, {"id": 2, "v": "old2"}])
    manager = BackupManager(db, tmp_path, incremental=True)
    manager.backup_now()
    t.update({"v": "changed"}, where=Field("id") == 1)
    db.drop_table("t")
    db.create_table("t").insert({"id": 2, "v": "new2"})
    manager.backup_now()
    restored = restore(tmp_path)
    assert restored.get_table("t").all() == [{"id": 2, "v": "new2"}]
    assert_same(db, restored)


# -- A13: names, ordering, first backup -----------------------------------------------------------


def test_incremental_first_backup_is_a_full(tmp_path: Path) -> None:
    db = make_db()
    manager = BackupManager(db, tmp_path, incremental=True, max_deltas_before_full=10)
    path = manager.backup_now()
    assert path is not None
    assert FULL_NAME.match(path.name)
    assert_restores(tmp_path, db)


def test_same_second_names_never_collide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.5)
    db = make_db()
    users = db.get_table("users")
    manager = BackupManager(db, tmp_path, incremental=True, max_deltas_before_full=3)
    written = []
    for i in range(8):
        users.upsert({"id": 1, "name": f"v{i}"})
        path = manager.backup_now()
        assert path is not None
        written.append(path.name)
    other = BackupManager(db, tmp_path)
    extra = other.backup_full()
    assert extra is not None
    written.append(extra.name)
    assert len(set(written)) == 9
    assert sorted(written) == names(tmp_path)
    assert_restores(tmp_path, db)


def test_wall_clock_stepping_backwards_does_not_reorder_restore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = itertools.count(0)
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0 - 10 * next(clock))
    db = make_db()
    users = db.get_table("users")
    manager = BackupManager(db, tmp_path, incremental=True)
    manager.backup_now()
    for version in ("v1", "v2", "v3"):
        users.upsert({"id": 1, "name": version})
        assert manager.backup_now() is not None
    # Names now sort newest first; restore must go by LSN.
    assert sorted(deltas(tmp_path), reverse=True) == [
        p.path.name for p in plan_restore(tmp_path).files[1:]
    ]
    restored = restore(tmp_path)
    assert restored.get_table("users").get(1)["name"] == "v3"
    assert_same(db, restored)


def test_deltas_older_than_the_chosen_full_are_never_applied(tmp_path: Path) -> None:
    db = make_db()
    users = db.get_table("users")
    manager = BackupManager(db, tmp_path, incremental=True)
    manager.backup_now()
    users.upsert({"id": 1, "name": "v1"})
    manager.backup_now()
    users.upsert({"id": 1, "name": "v2"})
    newest_full = manager.backup_full()
    users.upsert({"id": 1, "name": "v3"})
    last = manager.backup_now()
    assert newest_full is not None
    assert last is not None
    assert [newest_full, last] == [f.path for f in plan_restore(tmp_path).files]
    restored = restore(tmp_path)
    assert restored.get_table("users").get(1)["name"] == "v3"
    assert_same(db, restored)


# -- A14: the worker never dies -------------------------------------------------------------------


def test_worker_survives_failing_backups_and_counts_them(
    tmp_path: Path, failing_save: threading.Event
) -> None:
    failures = Failures()
    db = make_db()
    manager = BackupManager(db, tmp_path, backup_interval=0.01, on_backup_failure=failures)
    failing_save.set()
    manager.start()
    try:
        assert wait_until(lambda: len(failures.counts) >= 3)
        assert True is manager.running
        failing_save.clear()
        assert wait_until(lambda: manager.consecutive_failures == 0 and bool(fulls(tmp_path)))
        counts = failures.counts
        assert list(range(1, len(counts) + 1)) == counts
        assert True is manager.running
        db.get_table("users").insert({"after": "recovery"})
        assert wait_until(lambda: reached(tmp_path) == db.lsn)
    finally:
        manager.stop()
    assert_restores(tmp_path, db)


def test_worker_survives_unexpected_errors_outside_the_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = Failures()
    db = make_db()
    manager = BackupManager(db, tmp_path, backup_interval=0.01, on_backup_failure=failures)
    broken = threading.Event()
    broken.set()
    real = BackupManager.backup_now

    def backup_now(self: BackupManager) -> Path | None:
        if broken.is_set():
            raise RuntimeError("dictionary changed size during iteration")
        return real(self)

    monkeypatch.setattr(BackupManager, "backup_now", backup_now)
    manager.start()
    try:
        assert wait_until(lambda: len(failures.counts) >= 3)
        assert True is manager.running
        assert isinstance(failures.calls[0][0], RuntimeError)
        broken.clear()
        assert wait_until(lambda: manager.consecutive_failures == 0 and bool(fulls(tmp_path)))
    finally:
        manager.stop()
    assert_restores(tmp_path, db)


def test_raising_callback_does_not_kill_the_worker(
    tmp_path: Path, failing_save: threading.Event
) -> None:
    calls: list[int] = []

    def callback(error: BaseException, count: int) -> None:
        calls.append(count)
        raise ValueError("bad callback")

    db = make_db()
    manager = BackupManager(db, tmp_path, backup_interval=0.01, on_backup_failure=callback)
    failing_save.set()
    manager.start()
    try:
        assert wait_until(lambda: len(calls) >= 3)
        assert True is manager.running
        failing_save.clear()
        assert wait_until(lambda: manager.consecutive_failures == 0)
    finally:
        manager.stop()
    assert calls[:3] == [1, 2, 3]


@pytest.mark.parametrize("incremental", [False, True])
def test_create_and_drop_tables_during_periodic_backups(tmp_path: Path, incremental: bool) -> None:
    failures = Failures()
    db = make_db()
    manager = BackupManager(
        db, tmp_path, backup_interval=0.005, incremental=incremental, on_backup_failure=failures
    )
    manager.start()
    errors: list[BaseException] = []

    def churn(k: int) -> None:
        try:
            deadline = time.monotonic() + 0.6
            i = 0
            while time.monotonic() < deadline:
                name = f"t{k}_{i % 7}"
                if name in db:
                    db.drop_table(name)
                else:
                    db.create_table(name).insert([{"i": i}, {"i": -i}])
                i += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    try:
        assert errors == []
        assert True is manager.running
        assert failures.calls == []
        assert wait_until(lambda: reached(tmp_path) == db.lsn)
    finally:
        manager.stop()
    assert_restores(tmp_path, db)


# -- A15: notify_change ---------------------------------------------------------------------------


def test_notify_change_returns_at_once_with_a_big_database(tmp_path: Path) -> None:
    db = DictDB()
    db.create_table("big").insert([{"name": f"user{i}", "age": i % 90} for i in range(200_000)])
    manager = BackupManager(db, tmp_path, min_backup_interval=0.01)
    try:
        durations = []
        for i in range(5):
            db.get_table("big").insert({"more": i})
            start = time.perf_counter()
            manager.notify_change()
            durations.append(time.perf_counter() - start)
            time.sleep(0.01)
        assert max(durations) < 0.05, durations
        assert wait_until(lambda: reached(tmp_path) == db.lsn, timeout=30)
    finally:
        manager.stop(final_backup=False, timeout=30)


def test_notifications_inside_the_window_give_one_trailing_backup(tmp_path: Path) -> None:
    window = 0.4
    db = make_db()
    users = db.get_table("users")
    manager = BackupManager(db, tmp_path, min_backup_interval=window)
    try:
        assert manager.backup_full() is not None
        t0 = time.monotonic()
        users.insert({"n": 1})
        manager.notify_change()
        users.insert({"n": 2})
        manager.notify_change()
        time.sleep(window / 4)
        assert len(fulls(tmp_path)) == 1  # not before the window ends
        assert wait_until(lambda: len(fulls(tmp_path)) == 2, timeout=5)
        assert time.monotonic() - t0 >= window * 0.9
        time.sleep(window * 1.5)
        assert len(fulls(tmp_path)) == 2  # one trailing backup, not two
    finally:
        manager.stop(final_backup=False)
    assert_restores(tmp_path, db)


def test_concurrent_notifications_give_one_backup(tmp_path: Path) -> None:
    db = make_db()
    manager = BackupManager(db, tmp_path, min_backup_interval=60)
    barrier = threading.Barrier(8)

    def notify() -> None:
        barrier.wait(5)
        for _ in range(20):
            manager.notify_change()

    threads = [threading.Thread(target=notify) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert wait_until(lambda: len(fulls(tmp_path)) >= 1)
        time.sleep(0.2)
        assert len(fulls(tmp_path)) == 1
    finally:
        manager.stop(final_backup=False)
    assert_restores(tmp_path, db)


def test_notify_change_uses_a_monotonic_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = make_db()
    manager = BackupManager(db, tmp_path, min_backup_interval=0.1)
    try:
        assert manager.backup_full() is not None
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() - 3600)  # the wall clock steps back 1 h
        time.sleep(0.15)
        db.get_table("users").insert({"n": 1})
        manager.notify_change()
        assert wait_until(lambda: len(fulls(tmp_path)) == 2, timeout=2)
    finally:
        manager.stop(final_backup=False)
    assert_restores(tmp_path, db)


def test_notify_change_backs_up_in_incremental_mode(tmp_path: Path) -> None:
    db = make_db()
    manager = BackupManager(db, tmp_path, incremental=True, min_backup_interval=0.02)
    try:
        for i in range(3):
            db.get_table("users").insert({"n": i})
            manager.notify_change()
            lsn = db.lsn
            assert wait_until(lambda lsn=lsn: reached(tmp_path) == lsn)
    finally:
        manager.stop(final_backup=False)
    assert len(fulls(tmp_path)) == 1
    assert len(deltas(tmp_path)) >= 1
    assert_restores(tmp_path, db)


def test_failing_notified_backups_still_respect_min_backup_interval(
    tmp_path: Path, failing_save: threading.Event
) -> None:
    failures = Failures()
    db = make_db()
    manager = BackupManager(db, tmp_path, min_backup_interval=0.5, on_backup_failure=failures)
    try:
        assert manager.backup_full() is not None
        time.sleep(0.6)
        failing_save.set()
        for i in range(5):
            db.get_table("users").insert({"n": i})
            manager.notify_change()
            time.sleep(0.04)
        assert len(failures.calls) == 1
    finally:
        failing_save.clear()
        manager.stop(final_backup=False)


def test_a_failed_notified_backup_is_retried(tmp_path: Path, failing_save: threading.Event) -> None:
    failures = Failures()
    db = make_db()
    manager = BackupManager(db, tmp_path, min_backup_interval=0.1, on_backup_failure=failures)
    try:
        failing_save.set()
        db.get_table("users").insert({"n": 1})
        manager.notify_change()
        assert wait_until(lambda: len(failures.calls) >= 1)
        failing_save.clear()
        assert wait_until(lambda: len(fulls(tmp_path)) == 1, timeout=1.5)
    finally:
        manager.stop(final_backup=False)
    assert_restores(tmp_path, db)


# -- retention ------------------------------------------------------------------------------------


def test_keep_chains_keeps_the_newest_chains(tmp_path: Path) -> None:
    db = make_db()
    users = db.get_table("users")
    manager = BackupManager(db, tmp_path, incremental=True, max_deltas_before_full=2, keep_chains=2)
    for i in range(12):
        users.insert({"n": i})
        manager.backup_now()
    catalog = list_backups(tmp_path)
    assert len(catalog.chains) == 2
    kept = {f.path.name for c in catalog.chains for f in c.files}
    assert kept == set(names(tmp_path))
    # The kept chains are the newest: the newest one ends at the live LSN.
    assert db.lsn == catalog.chains[-1].last_lsn
    assert catalog.chains[0].full.last_lsn < catalog.chains[1].full.last_lsn
    assert_restores(tmp_path, db)


def test_keep_for_deletes_chains_older_than_the_horizon(tmp_path: Path) -> None:
    db = make_db()
    users = db.get_table("users")
    manager = BackupManager(db, tmp_path, incremental=True, keep_for=0.3)
    manager.backup_now()
    users.insert({"n": 1})
    manager.backup_now()
    old = set(names(tmp_path))
    time.sleep(0.4)
    users.insert({"n": 2})
    manager.backup_full()
    users.insert({"n": 3})
    manager.backup_now()
    users.insert({"n": 4})
    manager.backup_full()  # retention runs after a full
    assert set() == old & set(names(tmp_path))
    assert len(list_backups(tmp_path).chains) == 2
    assert_restores(tmp_path, db)


def test_retention_never_deletes_the_newest_chain(tmp_path: Path) -> None:
    db = make_db()
    manager = BackupManager(db, tmp_path, incremental=True, keep_for=0.01, keep_chains=1)
    for i in range(3):
        db.get_table("users").insert({"n": i})
        manager.backup_full()
        db.get_table("users").insert({"m": i})
        manager.backup_delta()
        time.sleep(0.05)
    manager.backup_full()
    catalog = list_backups(tmp_path)
    assert len(catalog.chains) == 1
    assert db.lsn == catalog.chains[0].last_lsn
    assert_restores(tmp_path, db)

"""Restore and point-in-time restore from a backup directory (`restore`, `plan_restore`,
`list_backups`): every backup point is reachable by LSN and by time, never past the target;
gaps, overlaps and damaged files fail loudly and name the file (defects A8, A10 and A13 of
``shared/reference/upstream-defects.md``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dictdb import BackupManager, DictDB, RestoreError, list_backups, plan_restore, restore
from dictdb.storage import _files as files
from dictdb.storage import persist
from tests.dictdb._scripts.strict import db_diff
from tests.dictdb._scripts.workload import random_statement, sample_values

#: (file_format, compression) pairs; one directory may mix them file by file.
CHOICES = [("json", None), ("json", "zstd"), ("pickle", None), ("pickle", "zstd")]


class Point(NamedTuple):
    """The state right after a backup: its LSN, the journal time of operation `lsn`, the rows."""

    lsn: int
    ts: float
    state: dict[str, Any]
    path: Path | None


def point(db: DictDB, path: Path | None) -> Point:
    return Point(db.lsn, db.journal.last_ts, db.to_dict(), path)


def assert_state(expected: Point, restored: DictDB) -> None:
    assert expected.lsn == restored.lsn
    assert db_diff(expected.state, restored.to_dict()) == []


def expected_at(points: list[Point], ts: float) -> Point | None:
    """The newest backup point whose time is at or before *ts*."""
    before = [p for p in points if p.ts <= ts]
    return max(before, key=lambda p: p.lsn) if before else None


pytestmark = pytest.mark.usefixtures("quiet_dictdb_logs")  # tests/dictdb/conftest.py


# -- random histories -----------------------------------------------------------------------------


def run_history(data: st.DataObject, directory: Path) -> tuple[DictDB, list[Point]]:
    """A random workload with backups of random kinds and formats at random points."""
    db = DictDB()
    manager = BackupManager(
        db,
        directory,
        incremental=True,
        max_deltas_before_full=data.draw(st.integers(1, 4), label="max_deltas_before_full"),
    )
    points: list[Point] = []
    for _ in range(data.draw(st.integers(3, 25), label="steps")):
        if data.draw(st.integers(0, 3), label="backup?") == 0:
            fmt, comp = data.draw(st.sampled_from(CHOICES), label="format")
            manager.file_format, manager.compression = fmt, comp
            action = data.draw(st.sampled_from(["now", "now", "full", "delta"]), label="kind")
            path = getattr(manager, f"backup_{action}")()
            assert manager.consecutive_failures == 0
            points.append(point(db, path))
        else:
            random_statement(data, db)
    path = manager.backup_now()
    points.append(point(db, path))
    return db, points


@given(data=st.data())
def test_restore_by_lsn_and_time_at_every_backup_point(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        _, points = run_history(data, directory)
        assert_state(points[-1], restore(directory))
        for p in points:
            assert_state(p, restore(directory, lsn=p.lsn))
            expected = expected_at(points, p.ts)
            assert expected is not None
            assert_state(expected, restore(directory, at=p.ts))
            assert p.lsn == plan_restore(directory, lsn=p.lsn).lsn


@given(data=st.data())
def test_targets_between_backups_stop_at_the_earlier_one(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        _, points = run_history(data, directory)
        distinct = sorted({p.lsn: p for p in points}.values(), key=lambda p: p.lsn)
        for earlier, later in itertools.pairwise(distinct):
            if later.lsn - earlier.lsn >= 2:
                target = data.draw(st.integers(earlier.lsn + 1, later.lsn - 1), label="lsn")
                restored = restore(directory, lsn=target)
                assert_state(earlier, restored)  # never past the target; lsn says where
                assert earlier.lsn == plan_restore(directory, lsn=target).lsn
            if later.ts > earlier.ts:
                at = (earlier.ts + later.ts) / 2
                expected = expected_at(points, at)
                assert expected is not None
                assert_state(expected, restore(directory, at=at))
        # Beyond the newest point: an error naming it (never another answer).
        with pytest.raises(RestoreError, match=f"newest point .*LSN {distinct[-1].lsn} "):
            restore(directory, lsn=distinct[-1].lsn + 1000)
        first = points[0]
        if first.lsn > 0:
            with pytest.raises(RestoreError):
                restore(directory, lsn=first.lsn - 1)
            with pytest.raises(RestoreError):
                restore(directory, at=first.ts - 1.0)
            with pytest.raises(RestoreError):
                plan_restore(directory, lsn=first.lsn - 1)


# -- hand-built histories -------------------------------------------------------------------------


class History:
    """A database, a manager and the points of every backup it wrote."""

    def __init__(self, directory: Path, **options: Any) -> None:
        self.directory = directory
        self.db = DictDB()
        self.table = self.db.create_table("t")
        self.manager = BackupManager(self.db, directory, incremental=True, **options)
        self.points: list[Point] = []
        self.counter = 0

    def work(self, rows: int = 2) -> None:
        for _ in range(rows):
            self.counter += 1
            self.table.insert({"n": self.counter, "v": sample_values(around=2)})
        self.table.upsert({"id": 1, "last": self.counter})

    def backup(self, kind: str = "now") -> Point:
        path = getattr(self.manager, f"backup_{kind}")()
        assert path is not None
        p = point(self.db, path)
        self.points.append(p)
        return p


@pytest.fixture
def history(tmp_path: Path) -> History:
    """full, delta, delta, full, delta, delta: six files, two chains."""
    h = History(tmp_path / "backups", max_deltas_before_full=100)
    for kind in ("now", "delta", "delta", "full", "delta", "delta"):
        h.work()
        h.backup(kind)
    return h


def test_restore_at_a_datetime(history: History) -> None:
    for p in history.points:
        aware = dt.datetime.fromtimestamp(p.ts, dt.UTC) + dt.timedelta(microseconds=1)
        assert_state(p, restore(history.directory, at=aware))


def test_plan_restore_is_a_dry_run(history: History, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("plan_restore must not load any file")

    monkeypatch.setattr(persist, "load", refuse)
    monkeypatch.setattr(persist, "apply_delta", refuse)
    monkeypatch.setattr(persist, "read_document", refuse)
    paths = [p.path for p in history.points]
    plan = plan_restore(history.directory)
    assert (paths[3:], history.db.lsn) == ([f.path for f in plan.files], plan.lsn)
    middle = history.points[2]
    plan = plan_restore(history.directory, lsn=middle.lsn)
    assert (paths[:3], middle.lsn) == ([f.path for f in plan.files], plan.lsn)
    plan = plan_restore(history.directory, at=middle.ts)
    assert (paths[:3], middle.lsn, middle.ts) == ([f.path for f in plan.files], plan.lsn, plan.ts)
    doc = plan.as_document()
    assert [p.name for p in paths[:3]] == doc["files"]  # type: ignore[union-attr]
    with pytest.raises(AssertionError, match="must not load"):
        restore(history.directory)


def test_gap_in_the_chain_is_an_error_naming_the_file_after_it(history: History) -> None:
    missing = history.points[4].path
    assert missing is not None
    missing.unlink()
    with pytest.raises(RestoreError) as info:
        restore(history.directory)
    assert str(history.points[5].path) == info.value.path
    assert "gap" in info.value.reason
    with pytest.raises(RestoreError):
        plan_restore(history.directory)
    # Targets before the gap are still reachable.
    assert_state(history.points[3], restore(history.directory, lsn=history.points[3].lsn))


def test_target_inside_a_gap_is_an_error(history: History) -> None:
    lost = history.points[4]
    assert lost.path is not None
    lost.path.unlink()
    with pytest.raises(RestoreError):
        restore(history.directory, lsn=lost.lsn)


def test_duplicate_delta_is_an_overlap_naming_the_file(history: History) -> None:
    delta = history.points[4].path
    assert delta is not None
    stem = delta.name.split(".")[0]
    sec, usec = stem.split("_")[-2:]
    copy = delta.with_name(f"dictdb_delta_{int(sec) + 5}_{usec}.json")
    shutil.copy(delta, copy)
    with pytest.raises(RestoreError) as info:
        restore(history.directory)
    assert info.value.path in (str(delta), str(copy))
    assert "overlap" in info.value.reason


def test_two_managers_sharing_a_database_and_a_directory_stay_restorable(
    tmp_path: Path,
) -> None:
    db = DictDB()
    t = db.create_table("t")
    first = BackupManager(db, tmp_path, incremental=True)
    second = BackupManager(db, tmp_path, incremental=True, file_format="pickle")
    for i in range(6):
        t.insert({"i": i})
        (first if i % 2 else second).backup_now()
        t.upsert({"id": 1, "i": -i})
        (first if i % 3 else second).backup_now()
    assert first.consecutive_failures + second.consecutive_failures == 0
    restored = restore(tmp_path)
    assert db_diff(db.to_dict(), restored.to_dict()) == []


def test_full_racing_a_delta_of_another_manager_does_not_wedge_the_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = DictDB()
    t = db.create_table("t")
    t.insert({"v": 0})
    a = BackupManager(db, tmp_path, incremental=True)
    b = BackupManager(db, tmp_path, incremental=True)
    assert b.backup_now() is not None
    t.insert({"v": 1})
    armed = [True]

    class Racing(files.SealedFile):
        def publish(self) -> None:
            if armed[0]:  # while a's full is being written, b writes a delta
                armed[0] = False
                t.insert({"v": 2})
                assert b.backup_delta() is not None
            super().publish()

    monkeypatch.setattr(persist, "SealedFile", Racing)
    assert a.backup_full() is not None
    assert not armed[0]
    monkeypatch.setattr(persist, "SealedFile", files.SealedFile)
    for i in range(3):
        t.insert({"v": 10 + i})
        a.backup_now()
    assert a.consecutive_failures == 0
    restored = restore(tmp_path)
    assert db_diff(db.to_dict(), restored.to_dict()) == []


# -- damaged files --------------------------------------------------------------------------------


def flip(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


def test_damaged_newest_full_falls_back_to_an_older_chain_reaching_the_same_lsn(
    tmp_path: Path,
) -> None:
    h = History(tmp_path)
    h.work()
    h.backup()
    h.work()
    h.backup("delta")
    newest = h.backup("full")  # same LSN as the delta before it
    assert newest.path is not None
    flip(newest.path, newest.path.stat().st_size - 90)  # inside the body
    assert_state(newest, restore(tmp_path))


def test_damaged_newest_full_without_a_fallback_is_an_error_naming_it(tmp_path: Path) -> None:
    h = History(tmp_path)
    h.work()
    h.backup()
    h.work()
    h.backup("delta")
    h.work()
    newest = h.backup("full")
    assert newest.path is not None
    flip(newest.path, newest.path.stat().st_size - 90)
    with pytest.raises(RestoreError) as info:
        restore(tmp_path)
    assert str(newest.path) == info.value.path
    # The older point is still there for whoever asks for it.
    assert_state(h.points[1], restore(tmp_path, lsn=h.points[1].lsn))


@pytest.mark.parametrize(
    ("file_format", "compression"),
    [
        ("json", None),
        ("pickle", None),
        pytest.param("json", "zstd"),
        pytest.param("pickle", "zstd"),
    ],
)
def test_damaged_delta_on_the_way_is_an_error_naming_it(
    tmp_path: Path, file_format: str, compression: str | None
) -> None:
    h = History(tmp_path, file_format=file_format, compression=compression)
    for kind in ("now", "delta", "delta", "delta"):
        h.work()
        h.backup(kind)
    damaged = h.points[2].path
    assert damaged is not None
    if compression:
        data = damaged.read_bytes()
        damaged.write_bytes(data[: len(data) - 6])  # a truncated frame
    else:
        flip(damaged, damaged.stat().st_size - 90)  # inside the rows, past the header
    with pytest.raises(RestoreError) as info:
        restore(tmp_path)
    assert str(damaged) == info.value.path
    assert_state(h.points[1], restore(tmp_path, lsn=h.points[1].lsn))


@pytest.mark.parametrize("victim", ["newest delta", "newest full"])
def test_damaged_header_is_an_error_naming_the_file(tmp_path: Path, victim: str) -> None:
    h = History(tmp_path)
    h.work()
    h.backup()
    h.work()
    h.backup("delta" if victim == "newest delta" else "full")
    damaged = h.points[-1].path
    assert damaged is not None
    flip(damaged, 3)  # inside {"format":"dictdb",...
    with pytest.raises(RestoreError) as info:
        restore(tmp_path)
    assert str(damaged) == info.value.path


@pytest.mark.parametrize(("file_format", "compression"), CHOICES)
def test_every_flipped_byte_is_detected_and_named(
    tmp_path: Path, file_format: str, compression: str | None
) -> None:
    source = tmp_path / "source"
    h = History(source, file_format=file_format, compression=compression)
    h.table.insert([{"n": i} for i in range(3)])
    h.backup()
    h.table.insert({"n": 9})
    h.table.update({"n": 7})
    h.backup()
    live = h.points[-1]
    outcomes: dict[str, list[str]] = {}
    for victim in sorted(os.listdir(source)):
        size = (source / victim).stat().st_size
        for position in range(0, size, 3):
            work = tmp_path / f"w{victim}{position}"
            shutil.copytree(source, work)
            flip(work / victim, position)
            try:
                restored = restore(work)
                ok = restored.lsn == live.lsn and db_diff(live.state, restored.to_dict()) == []
                outcome = "same state" if ok else f"SILENT: state at LSN {restored.lsn}"
            except RestoreError as exc:
                named = exc.path == str(work / victim)
                reason = exc.reason.replace(str(work), "<dir>")
                outcome = "error naming it" if named else f"ERROR NOT NAMING IT: {reason}"
            outcomes.setdefault(outcome, []).append(f"{victim}@{position}")
            shutil.rmtree(work)
    bad = {k: v[:3] for k, v in outcomes.items() if k not in ("same state", "error naming it")}
    assert bad == {}


# -- list_backups and stray files -----------------------------------------------------------------


def test_list_backups_reports_chains_ranges_sizes_and_unreadable_files(history: History) -> None:
    directory = history.directory
    (directory / "dictdb_delta_1_000000.json").write_bytes(b"garbage")
    catalog = list_backups(directory)
    paths = [p.path for p in history.points]
    lsns = [p.lsn for p in history.points]
    expected_chains = [
        (paths[0], paths[1:3], lsns[0], lsns[2]),
        (paths[3], paths[4:6], lsns[3], lsns[5]),
    ]
    actual_chains = [
        (c.full.path, [d.path for d in c.deltas], c.full.last_lsn, c.last_lsn)
        for c in catalog.chains
    ]
    assert expected_chains == actual_chains
    ranges = [(f.first_lsn, f.last_lsn) for f in catalog.chains[0].deltas]
    assert [(lsns[0] + 1, lsns[1]), (lsns[1] + 1, lsns[2])] == ranges
    for chain in catalog.chains:
        for f in chain.files:
            assert f.path.stat().st_size == f.size
        assert sum(f.path.stat().st_size for f in chain.files) == chain.size
    assert [directory / "dictdb_delta_1_000000.json"] == [p for p, _ in catalog.unreadable]
    assert catalog.orphans == ()
    # The unreadable stray does not stop a restore of what is readable and complete.
    assert_state(history.points[-1], restore(directory))


def test_tmp_leftovers_and_unrelated_files_are_ignored(history: History) -> None:
    directory = history.directory
    newest = history.points[-1].path
    assert newest is not None
    (directory / f".{newest.name}.abc123.tmp").write_bytes(newest.read_bytes()[:50])
    (directory / "dictdb_backup_999_000000.json.tmp").write_text("{")
    (directory / "README.txt").write_text("hello")
    (directory / "dictdb_backup_notanumber.json").write_text("{")
    (directory / "subdir").mkdir()
    catalog = list_backups(directory)
    assert catalog.unreadable == ()
    assert len(catalog.files) == 6
    assert_state(history.points[-1], restore(directory))


def test_restore_of_an_empty_or_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RestoreError):
        restore(tmp_path)
    with pytest.raises((RestoreError, FileNotFoundError)):
        restore(tmp_path / "missing")


def test_target_before_the_first_full_is_an_error(history: History) -> None:
    first = history.points[0]
    with pytest.raises(RestoreError) as info:
        restore(history.directory, lsn=first.lsn - 1)
    assert str(first.path) == info.value.path
    with pytest.raises(RestoreError):
        restore(history.directory, at=first.ts - 0.5)


def test_both_targets_at_once_are_refused(history: History) -> None:
    with pytest.raises(ValueError):
        restore(history.directory, lsn=1, at=1.0)
    with pytest.raises(ValueError):
        plan_restore(history.directory, lsn=-1)


# -- retention and restore ------------------------------------------------------------------------


def test_retention_keeps_restore_working_and_old_points_are_gone(tmp_path: Path) -> None:
    h = History(tmp_path, max_deltas_before_full=2, keep_chains=2)
    for _ in range(10):
        h.work()
        h.backup()
    catalog = list_backups(tmp_path)
    assert len(catalog.chains) == 2
    oldest_kept = catalog.chains[0].full.last_lsn
    for p in h.points:
        if p.lsn >= oldest_kept:
            assert_state(p, restore(tmp_path, lsn=p.lsn))
        else:
            with pytest.raises(RestoreError):
                restore(tmp_path, lsn=p.lsn)


# -- restore, then keep going ---------------------------------------------------------------------


def test_a_restored_database_backs_up_into_a_new_directory(
    history: History, tmp_path: Path
) -> None:
    middle = history.points[2]
    db = restore(history.directory, lsn=middle.lsn)
    assert_state(middle, db)
    db.get_table("t").insert({"after": "restore"})
    manager = BackupManager(db, tmp_path / "next", incremental=True)
    manager.backup_now()
    db.get_table("t").insert({"after": "more"})
    manager.backup_now()
    restored = restore(tmp_path / "next")
    assert db_diff(db.to_dict(), restored.to_dict()) == []
    assert db.lsn == restored.lsn


def test_resuming_after_a_point_in_time_restore_into_the_same_directory(tmp_path: Path) -> None:
    h = History(tmp_path, max_deltas_before_full=3)
    for _ in range(10):
        h.work()
        h.backup()
    db = restore(tmp_path, lsn=h.points[3].lsn)
    manager = BackupManager(db, tmp_path, incremental=True)
    db.get_table("t").insert({"timeline": 2})
    manager.backup_now()
    manager.stop()
    try:
        restored = restore(tmp_path)
    except RestoreError:
        return  # refusing an ambiguous directory loudly is acceptable
    assert db_diff(db.to_dict(), restored.to_dict()) == []


def test_incremental_mode_with_a_journal_off_database(tmp_path: Path) -> None:
    db = DictDB(retain_journal=False)
    t = db.create_table("t")
    manager = BackupManager(db, tmp_path, incremental=True)
    t.insert({"v": 1})
    manager.backup_now()
    for i in range(3):
        t.insert({"v": i})
        manager.backup_now()
    assert manager.consecutive_failures == 0
    assert db_diff(db.to_dict(), restore(tmp_path).to_dict()) == []

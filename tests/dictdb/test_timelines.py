"""Timelines: forks after a point-in-time restore are chosen by history, never by a clock;
stray and hostile entries, and retention, never decide what is restored."""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

import dictdb._engine
from dictdb import BackupManager, DictDB, RestoreError, audit, list_backups, plan_restore, restore
from dictdb.cli import main
from dictdb.storage.timeline import TIMELINE_PATTERN


class Clock:
    """The process clock, shifted: backups and operations read `time.time` through it."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._real = time.time

    def __call__(self) -> float:
        return self._real() + self.offset


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(time, "time", c)
    monkeypatch.setattr(dictdb._engine, "_time", c)
    return c


def fill(db: DictDB, name: str, keys: range, tag: str) -> None:
    if name not in db:
        db.create_table(name)
    table = db.get_table(name)
    for k in keys:
        table.upsert({"id": k, "v": f"{tag}-{k}"})


def manager(db: DictDB, directory: Path, **kw: Any) -> BackupManager:
    return BackupManager(db, directory, incremental=True, min_backup_interval=0, **kw)


def old_chain(directory: Path) -> tuple[DictDB, dict[int, dict[str, Any]]]:
    """A history with a full snapshot and two deltas; the states at each backup point."""
    db = DictDB()
    m = manager(db, directory)
    points: dict[int, dict[str, Any]] = {}
    fill(db, "t", range(5), "a")
    m.backup_full()
    points[db.lsn] = db.to_dict()
    fill(db, "t", range(3, 8), "b")
    m.backup_delta()
    points[db.lsn] = db.to_dict()
    fill(db, "t", range(6, 12), "c")
    m.backup_delta()
    points[db.lsn] = db.to_dict()
    return db, points


def test_a_fork_written_with_a_clock_behind_is_the_newest_history(
    tmp_path: Path, clock: Clock
) -> None:
    """The documented flow: restore to an earlier point, then keep backing up into the same
    directory. The fork's files carry older times than the abandoned branch's; restore must
    still return the fork (it used to return the abandoned branch, dropping every newer
    write)."""
    old, points = old_chain(tmp_path)
    fork_lsn = min(points)
    clock.offset = -600.0
    new = restore(tmp_path, lsn=fork_lsn)
    assert fork_lsn == new.lsn
    m = manager(new, tmp_path)
    fill(new, "t", range(100, 103), "fork")
    m.backup_full()
    fill(new, "t", range(103, 106), "fork")
    m.backup_delta()
    assert new.to_dict() == restore(tmp_path).to_dict()
    # Each history stays reachable by its number: the old branch at its own points.
    history = list_backups(tmp_path).history
    assert [1, 2] == sorted(history.timelines)
    assert (1, fork_lsn) == (history.timelines[2].parent, history.timelines[2].fork_lsn)
    for lsn, state in points.items():
        assert state == restore(tmp_path, lsn=lsn, timeline=1).to_dict()
    assert points[fork_lsn] == restore(tmp_path, lsn=fork_lsn, timeline=2).to_dict()
    assert old.to_dict() == restore(tmp_path, timeline=1).to_dict()


def test_a_clock_ahead_changes_nothing_either(tmp_path: Path, clock: Clock) -> None:
    _, points = old_chain(tmp_path)
    new = restore(tmp_path, lsn=max(points))
    clock.offset = 10**6
    fill(new, "t", range(50, 52), "ahead")
    manager(new, tmp_path).backup_full()
    clock.offset = -(10**6)
    assert new.to_dict() == restore(tmp_path).to_dict()


def test_restore_at_a_time_follows_the_chosen_timeline(tmp_path: Path) -> None:
    _, points = old_chain(tmp_path)
    fork_lsn = min(points)
    new = restore(tmp_path, lsn=fork_lsn)
    m = manager(new, tmp_path)
    fill(new, "t", range(200, 204), "fork")
    m.backup_full()
    # A time after everything: each timeline's newest state, never the other's.
    later = time.time() + 10
    assert new.to_dict() == restore(tmp_path, at=later).to_dict()
    assert points[max(points)] == restore(tmp_path, at=later, timeline=1).to_dict()


def test_an_unknown_timeline_is_an_error_naming_the_known_ones(tmp_path: Path) -> None:
    old_chain(tmp_path)
    with pytest.raises(RestoreError, match=r"no timeline 7 here \(timelines: 1\)"):
        restore(tmp_path, timeline=7)
    with pytest.raises(ValueError, match="timeline must be an int"):
        restore(tmp_path, timeline=0)


def test_verify_and_ls_report_forks_as_information(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, points = old_chain(tmp_path)
    new = restore(tmp_path, lsn=min(points))
    m = manager(new, tmp_path)
    fill(new, "t", range(300, 302), "fork")
    m.backup_full()
    fill(new, "t", range(302, 304), "fork")
    m.backup_delta()
    capsys.readouterr()
    assert 0 == main(["verify", str(tmp_path)])
    out = capsys.readouterr().out
    assert "timeline 2 (newest): restorable" in out
    assert f"timeline 2 forked from timeline 1 after LSN {min(points)}" in out
    assert 0 == main(["ls", str(tmp_path)])
    listing = capsys.readouterr().out
    assert re.search(r"^timeline 1, lineage [0-9a-f]{12}$", listing, re.MULTILINE)
    assert re.search(
        rf"^  timeline 2 \(newest\), forked from timeline 1 after LSN {min(points)}, lineage ",
        listing,
        re.MULTILINE,
    )


def test_a_stray_delta_of_another_database_is_ignored_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A delta copied from another database's backups, newer than ours, used to make restore
    fail with "no full snapshot", naming no file."""
    mine = tmp_path / "mine"
    db, _ = old_chain(mine)
    other = DictDB()
    m = manager(other, tmp_path / "other")
    fill(other, "x", range(3), "other")
    m.backup_full()
    fill(other, "x", range(3, 40), "other")
    stray = m.backup_delta()
    assert stray is not None
    shutil.copy(stray, mine / stray.name)
    with caplog.at_level(logging.WARNING, logger="dictdb"):
        assert db.to_dict() == restore(mine).to_dict()
    assert any(stray.name in r.getMessage() for r in caplog.records)
    assert [stray.name] == [p.name for p, _ in list_backups(mine).strays]


def test_another_databases_whole_chain_copied_in_is_ignored(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    db, _ = old_chain(mine)
    other = DictDB()
    m = manager(other, tmp_path / "other")
    fill(other, "x", range(30), "other")
    m.backup_full()
    for f in (tmp_path / "other").iterdir():
        if not TIMELINE_PATTERN.match(f.name):
            shutil.copy(f, mine / f.name)
    assert db.to_dict() == restore(mine).to_dict()


def test_entries_that_are_not_regular_files_are_never_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "b"
    db, _ = old_chain(directory)
    outside = tmp_path / "outside"
    outside.mkdir()
    db2 = DictDB()
    fill(db2, "evil", range(3), "x")
    target = db2.save(outside / "x.json")
    names = {
        "link": "dictdb_backup_9999999999_000001.json",
        "fifo": "dictdb_delta_9999999999_000002.json",
        "dir": "dictdb_backup_9999999999_000003.json",
    }
    (directory / names["link"]).symlink_to(target)
    os.mkfifo(directory / names["fifo"])
    (directory / names["dir"]).mkdir()
    with caplog.at_level(logging.WARNING, logger="dictdb"):
        assert db.to_dict() == restore(directory).to_dict()
    ignored = {p.name: r for p, r in list_backups(directory).ignored}
    assert set(names.values()) == set(ignored)
    assert "a symlink" in ignored[names["link"]]
    assert "a special" in ignored[names["fifo"]]
    assert "a directory" in ignored[names["dir"]]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert all(name in logged for name in names.values())


def test_a_damaged_delta_is_named_with_the_newest_point_before_it(tmp_path: Path) -> None:
    _, points = old_chain(tmp_path)
    deltas = sorted(tmp_path.glob("dictdb_delta_*"))
    data = bytearray(deltas[-1].read_bytes())
    data[len(data) // 2] ^= 0xFF
    deltas[-1].write_bytes(bytes(data))
    second = sorted(points)[1]
    with pytest.raises(RestoreError, match=f"newest point reachable before it is LSN {second}"):
        restore(tmp_path)
    assert points[second] == restore(tmp_path, lsn=second).to_dict()


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_log_segment_that_is_not_a_regular_file_is_refused_by_name(
    tmp_path: Path, kind: str
) -> None:
    root = tmp_path / "db"
    with DictDB.open(root, fsync="always", segment_size=4096) as db:
        fill(db, "t", range(60), "x" * 200)
    segments = sorted((root / "wal").glob("*.wal"))
    segments[1].unlink()
    if kind == "fifo":
        os.mkfifo(segments[1])
    else:
        segments[1].mkdir()
    with pytest.raises(RestoreError, match="not a regular file") as err:
        restore(root)
    assert segments[1].name in str(err.value)


def test_a_symlinked_log_segment_is_refused_by_name(tmp_path: Path) -> None:
    root = tmp_path / "db"
    with DictDB.open(root, fsync="always", segment_size=4096) as db:
        fill(db, "t", range(60), "x" * 200)  # each statement flushed: segments rotate
    segments = sorted((root / "wal").glob("*.wal"))
    assert len(segments) > 2
    moved = tmp_path / "elsewhere.wal"
    segments[1].rename(moved)
    segments[1].symlink_to(moved)
    with pytest.raises(RestoreError, match="a symlink, not a regular file") as err:
        restore(root)
    assert segments[1].name in str(err.value)


def test_an_opened_empty_durable_directory_restores_to_an_empty_database(tmp_path: Path) -> None:
    DictDB.open(tmp_path / "db").close()
    db = restore(tmp_path / "db")
    assert (0, []) == (db.lsn, db.list_tables())


def test_a_reopened_durable_database_keeps_its_history(tmp_path: Path) -> None:
    """With backups elsewhere, a reopen used to start a new lineage, so points backed up
    before it could no longer be restored once newer backups existed."""
    root, backups = tmp_path / "db", tmp_path / "backups"
    db = DictDB.open(root, fsync="off")
    lineage = db.engine.lineage
    fill(db, "t", range(3), "a")
    manager(db, backups).backup_full()
    point = (db.lsn, db.to_dict())
    db.close()
    db = DictDB.open(root, fsync="off")
    assert lineage == db.engine.lineage
    fill(db, "t", range(3, 6), "b")
    manager(db, backups).backup_full()
    db.close()
    back = restore(backups, lsn=point[0])
    assert point == (back.lsn, back.to_dict())
    assert [1] == sorted(list_backups(backups).history.timelines)


def test_stale_temp_files_are_removed_by_the_next_backup_and_fresh_ones_kept(
    tmp_path: Path,
) -> None:
    db, _ = old_chain(tmp_path)
    stale = tmp_path / ".dictdb_backup_1_000000.json.k3j2.tmp"
    fresh = tmp_path / ".dictdb_delta_2_000000.json.a9x1.tmp"
    unrelated = tmp_path / ".notes.tmp"
    for f in (stale, fresh, unrelated):
        f.write_bytes(b"partial")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    os.utime(unrelated, (old, old))
    fill(db, "t", range(500, 502), "z")
    manager(db, tmp_path).backup_full()
    assert (False, True, True) == (stale.exists(), fresh.exists(), unrelated.exists())


def test_readers_never_fail_while_retention_prunes(tmp_path: Path) -> None:
    """Restores, plans and verifies in a loop while a manager with keep_chains=1 prunes under
    concurrent writers: every call succeeds, and restores never go backwards."""
    db = DictDB()
    db.create_table("t")
    m = BackupManager(
        db,
        tmp_path,
        backup_interval=0.05,
        min_backup_interval=0,
        incremental=True,
        max_deltas_before_full=2,
        keep_chains=1,
    )
    m.backup_full()
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        table = db.get_table("t")
        i = 0
        while not stop.is_set():
            table.upsert({"id": i % 200, "v": i})
            i += 1
            if i % 50 == 0:
                m.notify_change()
                time.sleep(0.001)

    def read() -> None:
        last = 0
        while not stop.is_set():
            try:
                got = restore(tmp_path).lsn
                assert got >= last, (got, last)
                last = got
                plan_restore(tmp_path)
                report = audit.verify(tmp_path)
                assert report.ok, report.findings
                audit.history(tmp_path, "t", 7)
            except BaseException as exc:
                errors.append(exc)
                return

    m.start()
    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 4
    pruned = 0
    while time.monotonic() < deadline and not errors:
        m.backup_full()  # every full prunes the previous chain
        pruned += 1
        time.sleep(0.02)
    stop.set()
    for t in threads:
        t.join()
    m.stop()
    assert [] == errors
    assert pruned > 5


# -- random histories of forks, with the clock stepping both ways ------------------------------


@settings(
    max_examples=20,
    stateful_step_count=25,
    deadline=None,
    # The same 20 histories each run: with fresh random ones, reaching 3 timelines deep (the
    # check below) failed about 1 run in 5 (7 of 30 measured), a flaky test, not a bug.
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
class ForkMachine(RuleBasedStateMachine):
    """A live database backs up into one directory; at random it is replaced by a restore to
    a random recorded point of a random timeline, which then backs up there too (a fork), all
    with the process clock jumping backwards and forwards. Then: `restore(dir)` is the live
    database, and every recorded point of every timeline restores exactly."""

    points = Bundle("points")

    @initialize()
    def setup(self) -> None:
        import tempfile

        self.directory = Path(tempfile.mkdtemp(prefix="forks-"))
        self.db = DictDB()
        self.db.create_table("t")
        self.manager = manager(self.db, self.directory)
        self.counter = 0
        # (timeline, lsn) -> state at that backup point
        self.recorded: dict[tuple[int, int], dict[str, Any]] = {}

    def teardown(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def _timeline(self) -> int:
        tl = list_backups(self.directory).history.of_lineage(self.db.engine.lineage)
        assert tl is not None
        return tl.number

    @rule(n=st.integers(1, 5), clock=st.floats(-5000, 5000))
    def write(self, n: int, clock: float) -> None:
        CLOCK.offset = clock
        table = self.db.get_table("t")
        for _ in range(n):
            self.counter += 1
            table.upsert({"id": self.counter % 7, "v": self.counter})

    @rule(target=points, full=st.booleans(), clock=st.floats(-5000, 5000))
    def backup(self, full: bool, clock: float) -> tuple[int, int]:
        CLOCK.offset = clock
        if full:
            self.manager.backup_full()
        else:
            self.manager.backup_delta()
        point = (self._timeline(), self.db.lsn)
        self.recorded[point] = self.db.to_dict()
        SEEN["timelines"] = max(SEEN["timelines"], point[0])
        return point

    @rule(point=points, clock=st.floats(-5000, 5000))
    def fork(self, point: tuple[int, int], clock: float) -> None:
        CLOCK.offset = clock
        timeline, lsn = point
        self.db = restore(self.directory, lsn=lsn, timeline=timeline)
        assert (lsn, self.recorded[point]) == (self.db.lsn, self.db.to_dict())
        self.manager = manager(self.db, self.directory)

    @rule(target=points, point=points, clock=st.floats(-5000, 5000))
    def fork_and_back_up(self, point: tuple[int, int], clock: float) -> tuple[int, int]:
        self.fork(point, clock)
        return self.backup(True, clock)

    @invariant()
    def newest_is_the_live_database_once_backed_up(self) -> None:
        if not self.recorded:
            return
        live_tl = list_backups(self.directory).history.of_lineage(self.db.engine.lineage)
        if live_tl is None:
            return  # a fork that has not backed up yet: the directory does not know it
        newest = restore(self.directory)
        last = max(lsn for (tl, lsn) in self.recorded if tl == live_tl.number)
        assert self.recorded[live_tl.number, last] == newest.to_dict()

    @invariant()
    def every_recorded_point_restores_exactly(self) -> None:
        for (timeline, lsn), state in self.recorded.items():
            got = restore(self.directory, lsn=lsn, timeline=timeline)
            assert (lsn, state) == (got.lsn, got.to_dict()), (timeline, lsn)

    @invariant()
    def verify_passes(self) -> None:
        if self.recorded:
            assert 0 == main(["verify", str(self.directory)])


CLOCK = Clock()
#: The most timelines one example reached: the machine must really fork, several deep.
SEEN = {"timelines": 0}


@pytest.fixture
def global_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    CLOCK.offset = 0.0
    monkeypatch.setattr(time, "time", CLOCK)
    monkeypatch.setattr(dictdb._engine, "_time", CLOCK)
    return CLOCK


def test_random_histories_of_forks_with_the_clock_stepping(global_clock: Clock) -> None:
    SEEN["timelines"] = 0
    ForkMachine.TestCase().runTest()
    assert SEEN["timelines"] >= 3, SEEN


GOLDEN_V2 = Path(__file__).resolve().parent.parent / "data" / "golden" / "v2" / "json"


def test_a_directory_written_before_timelines_is_adopted_and_its_points_stay_reachable(
    tmp_path: Path,
) -> None:
    """Backups written by the previous version carry no timeline: the first manager that
    writes there records the numbers restore used (the files' history is timeline 1), and a
    fork then becomes timeline 2; every old point still restores."""
    directory = tmp_path / "legacy"
    shutil.copytree(GOLDEN_V2, directory)
    old = {lsn: restore(directory, lsn=lsn).to_dict() for lsn in (18, 28, 35)}
    assert not list(directory.glob("dictdb_timeline_*"))
    same = restore(directory)  # its newest state: it continues the same history
    m = manager(same, directory)
    fill(same, "extra", range(3), "after-upgrade")
    m.backup_delta()
    history = list_backups(directory).history
    assert [1] == sorted(history.timelines)
    assert history.timelines[1].recorded
    assert same.to_dict() == restore(directory).to_dict()
    fork = restore(directory, lsn=28)  # behind timeline 1's end: a fork
    fill(fork, "forked", range(2), "fork")
    manager(fork, directory).backup_full()
    history = list_backups(directory).history
    assert (1, 28) == (history.timelines[2].parent, history.timelines[2].fork_lsn)
    assert fork.to_dict() == restore(directory).to_dict()
    for lsn, state in old.items():
        assert state == restore(directory, lsn=lsn, timeline=1).to_dict()


def test_a_damaged_timeline_object_is_rebuilt_from_its_files_and_verify_names_it(
    tmp_path: Path,
) -> None:
    _, points = old_chain(tmp_path)
    new = restore(tmp_path, lsn=min(points))
    fill(new, "t", range(600, 603), "fork")
    manager(new, tmp_path).backup_full()
    victim = tmp_path / "dictdb_timeline_00000002.json"
    data = bytearray(victim.read_bytes())
    data[10] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert new.to_dict() == restore(tmp_path).to_dict()  # from the files' headers
    report = audit.verify(tmp_path)
    assert [str(victim)] == [f.path for f in report.findings]

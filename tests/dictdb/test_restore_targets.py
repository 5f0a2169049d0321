"""Restore never answers a different question than the one asked.

An LSN past the newest point is an error naming that point; a target reached only
approximately (no log covers it: the backup point before it) is a WARNING naming the point
reached, an error with ``exact=True``; errors about times speak ISO 8601; a damaged log
serves every target before the damage, and ``use_log=False`` restores without it.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest

from dictdb import BackupManager, DictDB, RestoreError, plan_restore, restore
from dictdb.cli import main

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00"


def snapshots_only(directory: Path) -> dict[int, dict[str, Any]]:
    """A directory of a full snapshot at LSN 3 and deltas at 7 and 12, no log; the states
    by LSN at those points."""
    db = DictDB()
    db.create_table("t")
    t = db.get_table("t")
    manager = BackupManager(db, directory, incremental=True, max_deltas_before_full=10)
    points = {}
    for stop in (3, 7, 12):
        while db.lsn < stop:
            t.insert({"n": db.lsn})
        manager.backup_now()
        points[db.lsn] = db.to_dict()
        time.sleep(0.01)
    return points


@pytest.fixture
def snap(tmp_path: Path) -> tuple[Path, dict[int, dict[str, Any]]]:
    return tmp_path, snapshots_only(tmp_path)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_an_lsn_past_the_newest_point_is_an_error_naming_it(
    snap: tuple[Path, dict[int, Any]],
) -> None:
    directory, _ = snap
    with pytest.raises(RestoreError, match=rf"LSN 13 is past the newest point .*LSN 12 \({ISO}\)"):
        restore(directory, lsn=13)
    with pytest.raises(RestoreError, match="past the newest point"):
        plan_restore(directory, lsn=99_999_999)


def test_an_lsn_between_backup_points_warns_naming_the_point_reached(
    snap: tuple[Path, dict[int, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    directory, points = snap
    with caplog.at_level(logging.WARNING, logger="dictdb"):
        db = restore(directory, lsn=9)
    assert (7, points[7]) == (db.lsn, db.to_dict())
    (message,) = warnings_of(caplog)
    assert "LSN 9 cannot be reached exactly" in message
    assert re.search(rf"restored LSN 7 \({ISO}\)", message)
    assert not plan_restore(directory, lsn=9).exact


def test_exact_turns_an_approximate_target_into_an_error(
    snap: tuple[Path, dict[int, Any]],
) -> None:
    directory, _ = snap
    with pytest.raises(RestoreError, match=r"LSN 9 cannot be reached exactly.*exact=True"):
        restore(directory, lsn=9, exact=True)
    assert 7 == restore(directory, lsn=7, exact=True).lsn  # a backup point is exact


def test_a_time_between_or_after_backup_points_is_approximate_and_said_in_iso(
    snap: tuple[Path, dict[int, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    directory, _ = snap
    newest = plan_restore(directory)
    with caplog.at_level(logging.WARNING, logger="dictdb"):
        assert 12 == restore(directory, at=newest.ts + 3600).lsn
    (message,) = warnings_of(caplog)
    assert re.search(rf"time {ISO} is past the newest point here: restored LSN 12", message)
    with pytest.raises(RestoreError, match=r"past the newest point.*exact=True"):
        restore(directory, at=newest.ts + 3600, exact=True)


def test_a_time_before_the_earliest_point_is_an_error_in_iso(
    snap: tuple[Path, dict[int, Any]],
) -> None:
    directory, _ = snap
    with pytest.raises(RestoreError, match=rf"time {ISO} is before the earliest point"):
        restore(directory, at=1_000_000.0)


# -- with a durable log ----------------------------------------------------------------------------


def durable_dir(root: Path, rows: int = 300) -> DictDB:
    """A durable database with a full snapshot after 3 operations, then *rows* inserts in
    small log segments (closed)."""
    db = DictDB.open(root, fsync="always", segment_size=4096)  # a frame per statement
    db.create_table("t")
    db.get_table("t").insert([{"n": 1}, {"n": 2}])
    BackupManager(db, root).backup_full()
    for i in range(rows):
        db.get_table("t").insert({"n": i, "pad": "x" * 40})
    db.close()
    return db


def test_with_a_log_every_lsn_and_time_is_exact_and_past_its_end_is_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = durable_dir(tmp_path / "db", rows=20)
    with caplog.at_level(logging.WARNING, logger="dictdb"):
        assert 10 == restore(tmp_path / "db", lsn=10, exact=True).lsn
        assert db.lsn == restore(tmp_path / "db", at=time.time() + 60, exact=True).lsn
    assert [] == warnings_of(caplog)
    with pytest.raises(RestoreError, match=f"past the newest point .*LSN {db.lsn} "):
        restore(tmp_path / "db", lsn=db.lsn + 1)


def flip_a_byte_in_a_middle_segment(wal: Path) -> tuple[Path, int]:
    """Damage the second of several segments; returns it and its first LSN."""
    segments = sorted(wal.glob("*.wal"))
    assert len(segments) >= 3, segments
    victim = segments[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    return victim, int(victim.stem, 16)


def test_a_damaged_log_serves_every_target_before_the_damage(tmp_path: Path) -> None:
    root = tmp_path / "db"
    durable_dir(root)
    victim, first = flip_a_byte_in_a_middle_segment(root / "wal")
    assert first - 1 == restore(root, lsn=first - 1, exact=True).lsn
    with pytest.raises(RestoreError) as info:
        restore(root)
    message = str(info.value)
    assert str(victim) == info.value.path
    assert re.search(r"offset \d+", message)
    assert re.search(rf"the newest point reachable before it is LSN \d+ \({ISO}\)", message)


def test_use_log_false_restores_from_snapshots_and_deltas_alone(tmp_path: Path) -> None:
    root = tmp_path / "db"
    durable_dir(root)
    flip_a_byte_in_a_middle_segment(root / "wal")
    assert 3 == restore(root, use_log=False).lsn
    assert 3 == plan_restore(root, use_log=False).lsn


# -- the command line ---------------------------------------------------------------------------


def test_restore_exact_and_no_log_on_the_command_line(
    snap: tuple[Path, dict[int, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, _ = snap
    out = tmp_path / "out.json"
    assert 1 == main(["restore", str(directory), "--lsn", "9", "--exact", "--out", str(out)])
    assert "cannot be reached exactly" in capsys.readouterr().err
    assert not out.exists()
    assert 0 == main(["restore", str(directory), "--lsn", "9", "--no-log", "--out", str(out)])
    assert 7 == DictDB.load(out).lsn
    assert 1 == main(["restore", str(directory), "--lsn", "50", "--out", str(tmp_path / "x")])
    assert "past the newest point" in capsys.readouterr().err


def test_restore_out_refuses_an_existing_file_unless_forced(
    snap: tuple[Path, dict[int, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, _ = snap
    out = tmp_path / "out.json"
    out.write_text("mine")
    assert 2 == main(["restore", str(directory), "--out", str(out)])
    assert "exists" in capsys.readouterr().err
    assert "mine" == out.read_text()
    assert 0 == main(["restore", str(directory), "--out", str(out), "--force"])
    assert 12 == DictDB.load(out).lsn


def test_restore_out_in_a_missing_directory_fails_before_any_work(
    snap: tuple[Path, dict[int, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, _ = snap
    out = tmp_path / "missing" / "x.json"
    started = time.monotonic()
    assert 2 == main(["restore", str(directory), "--out", str(out)])
    err = capsys.readouterr().err
    assert "is not an existing directory" in err
    assert ".tmp" not in err
    assert time.monotonic() - started < 5


def test_a_failed_write_names_the_file_asked_for_not_a_temp_file(
    snap: tuple[Path, dict[int, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory, _ = snap
    out = tmp_path / "out.json"

    def full_disk(*args: Any, **kwargs: Any) -> Path:
        raise OSError(28, "No space left on device", str(tmp_path / ".out.json.k3j9x_ab.tmp"))

    monkeypatch.setattr("dictdb.storage.persist.save", full_disk)
    assert 1 == main(["restore", str(directory), "--out", str(out)])
    err = capsys.readouterr().err
    assert f"dictdb: {out}: No space left on device\n" == err


def test_restore_reports_progress_in_bytes_of_the_files_read(
    snap: tuple[Path, dict[int, Any]],
) -> None:
    directory, _ = snap
    seen: list[tuple[int, int]] = []
    restore(directory, progress=lambda done, total: seen.append((done, total)))
    total = sum(p.stat().st_size for p in directory.glob("dictdb_[bd]*_*"))
    assert (total, total) == seen[-1]
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)

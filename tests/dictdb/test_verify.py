"""verify for monitoring: nothing to verify is a finding, a torn log tail a warning with its
own exit code, the restorable window in LSNs and times, the whole report in --json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dictdb import BackupManager, DictDB
from dictdb.audit import verify
from dictdb.cli import main

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00"


def durable(root: Path, rows: int = 50) -> DictDB:
    """A durable database, a full snapshot after 2 operations and a delta at the end."""
    db = DictDB.open(root, fsync="always", segment_size=4096)
    db.create_table("t")
    db.get_table("t").insert({"n": 0})
    manager = BackupManager(db, root, incremental=True)
    manager.backup_full()
    for i in range(rows):
        db.get_table("t").insert({"n": i, "pad": "x" * 40})
    manager.backup_delta()
    db.close()
    return db


@pytest.mark.parametrize("content", [None, "README"], ids=["empty", "a-readme-only"])
def test_nothing_to_verify_is_a_finding_and_exit_1(
    tmp_path: Path, content: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    if content is not None:
        (tmp_path / content).write_text("not a backup")
    report = verify(tmp_path)
    assert not report.ok
    assert ["nothing to verify"] == [f.reason.split(":")[0] for f in report.findings]
    assert 1 == main(["verify", str(tmp_path)])
    assert "nothing to verify" in capsys.readouterr().out


def test_a_torn_log_tail_is_a_warning_with_exit_code_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "db"
    db = durable(root)
    last = sorted((root / "wal").glob("*.wal"))[-1]
    with open(last, "ab") as handle:
        handle.write(b"\x00\x00\x01\x00\x00garbage")  # a record that never finished
    report = verify(root)
    assert report.ok
    assert [str(last)] == [w.path for w in report.warnings]
    assert 3 == main(["verify", str(root)])
    out = capsys.readouterr().out
    assert f"WARNING {last}: torn tail at offset" in out
    assert out.endswith("OK, with 1 warning\n")
    assert db.lsn == report.restorable[-1][1]


def test_the_restorable_window_is_given_in_lsns_and_times(tmp_path: Path) -> None:
    root = tmp_path / "db"
    db = durable(root)
    report = verify(root)
    assert [(0, db.lsn)] == [(w.first, w.last) for w in report.windows]
    (window,) = report.windows
    assert window.first_ts == 0.0
    assert window.last_ts is not None
    assert window.last_ts > 0


def test_verify_json_gives_the_whole_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "db"
    db = durable(root)
    assert 0 == main(["verify", str(root), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert {
        "ok",
        "files_found",
        "files_checked",
        "segments_checked",
        "findings",
        "warnings",
        "restorable",
        "timelines",
        "notes",
    } == set(doc)
    assert (True, 2, 2) == (doc["ok"], doc["files_found"], doc["files_checked"])
    (window,) = doc["restorable"]
    assert (0, db.lsn) == (window["first_lsn"], window["last_lsn"])
    assert re.fullmatch(ISO, window["last_time"])
    assert doc["segments_checked"] == len(list((root / "wal").glob("*.wal")))


def test_counts_include_files_that_fail(tmp_path: Path) -> None:
    root = tmp_path / "db"
    durable(root)
    delta = sorted(root.glob("dictdb_delta_*"))[-1]
    delta.write_bytes(delta.read_bytes()[:-40])
    report = verify(root)
    assert (2, 1) == (report.files_found, report.files_checked)
    assert [str(delta)] == [f.path for f in report.findings]


def test_a_damaged_log_leaves_the_points_before_the_damage_restorable(tmp_path: Path) -> None:
    root = tmp_path / "db"
    durable(root, rows=300)
    for backup in root.glob("dictdb_delta_*"):
        backup.unlink()  # only the log reaches past the full snapshot
    segments = sorted((root / "wal").glob("*.wal"))
    assert len(segments) >= 3
    victim = segments[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    report = verify(root)
    assert [str(victim)] == [f.path for f in report.findings]
    (window,) = report.windows
    assert int(segments[1].stem, 16) - 1 <= window.last < int(segments[2].stem, 16)


@pytest.mark.parametrize("kind", ["missing", "a-file"])
def test_a_directory_that_is_not_there_is_said_at_once(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "backups"
    if kind == "a-file":
        path.write_text("not a directory")
    assert 1 == main(["verify", str(path)])
    err = capsys.readouterr().err
    expected = "does not exist" if kind == "missing" else "is not a directory"
    assert expected in err
    assert "vanishing" not in err

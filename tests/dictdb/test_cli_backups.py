"""The commands over a backup location as a whole, in the conventions of sqlite3, Litestream
and pgBackRest: --version, ls with a header row, human sizes, lineages, the log and the
restorable window, inspect on log segments."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dictdb import BackupManager, DictDB, __version__
from dictdb.cli import main

ROOT = Path(__file__).resolve().parents[2]


def durable(root: Path) -> DictDB:
    db = DictDB.open(root, fsync="always", segment_size=4096)
    db.create_table("t")
    manager = BackupManager(db, root, incremental=True)
    db.get_table("t").insert({"n": 0})
    manager.backup_full()
    for i in range(60):
        db.get_table("t").insert({"n": i, "pad": "y" * 50})
    manager.backup_delta()
    db.get_table("t").delete(where=db.get_table("t").n == 3)
    db.close()
    return db


def test_version_prints_the_version_and_exits_0() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dictdb", "--version"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert (0, f"dictdb {__version__}\n") == (result.returncode, result.stdout)


def test_ls_has_a_header_human_sizes_the_lineage_the_log_and_the_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = durable(tmp_path / "db")
    assert 0 == main(["ls", str(tmp_path / "db")])
    out = capsys.readouterr().out
    assert re.search(r"timeline 1 \(newest\), lineage [0-9a-f]{12}\n", out)
    assert "KIND   FIRST LSN   LAST LSN  LAST OPERATION (UTC)" in out
    assert re.search(r" \d+(\.\d)? (B|KiB)  dictdb_backup_", out)
    assert re.search(rf"log: \d+ segments?, LSN 1\.\.{db.lsn}, \d", out)
    assert re.search(rf"restorable: LSN 0\.\.{db.lsn} \(the beginning \.\. \d{{4}}-", out)


def test_ls_json_holds_the_log_the_window_and_the_lineages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = durable(tmp_path / "db")
    assert 0 == main(["ls", str(tmp_path / "db"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert (1, db.lsn) == (doc["log"]["first_lsn"], doc["log"]["last_lsn"])
    assert [(0, db.lsn)] == [(w["first_lsn"], w["last_lsn"]) for w in doc["restorable"]]
    assert doc["log"]["lineage"] == doc["lineages"]["1"]
    full = doc["chains"][0]["full"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", full["last_op_time"])


def test_inspect_summarizes_a_log_segment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    durable(tmp_path / "db")
    first = sorted((tmp_path / "db" / "wal").glob("*.wal"))[0]
    assert 0 == main(["inspect", str(first), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert ("log segment", 1, None) == (doc["type"], doc["first_lsn"], doc["problem"])
    assert {"create": 1, "insert": doc["operations"] - 1} == doc["tables"]["t"]


def test_inspect_names_a_damaged_frame_of_a_segment_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    durable(tmp_path / "db")
    first = sorted((tmp_path / "db" / "wal").glob("*.wal"))[0]
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.write_bytes(bytes(data))
    assert 1 == main(["inspect", str(first)])
    out = capsys.readouterr().out
    assert re.search(r"problem: offset \d+", out)
    assert "verified up to valid_size" in out


def test_a_newline_in_an_argument_keeps_a_usage_error_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert 2 == main(["ls", str(tmp_path), "--a\nb"])
    err = capsys.readouterr().err
    assert 1 == len(err.splitlines())
    assert err.startswith("dictdb: error: ")


@pytest.mark.parametrize("at", ["0001-01-01", "-1e308", "1e30"])
def test_a_time_out_of_range_is_a_usage_error(
    tmp_path: Path, at: str, capsys: pytest.CaptureFixture[str]
) -> None:
    durable(tmp_path / "db")
    assert 2 == main(["restore", str(tmp_path / "db"), f"--at={at}", "--dry-run"])
    err = capsys.readouterr().err
    assert 1 == len(err.splitlines())
    assert err.startswith("dictdb: ")


def test_json_output_survives_a_path_that_is_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    durable(tmp_path / "db")
    out = str(tmp_path / "x-\udcff.json")  # what Python makes of the argv bytes b"x-\xff.json"
    assert 0 == main(["restore", str(tmp_path / "db"), "--out", out, "--json"])
    assert json.loads(capsys.readouterr().out)["out"] == out

"""The ``dictdb`` command, driven as a subprocess (``python -m dictdb``) over directories built
by real `BackupManager` and durable-log runs (`tests/dictdb/_scripts/audit_dirs.py`); a few
checks (Ctrl-C, progress on a terminal) call `dictdb.cli.main` in-process.

Expected values come from what the builders recorded as live, or from `restore()`, never from
the command under test.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dictdb import DictDB, cli, restore
from dictdb.storage.restore import plan_restore
from tests.dictdb._scripts.audit_dirs import (
    Built,
    copy_dir,
    flip_byte_in_row_data,
    iso,
    moved,
    typed,
)
from wal import from_plain, to_plain

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
ABSENT = "<absent>"


def run(*args: Any, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m dictdb ARGS`` with this checkout on the path."""
    return subprocess.run(
        [sys.executable, "-m", "dictdb", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    """Exit code 0 and nothing on stderr."""
    expected = (0, "")
    assert expected == (result.returncode, result.stderr)


def assert_ok_or_approximate(result: subprocess.CompletedProcess[str], reached: int) -> None:
    """Exit code 0; on stderr at most warnings that a target was reached only approximately,
    each naming the point restored (a target between backup points, without a log)."""
    assert 0 == result.returncode, result.stderr
    for line in result.stderr.splitlines():
        assert line.startswith("dictdb: warning: restore: "), line
        assert "cannot be reached exactly" in line, line
    if result.stderr:
        assert f"restored LSN {reached} " in result.stderr


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines()]


def strict_json(value: Any) -> str:
    """A canonical JSON text: 1, 1.0 and true stay apart; key order does not matter."""
    return json.dumps(value, sort_keys=True)


# -- fixtures -------------------------------------------------------------------------------------


# `snap` and `durable`: tests/dictdb/conftest.py (module scope).


def listing(directory: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(directory)), p.stat().st_size) for p in directory.rglob("*"))


def row_at(built: Built, lsn: int, table: str, key: Any) -> Any:
    return built.states[lsn].get(table, {}).get("records", {}).get(key)


# -- history --------------------------------------------------------------------------------------


def test_history_json_with_the_log_lists_each_operation_with_after_images_and_metadata(
    durable: Built,
) -> None:
    result = run("history", durable.path, "users", "1", "--json")
    expected = [
        (op.lsn, op.kind, op.after, op.meta, "operation")
        for op in durable.ops
        if op.table == "users" and op.key == 1
    ]
    actual = [
        (d["lsn"], d["kind"], from_plain(d["after"]), d["meta"], d["granularity"])
        for d in json_lines(result.stdout)
    ]
    assert_ok(result)
    assert typed(expected) == typed(actual)
    assert len(expected) > 2 * len(durable.backups)  # many updates, across deltas and fulls


def test_history_text_with_the_log_says_operation_and_shows_who_and_why(durable: Built) -> None:
    result = run("history", durable.path, "users", "2")
    ops = [op for op in durable.ops if op.table == "users" and op.key == 2]
    lines = result.stdout.splitlines()
    expected_value = (0, len(ops))
    assert expected_value == (result.returncode, len(lines))
    for op, line in zip(ops, lines, strict=True):
        expected_value = (str(op.lsn), op.kind)
        assert expected_value == tuple(line.split()[:3:2])
        assert "[operation]" in line
        assert (repr(op.after) if op.after is not None else "deleted") in line
        assert f"actor={op.meta['actor']} " in line
    assert lines[0].endswith("actor=alice reason=setup")


def versions_without_log(built: Built, table: str, key: Any) -> list[tuple[Any, ...]]:
    """A full's state of the key, or a delta's net change of it, per backup file."""
    out: list[tuple[Any, ...]] = []
    for b in built.backups:
        row = row_at(built, b.last_lsn, table, key)
        if b.kind == "full":
            if row is not None:
                out.append((b.last_lsn, "state", row, "snapshot"))
        else:
            inside = [
                op.lsn
                for op in built.ops
                if b.first_lsn <= op.lsn <= b.last_lsn and (op.table, op.key) == (table, key)
            ]
            if inside:  # at the LSN of the last operation that changed it
                out.append((inside[-1], "delete" if row is None else "upsert", row, "delta"))
    return out


def test_history_json_without_a_log_has_delta_and_snapshot_granularity(snap: Built) -> None:
    result = run("history", snap.path, "users", "1", "--json")
    expected = versions_without_log(snap, "users", 1)
    actual = [
        (d["lsn"], d["kind"], from_plain(d["after"]), d["granularity"])
        for d in json_lines(result.stdout)
    ]
    assert_ok(result)
    assert typed(expected) == typed(actual)
    full_lsns = [b.last_lsn for b in snap.backups if b.kind == "full"]
    assert full_lsns == [t[0] for t in actual if t[3] == "snapshot"]
    # A delta's version carries the audit meta of the last operation that changed the row.
    metas = {op.lsn: op.meta for op in snap.ops}
    deltas = [d for d in json_lines(result.stdout) if d["granularity"] == "delta"]
    assert [metas[d["lsn"]] for d in deltas] == [d["meta"] for d in deltas]
    assert any(d["meta"] for d in deltas)


def test_history_text_without_a_log_says_which_granularity(snap: Built) -> None:
    result = run("history", snap.path, "users", "1")
    lines = result.stdout.splitlines()
    expected = [f"[{t[3]}]" for t in versions_without_log(snap, "users", 1)]
    actual = [re.search(r"\[(operation|delta|snapshot)\]", line)[0] for line in lines]  # type: ignore[index]
    expected_value = (0, expected)
    assert expected_value == (result.returncode, actual)


def test_history_of_an_unknown_key_says_so(snap: Built) -> None:
    result = run("history", snap.path, "users", "999")
    expected_value = (1, "", f"dictdb: no record users/999 in {snap.path}\n")
    assert expected_value == (result.returncode, result.stdout, result.stderr)


# -- diff -----------------------------------------------------------------------------------------


def expected_diff_json(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The difference of two restored states, computed here, in the command's JSON shape
    (rows and changes keyed by the record's key for an order-free comparison)."""
    doc: dict[str, Any] = {}
    for name in sorted(set(old) | set(new)):
        rows_a = old.get(name, {}).get("records", {})
        rows_b = new.get(name, {}).get("records", {})
        changed = {}
        for k in rows_a.keys() & rows_b.keys():
            fields = {}
            for f in rows_a[k].keys() | rows_b[k].keys():
                a, b = rows_a[k].get(f, ABSENT), rows_b[k].get(f, ABSENT)
                if typed(a) != typed(b):
                    fields[f] = [to_plain(a), to_plain(b)]
            if fields:
                changed[repr(k)] = fields
        entry = {
            "created": name not in old,
            "dropped": name not in new,
            "added": {repr(k): to_plain(v) for k, v in rows_b.items() if k not in rows_a},
            "removed": {repr(k): to_plain(v) for k, v in rows_a.items() if k not in rows_b},
            "changed": changed,
        }
        if entry["added"] or entry["removed"] or changed or (name in old) != (name in new):
            doc[name] = entry
    return doc


def actual_diff_json(text: str) -> dict[str, Any]:
    doc = json.loads(text)
    return {
        name: {
            "created": t["created"],
            "dropped": t["dropped"],
            "added": {repr(from_plain(r)["id"]): r for r in t["added"]},
            "removed": {repr(from_plain(r)["id"]): r for r in t["removed"]},
            "changed": {repr(from_plain(c["key"])): c["fields"] for c in t["changed"]},
        }
        for name, t in doc.items()
    }


@pytest.mark.parametrize(
    ("which", "a", "b"),
    [("durable", 3, 21), ("durable", 16, 17), ("durable", 0, 32), ("snap", 6, 25), ("snap", 3, 30)],
)
def test_diff_between_lsns_equals_the_difference_of_two_restores(
    request: pytest.FixtureRequest, which: str, a: int, b: int
) -> None:
    built: Built = request.getfixturevalue(which)
    result = run("diff", built.path, "--from", f"lsn:{a}", "--to", f"lsn:{b}", "--json")
    older, newer = restore(built.path, lsn=a), restore(built.path, lsn=b)
    expected = expected_diff_json(older.to_dict(), newer.to_dict())
    assert 0 == result.returncode, result.stderr
    assert all(line.startswith("dictdb: warning: ") for line in result.stderr.splitlines())
    assert strict_json(expected) == strict_json(actual_diff_json(result.stdout))


@pytest.mark.parametrize("which", ["durable", "snap"])
def test_diff_between_iso_and_epoch_times_equals_the_difference_of_two_restores(
    request: pytest.FixtureRequest, which: str
) -> None:
    built: Built = request.getfixturevalue(which)
    ta, tb = built.marks[5], built.marks[24]
    result = run("diff", built.path, "--from", iso(ta), "--to", repr(tb), "--json")
    expected = expected_diff_json(
        restore(built.path, at=ta).to_dict(), restore(built.path, at=tb).to_dict()
    )
    assert 0 == result.returncode, result.stderr
    assert all(line.startswith("dictdb: warning: ") for line in result.stderr.splitlines())
    assert strict_json(expected) == strict_json(actual_diff_json(result.stdout))


def test_diff_text_shows_a_type_change_and_no_changes(durable: Built) -> None:
    changed = run("diff", durable.path, "--from", "lsn:16", "--to", "lsn:17")
    same = run("diff", durable.path, "--from", "lsn:17", "--to", "lsn:17")
    expected_value = (0, "users: +0 -0 ~1\n  ~ 1: n: 1.0 -> True\n")
    assert expected_value == (changed.returncode, changed.stdout)
    expected_value = (0, "no changes\n")
    assert expected_value == (same.returncode, same.stdout)


# -- verify ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["durable", "snap"])
def test_verify_a_clean_directory_exits_0(request: pytest.FixtureRequest, which: str) -> None:
    built: Built = request.getfixturevalue(which)
    text = run("verify", built.path)
    as_json = run("verify", built.path, "--json")
    doc = json.loads(as_json.stdout)
    expected_value = (0, "", "OK")
    assert expected_value == (text.returncode, text.stderr, text.stdout.splitlines()[-1])
    expected_value = (0, True, [], len(built.backups))
    assert expected_value == (
        as_json.returncode,
        doc["ok"],
        doc["findings"],
        doc["files_checked"],
    )


def assert_verify_names(directory: Path, culprit: Path, reason_word: str) -> None:
    text = run("verify", directory)
    as_json = run("verify", directory, "--json")
    doc = json.loads(as_json.stdout)
    findings = [line for line in text.stdout.splitlines() if line.startswith("FINDING")]
    expected_value = (1, 1)
    assert expected_value == (text.returncode, len(findings))
    assert str(culprit) in findings[0]
    assert reason_word in findings[0]
    expected_value = (1, False, [str(culprit)])
    assert expected_value == (
        as_json.returncode,
        doc["ok"],
        [f["file"] for f in doc["findings"]],
    )


@pytest.mark.parametrize("index", [4, 2], ids=["full", "delta"])
def test_verify_names_a_file_with_a_flipped_byte(snap: Built, tmp_path: Path, index: int) -> None:
    d = copy_dir(snap, tmp_path)
    victim = moved(snap, d, snap.backups[index].path)
    flip_byte_in_row_data(victim)
    assert_verify_names(d, victim, "checksum")


def test_verify_names_a_flipped_delta_in_a_durable_directory(
    durable: Built, tmp_path: Path
) -> None:
    d = copy_dir(durable, tmp_path)
    victim = moved(durable, d, durable.deltas()[3].path)
    flip_byte_in_row_data(victim)
    assert_verify_names(d, victim, "checksum")


def test_verify_reports_a_missing_middle_delta(snap: Built, tmp_path: Path) -> None:
    d = copy_dir(snap, tmp_path)
    moved(snap, d, snap.backups[2].path).unlink()
    assert_verify_names(d, moved(snap, d, snap.backups[3].path), "gap")


def test_verify_reports_a_gap_in_the_log_segments(durable: Built, tmp_path: Path) -> None:
    d = copy_dir(durable, tmp_path)
    segments = [moved(durable, d, s) for s in durable.segments()]
    assert len(segments) >= 3
    segments[1].unlink()
    assert_verify_names(d, segments[2], "gap")


# -- restore --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("which", "lsn", "reached"),
    [
        ("durable", 5, 5),
        ("durable", 16, 16),
        ("durable", 32, 32),
        ("snap", 12, 10),
        ("snap", 30, 30),
    ],
)
def test_restore_lsn_writes_a_snapshot_equal_to_restore(
    request: pytest.FixtureRequest, tmp_path: Path, which: str, lsn: int, reached: int
) -> None:
    built: Built = request.getfixturevalue(which)
    out = tmp_path / "out.json"
    result = run("restore", built.path, "--lsn", lsn, "--out", out)
    loaded = DictDB.load(out)
    assert_ok_or_approximate(result, reached)
    assert typed(restore(built.path, lsn=lsn).to_dict()) == typed(loaded.to_dict())
    expected_value = (reached, typed(built.states[reached]))
    assert expected_value == (loaded.lsn, typed(loaded.to_dict()))


@pytest.mark.parametrize(
    ("which", "mark", "reached", "form"),
    [("durable", 16, 16, "iso"), ("durable", 21, 21, "epoch"), ("snap", 12, 10, "iso")],
)
def test_restore_at_writes_a_snapshot_equal_to_restore(
    request: pytest.FixtureRequest, tmp_path: Path, which: str, mark: int, reached: int, form: str
) -> None:
    built: Built = request.getfixturevalue(which)
    at = built.marks[mark]
    out = tmp_path / "out.json"
    result = run(
        "restore", built.path, "--at", iso(at) if form == "iso" else repr(at), "--out", out
    )
    loaded = DictDB.load(out)
    assert_ok_or_approximate(result, reached)
    assert typed(restore(built.path, at=at).to_dict()) == typed(loaded.to_dict())
    expected_value = (reached, typed(built.states[reached]))
    assert expected_value == (loaded.lsn, typed(loaded.to_dict()))


def test_restore_dry_run_prints_the_plan_and_writes_nothing(snap: Built, tmp_path: Path) -> None:
    before = listing(snap.path)
    out = tmp_path / "out.json"
    text = run("restore", snap.path, "--lsn", 25, "--out", out, "--dry-run")
    as_json = run("restore", snap.path, "--lsn", 25, "--dry-run", "--json")
    planned = [f.path.name for f in plan_restore(snap.path, lsn=25).files]
    expected_value = ["full", "delta", "delta"]
    assert expected_value == [b.kind for b in snap.backups[4:7]]
    expected_value = [b.path.name for b in snap.backups[4:7]]
    assert expected_value == planned
    expected_value = (0, planned)
    assert expected_value == (text.returncode, [ln.strip() for ln in text.stdout.splitlines()[1:]])
    assert "LSN 25" in text.stdout.splitlines()[0]
    doc = json.loads(as_json.stdout)
    expected_value = (0, planned, 25)
    assert expected_value == (as_json.returncode, doc["files"], doc["lsn"])
    expected_value = (False, before, [])
    assert expected_value == (out.exists(), listing(snap.path), list(tmp_path.iterdir()))


def test_restore_dry_run_with_the_log_reports_the_lsn_restore_reaches(durable: Built) -> None:
    result = run("restore", durable.path, "--lsn", 16, "--dry-run", "--json")
    expected_value = (0, restore(durable.path, lsn=16).lsn)
    assert expected_value == (
        result.returncode,
        json.loads(result.stdout)["lsn"],
    )


def test_restore_dry_run_before_the_first_snapshot_with_a_full_log(durable: Built) -> None:
    assert restore(durable.path, lsn=2).lsn == 2
    result = run("restore", durable.path, "--lsn", 2, "--dry-run")
    assert_ok(result)


def test_restore_format_pickle_writes_a_pickle_snapshot(durable: Built, tmp_path: Path) -> None:
    out = tmp_path / "out.pickle"
    result = run("restore", durable.path, "--lsn", 20, "--out", out, "--format", "pickle")
    assert_ok(result)
    assert not out.read_bytes().startswith(b"{")
    loaded = DictDB.load(out, file_format="pickle")
    expected_value = (20, typed(durable.states[20]))
    assert expected_value == (loaded.lsn, typed(loaded.to_dict()))


# -- log ------------------------------------------------------------------------------------------


def test_log_filters_by_lsn_range_table_and_key(durable: Built) -> None:
    result = run(
        "log", durable.path, "--from", "lsn:4", "--to", "lsn:20", "--table", "users", "--key", 1,
        "--json",
    )  # fmt: skip
    expected = [
        (op.lsn, op.kind, op.after, op.meta)
        for op in durable.ops
        if 4 < op.lsn <= 20 and op.table == "users" and op.key == 1
    ]
    actual = [
        (d["lsn"], d["kind"], from_plain(d["after"]), d["meta"]) for d in json_lines(result.stdout)
    ]
    assert_ok(result)
    assert typed(expected) == typed(actual)


def test_log_table_filter_keeps_table_events(durable: Built) -> None:
    result = run("log", durable.path, "--table", "orders", "--json")
    expected = [(op.lsn, op.kind, op.key) for op in durable.ops if op.table == "orders"]
    actual = [(d["lsn"], d["kind"], d["key"]) for d in json_lines(result.stdout)]
    expected_value = (0, expected)
    assert expected_value == (result.returncode, actual)


def test_log_without_filters_lists_every_operation(durable: Built) -> None:
    as_json = run("log", durable.path, "--json")
    text = run("log", durable.path)
    expected_value = [op.lsn for op in durable.ops]
    assert expected_value == [d["lsn"] for d in json_lines(as_json.stdout)]
    lines = text.stdout.splitlines()
    expected_value = (0, len(durable.ops))
    assert expected_value == (text.returncode, len(lines))
    assert all("[operation]" in line for line in lines)


def test_log_without_a_log_has_delta_granularity(snap: Built) -> None:
    result = run(
        "log", snap.path, "--from", "lsn:3", "--to", "lsn:14", "--table", "users", "--key", "2",
        "--json",
    )  # fmt: skip
    actual = [(d["lsn"], d["kind"], d["key"], d["granularity"]) for d in json_lines(result.stdout)]
    expected_value = (0, [(14, "delete", 2, "delta")])
    assert expected_value == (result.returncode, actual)


def test_log_time_bounds_are_exact_with_the_log(durable: Built) -> None:
    result = run(
        "log", durable.path, "--from", iso(durable.marks[15]), "--to", repr(durable.marks[20]),
        "--json",
    )  # fmt: skip
    expected_value = (0, [16, 17, 18, 19, 20])
    assert expected_value == (
        result.returncode,
        [d["lsn"] for d in json_lines(result.stdout)],
    )


# -- ls, inspect ----------------------------------------------------------------------------------


def expected_chains(built: Built) -> list[tuple[Any, ...]]:
    chains: list[tuple[Any, ...]] = []
    for b in built.backups:
        if b.kind == "full":
            chains.append((b.path.name, b.last_lsn, []))
        else:
            chains[-1][2].append((b.path.name, b.first_lsn, b.last_lsn))
    return chains


@pytest.mark.parametrize("which", ["durable", "snap"])
def test_ls_json_lists_the_chains_and_their_ranges(
    request: pytest.FixtureRequest, which: str
) -> None:
    built: Built = request.getfixturevalue(which)
    result = run("ls", built.path, "--json")
    doc = json.loads(result.stdout)
    actual = [
        (
            c["full"]["file"],
            c["full"]["last_lsn"],
            [(d["file"], d["first_lsn"], d["last_lsn"]) for d in c["deltas"]],
        )
        for c in doc["chains"]
    ]
    expected_value = (0, expected_chains(built), [], [])
    assert expected_value == (
        result.returncode,
        actual,
        doc["orphans"],
        doc["unreadable"],
    )


def test_ls_text_lists_chains_files_and_the_log(durable: Built) -> None:
    result = run("ls", durable.path)
    lines = result.stdout.splitlines()
    chains = [line.strip() for line in lines if line.strip().startswith("chain ")]
    assert lines[0].startswith("timeline 1 (newest), lineage ")
    expected = [
        f"chain {n}: LSN {full_lsn}..{deltas[-1][2] if deltas else full_lsn}"
        for n, (_, full_lsn, deltas) in enumerate(expected_chains(durable), 1)
    ]
    expected_value = (0, expected)
    assert expected_value == (result.returncode, [c.split(",")[0] for c in chains])
    for b in durable.backups:
        assert sum(b.path.name in line for line in lines) == 1
    n = len(durable.segments())
    log_line = next(line for line in lines if line.startswith("log: "))
    assert log_line.startswith(f"log: {n} segment{'s' if n != 1 else ''}, LSN 1..")
    assert lines[-1].startswith("restorable: LSN 0..")


def test_inspect_verifies_and_summarizes_a_full_snapshot(snap: Built) -> None:
    full = snap.backups[4]
    result = run("inspect", full.path, "--json")
    doc = json.loads(result.stdout)
    rows = len(snap.states[full.last_lsn]["users"]["records"])
    expected_value = (0, "full", full.last_lsn, rows, "verified")
    assert expected_value == (
        result.returncode,
        doc["type"],
        doc["lsn"],
        doc["tables"]["users"]["rows"],
        doc["checksum"],
    )
    text = run("inspect", full.path)
    expected_value = (0, True)
    assert expected_value == (text.returncode, "checksum: verified" in text.stdout.splitlines())


def test_inspect_summarizes_a_delta(snap: Built) -> None:
    delta = snap.backups[2]
    doc = json.loads(run("inspect", delta.path, "--json").stdout)
    summary = (
        doc["type"],
        doc["from_lsn"],
        doc["to_lsn"],
        doc["tables"]["users"],
        doc["tables"]["orders"],
        [e["op"] for e in doc["ddl"]],
        doc["checksum"],
    )
    expected = (
        "delta",
        delta.first_lsn,
        delta.last_lsn,
        {"upserts": 1, "deletes": 0},
        {"upserts": 1, "deletes": 0},
        ["create"],
        "verified",
    )
    assert expected == summary


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_inspect_a_damaged_file_exits_1_with_one_line_naming_it(
    snap: Built, tmp_path: Path, damage: str
) -> None:
    victim = tmp_path / snap.backups[2].path.name
    shutil.copy(snap.backups[2].path, victim)
    if damage == "flip":
        flip_byte_in_row_data(victim)
    else:
        victim.write_bytes(victim.read_bytes()[:100])
    result = run("inspect", victim)
    lines = result.stderr.splitlines()
    expected_value = (1, "", 1)
    assert expected_value == (result.returncode, result.stdout, len(lines))
    assert str(victim) in lines[0]
    assert ("checksum" if damage == "flip" else "truncated") in lines[0]


# -- usage errors, Ctrl-C, progress ---------------------------------------------------------------


def usage_cases(d: Path, out: Path) -> dict[str, list[Any]]:
    return {
        "unknown-command": ["bogus", d],
        "no-command": [],
        "bad-time-diff": ["diff", d, "--from", "yesterday", "--to", "lsn:3"],
        "bad-time-restore": ["restore", d, "--at", "soon", "--out", out],
        "bad-time-log": ["log", d, "--from", "not-a-time"],
        "bad-lsn-point": ["diff", d, "--from", "lsn:x", "--to", "lsn:3"],
        "at-and-lsn": ["restore", d, "--at", "1", "--lsn", "3", "--out", out],
    }


@pytest.mark.parametrize(
    "case",
    [
        pytest.param("unknown-command"),
        pytest.param("no-command"),
        "bad-time-diff",
        "bad-time-restore",
        "bad-time-log",
        "bad-lsn-point",
        pytest.param("at-and-lsn"),
    ],
)
def test_usage_error_exits_2_with_one_line_on_stderr(
    snap: Built, tmp_path: Path, case: str
) -> None:
    out = tmp_path / "out.json"
    result = run(*usage_cases(snap.path, out)[case])
    expected_value = (2, "", False)
    assert expected_value == (result.returncode, result.stdout, out.exists())
    expected_value = 1
    assert expected_value == len(result.stderr.splitlines()), result.stderr


@pytest.mark.parametrize("case", ["unknown-command", "no-command", "at-and-lsn"])
def test_argparse_usage_errors_exit_2(snap: Built, tmp_path: Path, case: str) -> None:
    result = run(*usage_cases(snap.path, tmp_path / "out.json")[case])
    expected_value = (2, "")
    assert expected_value == (result.returncode, result.stdout)
    assert "error:" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    "args",
    [
        ["diff", "{d}", "--from", "nan", "--to", "lsn:3"],
        ["restore", "{d}", "--lsn", "-1", "--dry-run"],
    ],
    ids=["nan-time", "negative-lsn"],
)
def test_bad_target_is_a_usage_error(snap: Built, args: list[str]) -> None:
    result = run(*(a.format(d=snap.path) for a in args))
    expected_value = (2, 1)
    assert expected_value == (result.returncode, len(result.stderr.splitlines()))


def test_ctrl_c_during_verify_exits_130_without_a_traceback(snap: Built, tmp_path: Path) -> None:
    marker = tmp_path / "busy"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.dictdb._scripts.slow_cli",
            marker,
            "0.5",
            "verify",
            snap.path,
        ],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    expected_value = (130, "dictdb: interrupted\n", "")
    assert expected_value == (proc.returncode, err, out)


def test_keyboard_interrupt_in_process_exits_130(
    snap: Built, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr("dictdb.audit.verify", interrupted)
    code = cli.main(["verify", str(snap.path)])
    captured = capsys.readouterr()
    expected_value = (130, "", "dictdb: interrupted\n")
    assert expected_value == (code, captured.out, captured.err)


class FakeStderr(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def run_in_process(monkeypatch: pytest.MonkeyPatch, args: list[str], tty: bool) -> tuple[int, str]:
    err = FakeStderr(tty)
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    code = cli.main(args)
    monkeypatch.undo()
    return code, err.getvalue()


@pytest.mark.parametrize("command", ["verify", "log"])
def test_progress_goes_to_stderr_only_when_it_is_a_terminal(
    durable: Built, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    tty_code, tty_err = run_in_process(monkeypatch, [command, str(durable.path)], tty=True)
    pipe_code, pipe_err = run_in_process(monkeypatch, [command, str(durable.path)], tty=False)
    expected_value = (0, 0, "")
    assert expected_value == (tty_code, pipe_code, pipe_err)
    assert f"{command}: " in tty_err
    assert tty_err.endswith("\n")


def test_log_progress_finishes_its_line_without_a_log(
    snap: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = run_in_process(monkeypatch, ["log", str(snap.path)], tty=True)
    expected_value = (0, True)
    assert expected_value == (code, err.endswith("\n"))


def test_progress_appears_on_a_real_terminal(snap: Built) -> None:
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "dictdb", "verify", str(snap.path)],
            stdout=subprocess.PIPE,
            stderr=follower,
            env=ENV,
            timeout=60,
            check=False,
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    shown = b"".join(chunks).decode()
    expected_value = (0, True)
    assert expected_value == (
        proc.returncode,
        re.search(r"verify: .* \(100%\) in ", shown) is not None,
    )


# -- README ---------------------------------------------------------------------------------------


def readme_audit_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## An audit session\n(.*?)(?=^## )", text, re.M | re.S)
    if match is None:
        pytest.skip("the README has no 'An audit session' section")
    commands = []
    for line in match.group(1).splitlines():
        if line.startswith("$ python -m dictdb "):
            commands.append(shlex.split(line[2:], comments=True))
    return commands


def test_readme_audit_session_works_as_written(durable: Built, tmp_path: Path) -> None:
    """Every command of the README's audit session, on a durable directory named ``./data``;
    only its example times and file name are replaced by ones this directory has."""
    commands = readme_audit_commands()
    assert len(commands) >= 5
    shutil.copytree(durable.path, tmp_path / "data")
    delta = durable.deltas()[1].path.name
    times = iter([durable.marks[20], durable.marks[24], durable.marks[12]])
    for argv in commands:
        args = []
        for arg in argv[3:]:
            if re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+(Z|[+-]\d\d:\d\d)?", arg):
                arg = iso(next(times))
            arg = re.sub(r"dictdb_delta_\d+_\d{6}\.json", delta, arg)
            args.append(arg)
        result = run(*args, cwd=tmp_path)
        assert_ok(result), argv
        assert result.stdout, argv
        if "--json" in args:
            json_lines(result.stdout)  # one object per line
    assert (tmp_path / "then.json").exists()


def test_readme_restore_at_an_iso_string(durable: Built) -> None:
    at = durable.marks[16]
    assert typed(durable.states[16]) == typed(restore(durable.path, at=iso(at)).to_dict())

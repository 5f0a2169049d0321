"""The audit commands (``history``, ``log``, ``diff``) in the conventions of sqlite3,
Litestream and pgBackRest, driven as a subprocess over directories built by real
`BackupManager` and durable-log runs (`tests/dictdb/_scripts/audit_dirs.py`); progress on a
terminal is checked in-process, with a fake terminal and clock.

Expected values come from what the builders recorded as live, or from `restore()`, never from
the command under test.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dictdb import DictDB, cli, restore
from dictdb.cli import _args
from tests.dictdb._scripts.audit_dirs import Built, iso, typed
from wal import from_plain

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
ISO_US = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00"


def run(*args: Any) -> subprocess.CompletedProcess[str]:
    """``python -m dictdb ARGS`` with this checkout on the path."""
    return subprocess.run(
        [sys.executable, "-m", "dictdb", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        check=False,
    )


def outcome(result: subprocess.CompletedProcess[str]) -> tuple[int, str]:
    """The exit code and stderr, which must never hold a traceback."""
    assert "Traceback" not in result.stderr
    return result.returncode, result.stderr


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines()]


def user_ops(built: Built, key: Any) -> list[Any]:
    return [op for op in built.ops if op.table == "users" and op.key == key]


def changed_fields(before: Any, after: Any) -> dict[str, tuple[Any, Any]]:
    """Field -> (before, after) where they differ, type included; absent is ``<absent>``."""
    a, b = before or {}, after or {}
    return {
        f: (a.get(f, "<absent>"), b.get(f, "<absent>"))
        for f in sorted(a.keys() | b.keys())
        if typed(a.get(f, "<absent>")) != typed(b.get(f, "<absent>"))
    }


# -- history --------------------------------------------------------------------------------------


def test_history_text_shows_each_operation_with_changed_fields_who_why_and_microsecond_time(
    durable: Built,
) -> None:
    result = run("history", durable.path, "users", 1)
    lines = result.stdout.splitlines()
    ops = user_ops(durable, 1)
    assert (0, "") == outcome(result)
    expected_value = len(ops)
    assert expected_value == len(lines)
    before = None
    for op, line in zip(ops, lines, strict=True):
        lsn, time, kind, granularity = line.split()[:4]
        expected_value = (str(op.lsn), op.kind, "[operation]")
        assert expected_value == (lsn, kind, granularity)
        assert re.fullmatch(ISO_US, time)
        assert durable.marks.get(op.lsn - 1, 0) <= _epoch(time) <= durable.marks[op.lsn]
        if before is None:
            assert repr(op.after) in line
        else:
            for f, (a, b) in changed_fields(before, op.after).items():
                assert f"{f}: {a!r} -> {b!r}" in line
        if op.meta is not None:
            reason = op.meta["reason"]
            shown = reason if " " not in reason else json.dumps(reason)
            assert line.endswith(f"actor={op.meta['actor']} reason={shown}")
        before = op.after


def _epoch(text: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(text).timestamp()


def test_history_json_has_one_object_per_version_with_changes_actor_reason_time_and_lsn(
    durable: Built,
) -> None:
    result = run("history", durable.path, "users", 2, "--json")
    docs = json_lines(result.stdout)
    ops = user_ops(durable, 2)
    assert (0, "") == outcome(result)
    before = None
    expected = []
    for op in ops:
        fields = {f: [a, b] for f, (a, b) in changed_fields(before, op.after).items()}
        meta = op.meta or {}
        expected.append(
            (op.lsn, op.kind, fields, meta.get("actor"), meta.get("reason"), "operation")
        )
        before = op.after
    actual = [
        (
            d["lsn"],
            d["kind"],
            {f: [from_plain(a), from_plain(b)] for f, (a, b) in d["changes"].items()},
            d["actor"],
            d["reason"],
            d["granularity"],
        )
        for d in docs
    ]
    assert typed(expected) == typed(actual)
    expected_value = [iso(d["ts"]) for d in docs]
    assert expected_value == [d["time"] for d in docs]
    assert all(re.fullmatch(ISO_US, d["time"]) for d in docs)


def test_history_without_a_log_says_delta_or_snapshot_and_shows_changes_against_the_version_before(
    snap: Built,
) -> None:
    result = run("history", snap.path, "users", 1)
    lines = result.stdout.splitlines()
    assert (0, "") == outcome(result)
    versions: list[tuple[int, str, Any]] = []
    for b in snap.backups:
        row = snap.states[b.last_lsn]["users"]["records"][1]
        if b.kind == "full":
            versions.append((b.last_lsn, "snapshot", row))
        else:
            inside = [op.lsn for op in user_ops(snap, 1) if b.first_lsn <= op.lsn <= b.last_lsn]
            if inside:  # a delta names, per row, the last operation that changed it
                versions.append((inside[-1], "delta", row))
    expected_value = [(str(lsn), f"[{g}]") for lsn, g, _ in versions]
    assert expected_value == [(line.split()[0], line.split()[3]) for line in lines]
    pairs = itertools.pairwise(versions)
    for ((_, _, before), (_, _, after)), line in zip(pairs, lines[1:], strict=True):
        for f, (a, b) in changed_fields(before, after).items():
            assert f"{f}: {a!r} -> {b!r}" in line


@pytest.mark.parametrize("which", ["durable", "snap"])
def test_history_of_an_unknown_table_exits_1_naming_it_and_the_known_tables(
    request: pytest.FixtureRequest, which: str
) -> None:
    built: Built = request.getfixturevalue(which)
    result = run("history", built.path, "nosuch", 1)
    expected_value = (1, f"dictdb: no table 'nosuch' in {built.path} (tables: orders, users)\n")
    assert expected_value == outcome(result)
    assert "" == result.stdout


@pytest.mark.parametrize("which", ["durable", "snap"])
def test_history_of_an_unknown_key_exits_1_naming_the_record(
    request: pytest.FixtureRequest, which: str
) -> None:
    built: Built = request.getfixturevalue(which)
    result = run("history", built.path, "users", 999)
    expected_value = (1, f"dictdb: no record users/999 in {built.path}\n")
    assert expected_value == outcome(result)


def test_history_of_a_dropped_table_still_lists_its_records(durable: Built) -> None:
    result = run("history", durable.path, "orders", "o1")
    expected_value = [
        (op.lsn, op.kind) for op in durable.ops if op.table == "orders" and op.key in ("o1", None)
    ]
    expected_value = [t for t in expected_value if t[1] != "create"]
    assert (0, "") == outcome(result)
    assert expected_value == [(int(s.split()[0]), s.split()[2]) for s in result.stdout.splitlines()]


# -- log ------------------------------------------------------------------------------------------


def test_log_actor_keeps_only_that_actors_operations(durable: Built) -> None:
    result = run("log", durable.path, "--actor", "alice", "--json")
    expected_value = [op.lsn for op in durable.ops if (op.meta or {}).get("actor") == "alice"]
    assert (0, "") == outcome(result)
    assert expected_value == [d["lsn"] for d in json_lines(result.stdout)]
    assert expected_value  # phase 0 ran as alice


@pytest.mark.parametrize(("flag", "n"), [("--limit", 3), ("--tail", 3), ("--limit", 0)])
def test_log_limit_keeps_the_first_n_and_tail_the_last_n(durable: Built, flag: str, n: int) -> None:
    result = run("log", durable.path, "--table", "users", flag, n, "--json")
    lsns = [op.lsn for op in durable.ops if op.table == "users"]
    expected_value = lsns[:n] if flag == "--limit" else lsns[-n:]
    assert (0, "") == outcome(result)
    assert expected_value == [d["lsn"] for d in json_lines(result.stdout)]


def test_log_tail_without_a_log_keeps_the_last_delta_events(snap: Built) -> None:
    everything = json_lines(run("log", snap.path, "--json").stdout)
    result = run("log", snap.path, "--tail", 2, "--json")
    assert (0, "") == outcome(result)
    assert everything[-2:] == json_lines(result.stdout)


def test_log_text_names_table_and_key_with_a_microsecond_time(durable: Built) -> None:
    result = run("log", durable.path, "--from", "lsn:8", "--to", "lsn:10")
    ops = [op for op in durable.ops if 8 < op.lsn <= 10]
    assert (0, "") == outcome(result)
    expected_value = [
        (str(op.lsn), op.kind, op.table if op.key is None else f"{op.table}/{op.key!r}")
        for op in ops
    ]
    actual = [(s.split()[0], s.split()[2], s.split()[3]) for s in result.stdout.splitlines()]
    assert expected_value == actual
    assert all(re.fullmatch(ISO_US, s.split()[1]) for s in result.stdout.splitlines())


@pytest.mark.parametrize("which", ["durable", "snap"])
def test_log_of_an_unknown_table_exits_1_naming_it(
    request: pytest.FixtureRequest, which: str
) -> None:
    built: Built = request.getfixturevalue(which)
    result = run("log", built.path, "--table", "nosuch")
    expected_value = (1, f"dictdb: no table 'nosuch' in {built.path} (tables: orders, users)\n")
    assert expected_value == outcome(result)


def test_log_of_an_unknown_key_exits_1_naming_it(durable: Built) -> None:
    in_table = run("log", durable.path, "--table", "users", "--key", 999)
    anywhere = run("log", durable.path, "--key", 999)
    expected_value = (1, f"dictdb: no record users/999 in {durable.path}\n", "")
    assert expected_value == (*outcome(in_table), in_table.stdout)
    expected_value = (1, f"dictdb: no record with key 999 in {durable.path}\n")
    assert expected_value == outcome(anywhere)
    drops = [str(op.lsn) for op in durable.ops if op.kind == "drop"]  # a drop touches every key
    assert drops == [line.split()[0] for line in anywhere.stdout.splitlines()]


def test_log_of_a_known_record_with_nothing_in_the_range_is_empty_and_exits_0(
    durable: Built,
) -> None:
    result = run("log", durable.path, "--table", "orders", "--from", "lsn:26", "--key", "o1")
    expected_value = (0, "", "")
    assert expected_value == (*outcome(result), result.stdout)


@pytest.mark.parametrize(
    "args",
    [["--limit", "1", "--tail", "1"], ["--limit", "-1"], ["--tail", "-2"]],
    ids=["limit-and-tail", "negative-limit", "negative-tail"],
)
def test_log_bad_limits_are_usage_errors(snap: Built, args: list[str]) -> None:
    result = run("log", snap.path, *args)
    code, err = outcome(result)
    expected_value = (2, 1)
    assert expected_value == (code, len(err.splitlines()))


# -- diff -----------------------------------------------------------------------------------------


def counts(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Per changed table: rows added, removed, changed (type included), created, dropped."""
    out = {}
    for name in sorted(set(old) | set(new)):
        a = old.get(name, {}).get("records", {})
        b = new.get(name, {}).get("records", {})
        entry = {
            "added": len(b.keys() - a.keys()),
            "removed": len(a.keys() - b.keys()),
            "changed": sum(1 for k in a.keys() & b.keys() if typed(a[k]) != typed(b[k])),
            "created": name not in old,
            "dropped": name not in new,
        }
        if entry["added"] or entry["removed"] or entry["changed"] or (name in old) != (name in new):
            out[name] = entry
    return out


@pytest.mark.parametrize(
    ("which", "a", "b"), [("durable", 3, 21), ("durable", 9, 30), ("snap", 3, 30), ("snap", 6, 25)]
)
def test_diff_stat_counts_per_table_equal_the_difference_of_two_restores(
    request: pytest.FixtureRequest, which: str, a: int, b: int
) -> None:
    built: Built = request.getfixturevalue(which)
    as_json = run("diff", built.path, "--from", f"lsn:{a}", "--to", f"lsn:{b}", "--stat", "--json")
    text = run("diff", built.path, "--from", f"lsn:{a}", "--to", f"lsn:{b}", "--stat")
    expected = counts(restore(built.path, lsn=a).to_dict(), restore(built.path, lsn=b).to_dict())
    assert 0 == as_json.returncode == text.returncode
    assert expected == json.loads(as_json.stdout)
    lines = text.stdout.splitlines()
    for name, c in expected.items():
        flags = " (created)" if c["created"] else " (dropped)" if c["dropped"] else ""
        line = f"{name}{flags}: {c['added']} added, {c['removed']} removed, {c['changed']} changed"
        assert line in lines
    totals = [sum(c[k] for c in expected.values()) for k in ("added", "removed", "changed")]
    tables = "1 table" if len(expected) == 1 else f"{len(expected)} tables"
    expected_value = f"{tables}: {totals[0]} added, {totals[1]} removed, {totals[2]} changed"
    assert expected_value == lines[-1]


def test_diff_table_keeps_only_that_table(durable: Built) -> None:
    result = run("diff", durable.path, "--from", "lsn:3", "--to", "lsn:21", "--table", "orders")
    expected_value = (0, "orders (created): +1 -0 ~0\n  + 'o1': {'id': 'o1', 'total': 6}\n")
    assert expected_value == (result.returncode, result.stdout)


def test_diff_of_an_unknown_table_exits_1_naming_the_known_ones(durable: Built) -> None:
    result = run("diff", durable.path, "--from", "lsn:3", "--to", "lsn:21", "--table", "nosuch")
    expected_value = (1, "dictdb: no table 'nosuch' at either point (tables: orders, users)\n")
    assert expected_value == outcome(result)


@pytest.mark.parametrize("point", ["62800", "+5", "0"])
def test_diff_refuses_a_bare_integer_point_suggesting_lsn_and_a_time(
    durable: Built, point: str
) -> None:
    result = run("diff", durable.path, "--from", point, "--to", "lsn:20")
    code, err = outcome(result)
    digits = point.lstrip("+")
    expected_value = (2, "", 1)
    assert expected_value == (code, result.stdout, len(err.splitlines()))
    assert f"lsn:{digits}" in err
    assert "ISO 8601" in err
    assert f"@{digits}" in err


def test_diff_epoch_seconds_written_with_an_at_sign_equal_the_iso_time(durable: Built) -> None:
    t = durable.marks[12]
    by_epoch = run("diff", durable.path, "--from", f"@{t!r}", "--to", "lsn:20", "--json")
    by_iso = run("diff", durable.path, "--from", iso(t), "--to", "lsn:20", "--json")
    by_lsn = run("diff", durable.path, "--from", "lsn:12", "--to", "lsn:20", "--json")
    assert (0, "") == outcome(by_epoch)
    assert by_lsn.stdout == by_epoch.stdout == by_iso.stdout


def test_log_refuses_a_bare_integer_bound(durable: Built) -> None:
    result = run("log", durable.path, "--from", "12")
    code, err = outcome(result)
    expected_value = (2, True)
    assert expected_value == (code, "lsn:12" in err)


# -- progress -------------------------------------------------------------------------------------


class FakeTerminal(io.StringIO):
    def __init__(self, tty: bool = True) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_none_when_the_stream_is_not_a_terminal() -> None:
    assert _args.progress("x", FakeTerminal(tty=False)) is None


def test_progress_shows_sizes_a_percentage_and_an_eta_then_ends_its_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(_args, "_clock", clock)
    stream = FakeTerminal()
    show = _args.progress("restore", stream)
    assert show is not None
    clock.now += 2.0
    show(1024 * 1024, 4 * 1024 * 1024)  # a quarter in 2 s: 6 s to go
    clock.now += 2.0
    show(4 * 1024 * 1024, 4 * 1024 * 1024)
    expected_value = [
        "",
        "restore: 1.0 MiB / 4.0 MiB (25%), ETA 6.0 s",
        "restore: 4.0 MiB / 4.0 MiB (100%) in 4.0 s",
    ]
    assert expected_value == [s.rstrip() for s in stream.getvalue().split("\r")]
    assert stream.getvalue().endswith("\n")


def test_progress_updates_at_most_ten_times_a_second_but_always_shows_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(_args, "_clock", clock)
    stream = FakeTerminal()
    show = _args.progress("log", stream)
    assert show is not None
    for done in range(1, 1001):  # 1000 calls over 1 s
        clock.now += 0.001
        show(done * 10, 10_000)
    show(10_000, 10_000)  # a repeated end prints nothing more
    frames = stream.getvalue().split("\r")[1:]
    assert 10 <= len(frames) <= 11
    expected_value = ("log: 9.8 KiB / 9.8 KiB (100%) in 1.0 s", 1)
    assert expected_value == (frames[-1].rstrip(), stream.getvalue().count("\n"))


def test_progress_pads_a_shorter_line_over_a_longer_one(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(_args, "_clock", clock)
    stream = FakeTerminal()
    show = _args.progress("x", stream)
    assert show is not None
    clock.now += 20
    show(1, 2)  # "x: 1 B / 2 B (50%), ETA 20 s"
    clock.now += 1
    show(2, 2)  # "x: 2 B / 2 B (100%) in 21 s": shorter, padded
    first, second = stream.getvalue().split("\r")[1:]
    expected_value = (len(first), "x: 2 B / 2 B (100%) in 21 s")
    assert expected_value == (len(second.rstrip("\n")), second.rstrip("\n ").rstrip())


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (5 * 2**30, "5.0 GiB"),
     (3 * 2**50, "3072.0 TiB")],
)  # fmt: skip
def test_human_size_uses_binary_units(n: int, text: str) -> None:
    assert text == _args.human_size(n)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.42, "0.4 s"), (12.4, "12 s"), (187, "3:07"), (3723, "1:02:03")],
)
def test_human_duration_reads_like_a_clock(seconds: float, text: str) -> None:
    assert text == _args.human_duration(seconds)


def run_on_a_terminal(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> tuple[int, str]:
    err = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    code = cli.main(args)
    monkeypatch.undo()
    return code, err.getvalue()


@pytest.mark.parametrize(
    "args",
    [
        ["history", "{d}", "users", "1"],
        ["diff", "{d}", "--from", "lsn:3", "--to", "lsn:14"],  # exact in both directories
        ["log", "{d}"],
    ],
    ids=["history", "diff", "log"],
)
@pytest.mark.parametrize("which", ["durable", "snap"])
def test_audit_commands_show_bytes_read_on_a_terminal_and_end_the_line(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, which: str, args: list[str]
) -> None:
    built: Built = request.getfixturevalue(which)
    argv = [a.format(d=built.path) for a in args]
    code, err = run_on_a_terminal(monkeypatch, argv)
    last = err.split("\r")[-1].rstrip("\n ")
    assert re.fullmatch(rf"{argv[0]}: (\S+ \S+) / \1 \(100%\) in \d+\.\d s", last), err
    expected_value = (0, 1, True)
    assert expected_value == (code, err.count("\n"), err.endswith("\n"))


@pytest.mark.parametrize("which", ["durable", "snap"])
def test_log_limit_ends_the_progress_line_where_it_stopped(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    built: Built = request.getfixturevalue(which)
    code, err = run_on_a_terminal(monkeypatch, ["log", str(built.path), "--limit", "1"])
    expected_value = (0, 1, True, False)
    assert expected_value == (code, err.count("\n"), err.startswith("\rlog: 0 B / "), "100%" in err)


def test_history_reads_every_file_and_log_segment_of_the_directory(
    durable: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = run_on_a_terminal(monkeypatch, ["history", str(durable.path), "users", "1"])
    size = sum(b.path.stat().st_size for b in durable.backups)
    size += sum(s.stat().st_size for s in durable.segments())
    expected_value = (0, f"history: {_args.human_size(size)} / {_args.human_size(size)}")
    assert expected_value == (code, err.split("\r")[-1].split(" (")[0])


def test_an_empty_directory_has_no_history_and_says_there_are_no_tables(tmp_path: Path) -> None:
    db = DictDB.open(tmp_path, fsync="off")
    db.close()
    result = run("history", tmp_path, "users", 1)
    expected_value = (1, f"dictdb: no table 'users' in {tmp_path} (tables: none)\n")
    assert expected_value == outcome(result)

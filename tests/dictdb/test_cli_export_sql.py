"""``dictdb export --format parquet`` and ``dictdb sql``, run in-process (`dictdb.cli.main`).

Expected values come from what the builder recorded as live (`Built.ops`).
"""

from __future__ import annotations

import collections
import csv
import io
import json
from pathlib import Path

import pytest

from dictdb import cli
from dictdb.audit.export import MANIFEST
from tests.dictdb._scripts.audit_dirs import Built


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


@pytest.fixture
def exported(durable: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "out"
    code, text, _ = run(capsys, "export", durable.path, "--format", "parquet", "--out", out)
    assert code == 0
    assert f"LSN 1..{durable.last_lsn}" in text
    return out


def test_export_json_reports_the_rows_and_a_rerun_adds_none(
    durable: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["export", durable.path, "--format", "parquet", "--out", out, "--json"]
    code, text, _ = run(capsys, *args)
    doc = json.loads(text)
    assert code == 0
    assert doc["rows_added"] == len(durable.ops)
    assert doc["first_lsn"] == 1
    assert doc["last_lsn"] == durable.last_lsn
    assert doc["files"]
    assert doc["base"] is None
    code, text, _ = run(capsys, *args)
    assert code == 0
    assert json.loads(text)["rows_added"] == 0
    assert not json.loads(text)["files"]
    code, text, _ = run(capsys, *args[:-1])
    assert code == 0
    assert text.startswith(f"nothing new after LSN {durable.last_lsn}")


def test_sql_prints_an_aligned_table(
    durable: Built, exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    query = "SELECT actor, count(*) AS n FROM operations GROUP BY 1 ORDER BY 1 NULLS LAST"
    code, text, _ = run(capsys, "sql", exported, query)
    counts = collections.Counter((op.meta or {}).get("actor") for op in durable.ops)
    lines = text.splitlines()
    assert code == 0
    assert lines[0].split() == ["actor", "n"]
    assert set(lines[1]) <= {"-", " "}
    body = [line.split() for line in lines[2:-1]]
    assert body == [
        [str(a) if a is not None else "NULL", str(n)]
        for a, n in sorted(counts.items(), key=lambda item: (item[0] is None, item[0] or ""))
    ]
    assert lines[-1] == f"({len(counts)} rows)"
    widths = {len(line) for line in lines[:-1]}
    assert max(widths) == len(lines[1])  # columns aligned under the rule


def test_sql_json_and_csv(
    durable: Built, exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    query = 'SELECT lsn, ts, "table", key, kind FROM operations ORDER BY lsn'
    code, text, _ = run(capsys, "sql", exported, query, "--json")
    found = [json.loads(line) for line in text.splitlines()]
    assert code == 0
    assert [(r["lsn"], r["table"], r["kind"]) for r in found] == [
        (op.lsn, op.table, op.kind) for op in durable.ops
    ]
    assert all(r["ts"].endswith("+00:00") for r in found)
    code, text, _ = run(capsys, "sql", exported, query, "--csv")
    table = list(csv.reader(io.StringIO(text)))
    assert code == 0
    assert table[0] == ["lsn", "ts", "table", "key", "kind"]
    assert [int(r[0]) for r in table[1:]] == [op.lsn for op in durable.ops]
    assert [r[3] for r in table[1:]] == [
        "" if op.key is None else str(op.key) for op in durable.ops
    ]


def test_sql_errors_exit_1_with_one_line_and_usage_errors_exit_2(
    durable: Built, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "sql", exported, "SELEC 1")
    assert code == 1
    assert err.startswith("dictdb: SQL error:")
    assert err.count("\n") == 1
    code, _, err = run(capsys, "sql", exported, "SELECT * FROM nowhere")
    assert code == 1
    assert "nowhere" in err
    code, _, err = run(capsys, "sql", tmp_path, "SELECT 1")
    assert code == 1
    assert "not a dictdb export" in err
    code, _, err = run(capsys, "sql", exported, "SELECT 1", "--json", "--csv")
    assert code == 2
    out = tmp_path / "x"
    base = ["export", durable.path, "--out", out]
    for extra in (
        ["--format", "parquet", "--legacy"],
        ["--format", "parquet", "--lsn", "3"],
        ["--format", "parquet", "--at", "2026-01-01T00:00:00+00:00"],
        ["--format", "parquet", "--force"],
        ["--with-base"],
        ["--format", "parquet", "--timeline", "0"],
    ):
        code, _, err = run(capsys, *base, *extra)
        assert (code, err[:7]) == (2, "dictdb:"), extra
    assert not out.exists()
    code, _, err = run(capsys, "export", durable.path, "--format", "parquet")
    assert code == 2
    assert "--out" in err


def test_export_into_another_history_exits_1(
    snap: Built, exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (exported / MANIFEST).read_bytes()
    code, _, err = run(capsys, "export", snap.path, "--format", "parquet", "--out", exported)
    assert code == 1
    assert "another history" in err
    assert (exported / MANIFEST).read_bytes() == before


def test_sql_sees_the_base_view(
    snap: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, text, _ = run(
        capsys, "export", snap.path, "--format", "parquet", "--out", out, "--with-base"
    )
    assert code == 0
    assert "the history starts at LSN" in text
    assert "base:" in text
    first = snap.fulls()[0]
    code, text, _ = run(
        capsys, "sql", out, 'SELECT "table", count(*) n, min(lsn) FROM base GROUP BY 1', "--json"
    )
    found = [json.loads(line) for line in text.splitlines()]
    live = snap.states[first.last_lsn]
    assert code == 0
    assert {(r["table"], r["n"]) for r in found} == {
        (name, len(t["records"])) for name, t in live.items() if t["records"]
    }
    assert {r["min(lsn)"] for r in found} == {first.last_lsn}

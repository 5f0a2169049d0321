"""`history` through the log's key indexes (`wal.keyindex`): the same answer as a full scan,
whatever the indexes' state, and `python -m dictdb index`.

The expected history comes from `events` without a key (every operation of the log, read
whole) filtered here: the record's operations and its table's drops.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dictdb import DictDB
from dictdb.audit import events, history, index_log
from dictdb.cli import main
from dictdb.errors import RecordNotFoundError
from wal import KeyIndexWarning

KEYS: list[Any] = [1, 2, 3, "a", "b", uuid.UUID(int=9), dt.date(2024, 5, 6)]


def expected_history(path: Path, table: str, key: Any) -> list[tuple[Any, ...]]:
    return [
        (e.lsn, e.kind, e.after, e.before, e.meta)
        for e in events(path)
        if e.table == table and ((e.key is not None and e.key == key) or e.kind == "drop")
    ]


def actual_history(path: Path, table: str, key: Any) -> list[tuple[Any, ...]]:
    return [(e.lsn, e.kind, e.after, e.before, e.meta) for e in history(path, table, key)]


steps = st.lists(
    st.tuples(
        st.sampled_from(["upsert", "upsert", "delete", "drop", "batch"]),
        st.sampled_from(KEYS),
        st.integers(0, 5),
    ),
    min_size=1,
    max_size=60,
)


def run(path: Path, plan: list[tuple[str, Any, int]]) -> None:
    db = DictDB.open(path, fsync="always", segment_size=4096)
    try:
        for kind, key, n in plan:
            if "t" not in db.list_tables():
                db.create_table("t", primary_key="id")
            t = db.get_table("t")
            with db.audit(actor=f"user{n}", reason="test"):
                if kind == "upsert":
                    t.upsert({"id": key, "n": n, "pad": "x" * 80})
                elif kind == "delete":
                    with contextlib.suppress(RecordNotFoundError):
                        t.delete(where=t.id == key)
                elif kind == "drop":
                    db.drop_table("t")
                else:
                    for k in KEYS[:n]:
                        t.upsert({"id": k, "n": -n})
    finally:
        db.close()


@settings(max_examples=15, deadline=None)
@given(plan=steps, more=steps, probe=st.sampled_from([*KEYS, 99]))
def test_history_through_indexes_equals_a_full_scan(
    tmp_path_factory: pytest.TempPathFactory,
    plan: list[tuple[str, Any, int]],
    more: list[tuple[str, Any, int]],
    probe: Any,
) -> None:
    path = tmp_path_factory.mktemp("db")
    run(path, plan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = expected_history(path, "t", probe)
        assert expected == actual_history(path, "t", probe)  # scans, writes nothing
        assert not list((path / "wal").glob("*.keys"))
        index_log(path)
        assert list((path / "wal").glob("*.keys"))
        assert expected == actual_history(path, "t", probe)  # through them
        run(path, more)  # appended past what the indexes cover
        assert expected_history(path, "t", probe) == actual_history(path, "t", probe)
        index_log(path)  # extended over what was appended (past 1 MiB) or left
        assert expected_history(path, "t", probe) == actual_history(path, "t", probe)


@pytest.fixture
def logged(tmp_path: Path) -> Path:
    run(tmp_path, [("upsert", k, i) for i in range(30) for k in KEYS])
    return tmp_path


def test_the_index_command_indexes_every_segment_then_has_nothing_to_do(
    logged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    segments = len(list((logged / "wal").glob("*.wal")))
    assert segments > 3
    assert 0 == main(["index", str(logged)])
    assert f"{segments} segments indexed, 0 already up to date" in capsys.readouterr().out
    assert 0 == main(["index", str(logged), "--json"])
    document = json.loads(capsys.readouterr().out)
    assert (document["indexed"], document["up_to_date"]) == (0, segments)
    assert index_log(logged) == (0, segments)


def test_the_index_command_on_a_directory_without_a_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert 0 == main(["index", str(tmp_path)])
    assert "no log" in capsys.readouterr().out
    assert index_log(tmp_path) == (0, 0)


def test_a_damaged_index_is_a_warning_on_the_command_line_and_the_answer_is_whole(
    logged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = expected_history(logged, "t", 2)
    index_log(logged)
    for keys_file in (logged / "wal").glob("*.keys"):
        data = bytearray(keys_file.read_bytes())
        data[-6] ^= 0x10
        keys_file.write_bytes(bytes(data))
    with pytest.warns(KeyIndexWarning, match="checksum"):
        assert expected == actual_history(logged, "t", 2)
    for keys_file in (logged / "wal").glob("*.keys"):
        keys_file.write_bytes(b"garbage")
    assert 0 == main(["history", str(logged), "t", "2"])
    captured = capsys.readouterr()
    assert "dictdb: warning:" in captured.err
    assert "key index not used" in captured.err
    assert len(captured.out.splitlines()) == len(expected)

"""`dictdb.audit.export_parquet`: the history as a Parquet dataset, one row per operation.

Expected values come from what the builders recorded as live (`Built.ops`), from
`dictdb.audit.events` (the same history, read another way) or from the files themselves,
never from the export under test.
"""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import shutil
import uuid
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow.dataset as ds
import pytest

from dictdb import BackupManager, DictDB
from dictdb.audit import ExportError, events, export_parquet
from dictdb.audit._common import same
from dictdb.audit.export import MANIFEST, read_manifest, table_directory
from dictdb.storage.catalog import scan
from dictdb.storage.persist import load
from tests.dictdb._scripts.audit_dirs import Built
from wal import from_plain, list_segments


def rows(out: Path) -> list[dict[str, Any]]:
    """Every row of the dataset (the manifest's files), in LSN order."""
    doc = read_manifest(out)
    files = [str(out / f["path"]) for f in doc["files"]]
    if not files:
        return []
    table = ds.dataset(files, format="parquet", partitioning="hive").to_table()
    names = [f["path"].split("/")[0] for f in doc["files"]]
    found: list[dict[str, Any]] = []
    for path, name in zip(files, names, strict=True):
        part = ds.dataset(path, format="parquet").to_table().to_pylist()
        table_name = {v: k for k, v in doc["tables"].items()}[name]
        found += [{**r, "table": table_name} for r in part]
    assert table.num_rows == len(found)
    return sorted(found, key=lambda r: r["lsn"])


def decoded(text: str | None) -> Any:
    return None if text is None else from_plain(orjson.loads(text))


# -- a durable directory: log, snapshots, deltas --------------------------------------------------


def test_a_durable_directory_gives_one_row_per_operation_with_its_actor(
    durable: Built, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    report = export_parquet(durable.path, out)
    found = rows(out)
    assert [r["lsn"] for r in found] == [op.lsn for op in durable.ops]  # contiguous, unique
    assert report.rows_added == len(durable.ops)
    assert report.last_lsn == durable.last_lsn
    assert report.history_starts_at == 1
    assert report.first_lsn == 1
    assert {r["granularity"] for r in found} == {"operation"}
    assert all(r["source"] == "log" and r["file"].startswith("wal/") for r in found)
    for op, r in zip(durable.ops, found, strict=True):
        assert (op.kind, op.table) == (r["kind"], r["table"])
        assert same(op.after, decoded(r["after"])) or op.key is None
        assert decoded(r["key_json"]) == op.key
        assert r["actor"] == (op.meta or {}).get("actor")
        assert r["reason"] == (op.meta or {}).get("reason")
    by_actor = collections.Counter((op.meta or {}).get("actor") for op in durable.ops)
    assert by_actor == collections.Counter(r["actor"] for r in found)
    # The same history as `events`, row for row.
    expected = [(e.lsn, e.kind, e.table, e.key, e.granularity) for e in events(durable.path)]
    got = [
        (r["lsn"], r["kind"], r["table"], decoded(r["key_json"]), r["granularity"]) for r in found
    ]
    assert expected == got
    # DuckDB reads the dataset by a glob, the table from the partition.
    counts = duckdb.sql(
        f"SELECT \"table\", count(*) FROM read_parquet('{out}/**/*.parquet', "
        "hive_partitioning=true) GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert counts == sorted(collections.Counter(op.table for op in durable.ops).items())
    doc = orjson.loads((out / MANIFEST).read_bytes())
    assert (doc["first_lsn"], doc["last_lsn"], doc["history_starts_at"]) == (
        1,
        durable.last_lsn,
        1,
    )
    assert doc["lineage"] is not None
    assert sum(f["rows"] for f in doc["files"]) == len(found)


def test_values_read_back_with_their_types(tmp_path: Path) -> None:
    when = dt.datetime(2026, 3, 1, 12, 30, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    record = {
        "id": 1,
        "at": when,
        "day": dt.date(2026, 3, 1),
        "price": decimal.Decimal("10.50"),
        "blob": b"\x00\xff",
        "ref": uuid.UUID(int=7),
        "nested": {"a": [1, 2.0, True, None, {"$x": 1}], "big": 2**70},
        "inf": float("inf"),
        "n": None,
        "flat": 1.5,
    }
    path = tmp_path / "db"
    key = uuid.UUID(int=9)
    with DictDB.open(path, fsync="off") as db:
        t = db.create_table("t")
        with db.audit(actor="ann", reason={"ticket": 7}):
            t.insert(record)
            t.update({"price": decimal.Decimal("11.00")}, where=t.id == 1)
        u = db.create_table("u", primary_key="k")
        u.insert({"k": key, "when": when})
        u.insert({"k": "s", "v": {"$dict": 1}})
        big = db.create_table("big")
        big.insert({"id": 2**64, "v": 1})
    out = tmp_path / "out"
    export_parquet(path, out)
    found = rows(out)
    insert, update = [r for r in found if r["table"] == "t" and r["key"] is not None]
    assert same(record, decoded(insert["after"]))
    assert insert["before"] is None
    assert same(record, decoded(update["before"]))
    assert same({**record, "price": decimal.Decimal("11.00")}, decoded(update["after"]))
    assert (insert["key"], insert["key_int"], insert["key_json"]) == ("1", 1, "1")
    assert insert["actor"] == "ann"
    assert orjson.loads(insert["reason"]) == {"ticket": 7}
    assert decoded(insert["meta"]) == {"actor": "ann", "reason": {"ticket": 7}}
    assert insert["ts"].tzinfo is not None
    by_key = {r["key"]: r for r in found if r["table"] in ("u", "big")}
    uuid_row = by_key[orjson.dumps({"$uuid": str(key)}).decode()]
    assert uuid_row["key_int"] is None
    assert decoded(uuid_row["key_json"]) == key
    assert same({"k": key, "when": when}, decoded(uuid_row["after"]))
    assert same({"k": "s", "v": {"$dict": 1}}, decoded(by_key["s"]["after"]))
    assert by_key["s"]["key_json"] == '"s"'
    big_row = by_key[str(2**64)]
    assert big_row["key_int"] is None
    assert decoded(big_row["key_json"]) == 2**64


# -- incremental ------------------------------------------------------------------------------


def test_a_rerun_adds_only_the_new_operations_and_nothing_when_none(tmp_path: Path) -> None:
    path, out = tmp_path / "db", tmp_path / "out"
    with DictDB.open(path, fsync="off") as db:
        t = db.create_table("t")
        t.insert([{"v": i} for i in range(5)])
    first = export_parquet(path, out)
    old_files = {p: p.read_bytes() for p in first.files}
    with DictDB.open(path, fsync="off") as db:
        t = db.get_table("t")
        t.insert([{"v": i} for i in range(3)])
        t.delete(where=t.v == 0)
        db.create_table("new").insert({"x": 1})
        last = db.lsn
    second = export_parquet(path, out)
    assert (second.first_lsn, second.last_lsn) == (first.last_lsn + 1, last)
    assert second.rows_added == last - first.last_lsn
    assert not set(second.files) & set(first.files)
    assert all(p.read_bytes() == data for p, data in old_files.items())  # untouched
    assert [r["lsn"] for r in rows(out)] == list(range(1, last + 1))  # no duplicate
    manifest = (out / MANIFEST).read_bytes()
    third = export_parquet(path, out)
    assert (third.rows_added, third.files, third.first_lsn) == (0, (), None)
    assert (out / MANIFEST).read_bytes() == manifest


def test_another_history_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for name in ("a", "b"):
        with DictDB.open(tmp_path / name, fsync="off") as db:
            db.create_table("t").insert({"v": name})
    export_parquet(tmp_path / "a", out)
    with pytest.raises(ExportError, match="another history"):
        export_parquet(tmp_path / "b", out)


def test_a_timeline_forked_before_the_export_end_is_refused(tmp_path: Path) -> None:
    from dictdb import restore

    path, out = tmp_path / "backups", tmp_path / "out"
    db = DictDB()
    manager = BackupManager(db, path)
    t = db.create_table("t")
    t.insert([{"v": i} for i in range(4)])
    manager.backup_full()
    t.insert({"v": 9})
    manager.backup_full()
    export_parquet(path, out)
    forked = restore(path, lsn=5)  # before the export's end (LSN 6): a second history
    forked.get_table("t").insert({"v": "fork"})
    BackupManager(forked, path).backup_full()
    with pytest.raises(ExportError, match="differ at or before LSN 6"):
        export_parquet(path, out)
    export_parquet(path, tmp_path / "out1", timeline=1)  # the first timeline still exports


def test_a_delta_straddling_the_export_end_adds_only_rows_changed_after_it(
    snap: Built, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    export_parquet(snap.path, out)
    every = rows(out)
    last_delta = snap.deltas()[-1]
    # As if the export had reached the middle of the last delta (its log since trimmed).
    middle = last_delta.first_lsn
    kept = [r for r in every if r["lsn"] <= middle]
    doc = orjson.loads((out / MANIFEST).read_bytes())
    shutil.rmtree(out)
    fresh = tmp_path / "fresh"
    export_parquet(snap.path, fresh)
    doc = orjson.loads((fresh / MANIFEST).read_bytes())
    doc["last_lsn"] = middle
    doc["files"] = []
    for f in list(fresh.glob("table=*/*.parquet")):
        f.unlink()
    (fresh / MANIFEST).write_bytes(orjson.dumps(doc))
    report = export_parquet(snap.path, fresh)
    added = rows(fresh)
    assert [r["lsn"] for r in added] == sorted(r["lsn"] for r in every if r["lsn"] > middle)
    assert all(r["lsn"] > middle for r in added)
    assert report.first_lsn == middle + 1
    assert kept  # the rows left out are those the export already had


# -- backups only: delta granularity, the base -----------------------------------------------------


def test_a_backup_directory_exports_delta_rows_with_the_trail_actor_and_a_base(
    snap: Built, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    report = export_parquet(snap.path, out, with_base=True)
    first_full = snap.fulls()[0]
    assert report.history_starts_at == first_full.last_lsn + 1 > 1
    found = rows(out)
    assert found
    assert {r["granularity"] for r in found} <= {"delta", "snapshot"}
    deltas = [r for r in found if r["granularity"] == "delta"]
    # `events` lists a delta's rows in its order; the export, by LSN.
    expected = sorted(
        (e for e in events(snap.path) if e.lsn > first_full.last_lsn), key=lambda e: e.lsn
    )
    assert [(e.lsn, e.kind, e.actor) for e in expected] == [
        (r["lsn"], r["kind"], r["actor"]) for r in found
    ]
    names = {b.path.name for b in snap.deltas()}
    assert {r["file"] for r in deltas} <= names
    assert all(r["source"] == "delta" for r in deltas)
    for r in deltas:  # each row's own last operation, as the builder recorded it
        if r["key"] is not None:
            op = next(op for op in snap.ops if op.lsn == r["lsn"])
            assert (op.table, op.key, op.meta.get("actor")) == (
                r["table"],
                decoded(r["key_json"]),
                r["actor"],
            )
    doc = read_manifest(out)
    assert "oldest full snapshot" in doc["history_starts_why"]
    assert report.base == out.with_name("out.base")
    base = ds.dataset(str(report.base), format="parquet", partitioning="hive").to_table()
    snapshot = load(first_full.path).to_dict()
    want = {(name, k) for name, t in snapshot.items() for k in t["records"]}
    got = {(r["table"], decoded(r["key_json"])) for r in base.to_pylist()}
    assert want == got
    for r in base.to_pylist():
        assert same(snapshot[r["table"]]["records"][decoded(r["key_json"])], decoded(r["row"]))
        assert r["lsn"] == first_full.last_lsn
        assert r["file"] == first_full.path.name
    assert doc["base"]["lsn"] == first_full.last_lsn
    assert doc["base"]["rows"] == base.num_rows


def test_a_trimmed_log_starts_the_history_later(tmp_path: Path) -> None:
    path, out = tmp_path / "db", tmp_path / "out"
    db = DictDB.open(path, fsync="always", segment_size=4096)
    manager = BackupManager(db, path, incremental=True, max_deltas_before_full=1, keep_chains=1)
    t = db.create_table("t")
    with db.audit(actor="bot"):
        for i in range(40):
            t.insert({"id": i, "pad": "x" * 400})
            if i % 10 == 9:
                manager.backup_now()
    last = db.lsn
    db.close()
    first_segment = list_segments(path / "wal")[0][0]
    assert first_segment > 1
    report = export_parquet(path, out, with_base=True)
    assert 1 < report.history_starts_at <= first_segment
    found = rows(out)
    assert [r["lsn"] for r in found] == list(range(report.history_starts_at, last + 1))
    assert {r["actor"] for r in found} == {"bot"}
    doc = read_manifest(out)
    assert doc["history_starts_at"] == report.history_starts_at
    assert doc["history_starts_why"]
    oldest = min((f for f in scan(path).files if f.is_full), key=lambda f: f.last_lsn)
    base = ds.dataset(str(report.base), format="parquet", partitioning="hive").to_table()
    assert sorted(decoded(r["key_json"]) for r in base.to_pylist()) == sorted(
        load(oldest.path).to_dict()["t"]["records"]
    )


# -- OUT ----------------------------------------------------------------------------------------


def test_an_out_that_is_not_an_export_is_refused(durable: Built, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not a dictdb export"):
        export_parquet(durable.path, busy)
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ExportError, match="not a directory"):
        export_parquet(durable.path, a_file)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / MANIFEST).write_text("{}")
    with pytest.raises(ExportError, match="not a dictdb export manifest"):
        export_parquet(durable.path, tmp_path / "bad")


def test_a_part_file_no_manifest_names_is_removed_by_the_next_run(
    durable: Built, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    export_parquet(durable.path, out)
    orphan = out / "table=users" / f"part-{0:016x}-{1:016x}.parquet"
    orphan.write_bytes(b"left by a crash")
    export_parquet(durable.path, out)
    assert not orphan.exists()


@pytest.mark.parametrize(
    ("name", "segment"),
    [
        ("users", "table=users"),
        ("a/b", "table=a%2Fb"),
        ("k=v", "table=k%3Dv"),
        ("_x", "table=_x"),
        ("..", "table=.."),
        ("é %", "table=%C3%A9%20%25"),
    ],
)
def test_table_names_are_percent_encoded_in_one_path_segment(name: str, segment: str) -> None:
    assert table_directory(name) == segment


def test_readers_decode_an_encoded_table_name(tmp_path: Path) -> None:
    path, out = tmp_path / "db", tmp_path / "out"
    with DictDB.open(path, fsync="off") as db:
        db.create_table("a/b=c d").insert({"v": 1})
        db.create_table("123").insert({"v": 2})
    export_parquet(path, out)
    shown = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))  # (the lock)
    assert shown == [MANIFEST, "table=123", "table=a%2Fb%3Dc%20d"]
    found = duckdb.sql(
        f"SELECT DISTINCT \"table\" FROM read_parquet('{out}/**/*.parquet', "
        "hive_partitioning=true, hive_types={'table': VARCHAR}) ORDER BY 1"
    ).fetchall()
    assert found == [("123",), ("a/b=c d",)]


@pytest.mark.parametrize(("group", "chunk"), [(4, 5), (3, 3), (1, 7)])
def test_row_groups_files_and_spills_at_small_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, group: int, chunk: int
) -> None:
    # The sizes that matter at scale (row groups, files, rows pending across tables, chunks),
    # made small: every boundary is crossed, exactly on it too.
    import pyarrow.parquet as pq

    from dictdb.audit import export as module

    monkeypatch.setattr(module, "ROW_GROUP_ROWS", group)
    monkeypatch.setattr(module, "FILE_ROWS", 2 * group)
    monkeypatch.setattr(module, "PENDING_ROWS", 2 * group)
    monkeypatch.setattr(module, "CHUNK_ROWS", chunk)
    path, out = tmp_path / "db", tmp_path / "out"
    with DictDB.open(path, fsync="off") as db:
        for name in ("a", "b", "c"):
            db.create_table(name)
        for i in range(40):
            db.get_table("abc"[i % 3]).insert([{"v": i}] * (1 + i % 4))
    export_parquet(path, out)
    with DictDB.open(path, fsync="off") as db:
        db.get_table("b").update({"v": -1})
        last = db.lsn
    export_parquet(path, out)
    found = rows(out)
    assert [r["lsn"] for r in found] == list(range(1, last + 1))
    expected = collections.Counter(e.table for e in events(path))
    assert expected == collections.Counter(r["table"] for r in found)
    for entry in read_manifest(out)["files"]:
        meta = pq.ParquetFile(out / entry["path"]).metadata
        assert meta.num_rows == entry["rows"] < 3 * group  # closed once past FILE_ROWS
        assert all(meta.row_group(i).num_rows <= group for i in range(meta.num_row_groups))
        lsns = pq.read_table(out / entry["path"], columns=["lsn"])["lsn"].to_pylist()
        assert lsns == sorted(lsns)
        assert (lsns[0], lsns[-1]) == (entry["first_lsn"], entry["last_lsn"])


def test_two_exports_into_one_out_never_run_at_once(tmp_path: Path) -> None:
    import fcntl
    import os

    from dictdb.audit import export as module

    path, out = tmp_path / "db", tmp_path / "out"
    with DictDB.open(path, fsync="off") as db:
        db.create_table("t").insert({"v": 1})
    export_parquet(path, out)
    fd = os.open(out / module._LOCK, os.O_RDWR)  # another export, holding OUT
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ExportError, match="another export"):
            export_parquet(path, out)
    finally:
        os.close(fd)
    assert export_parquet(path, out).rows_added == 0  # released: it runs
    assert [r["lsn"] for r in rows(out)] == [1, 2]

"""Replay at open, batch by batch (`dictdb._replay`, `wal.framing.decode_columns`).

The fast path must give what `Engine.apply_operation` one operation at a time gives: the same
state (rows, the keys of rows that are not plain, next keys, LSN), through `Engine.apply`, and
the same error for a log that does not fit the state.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import re
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dictdb import DictDB
from dictdb._engine import Engine, TableState
from dictdb._values import own_record
from tests.dictdb._scripts.strict import db_diff
from tests.dictdb._scripts.workload import random_statement, sample_values
from wal.errors import CodecError
from wal.framing import (
    WIDTH,
    decode_batch,
    decode_columns,
    encode_batch,
    encode_frame,
    encode_header,
    segment_name,
)
from wal.operation import Operation
from wal.recovery import RecoveryError, read_wal

TS = 1_700_000_000.5


def internals(engine: Engine) -> dict[str, Any]:
    """What a replay must rebuild besides the rows: per table, the keys of rows that are not
    plain and the next auto key; and the LSN."""
    return {
        "lsn": engine.lsn,
        "tables": {
            name: (sorted(map(repr, t.special)), t.next_pk) for name, t in engine.tables.items()
        },
    }


@contextlib.contextmanager
def counting_applies() -> Iterator[list[int]]:
    """Count the operations applied through the engine's apply path while inside: calls of
    `Engine.apply`, and the inserts `Engine.apply_inserts` applies in bulk (as live insert
    statements are)."""
    calls = [0]
    apply, apply_inserts = Engine.apply, Engine.apply_inserts

    def counted_apply(self: Engine, op: Any, plain: bool = True) -> None:
        calls[0] += 1
        apply(self, op, plain)

    def counted_inserts(self: Engine, table: TableState, keys: Any, *args: Any) -> None:
        calls[0] += len(keys)
        apply_inserts(self, table, keys, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Engine, "apply", counted_apply)
        patch.setattr(Engine, "apply_inserts", counted_inserts)
        yield calls


def write_log(root: Path, frames: list[list[tuple[Any, ...]]]) -> None:
    """A log directory of one segment holding *frames* (each a list of operations)."""
    wal = root / "wal"
    wal.mkdir(parents=True)
    first = frames[0][0][0]
    body = b"".join(encode_frame(encode_batch(ops, [False] * len(ops))) for ops in frames)
    (wal / segment_name(first)).write_bytes(encode_header(first) + body)


def op(lsn: int, kind: str, table: str, key: Any = None, after: Any = None) -> tuple[Any, ...]:
    before = {"id": key} if kind in ("update", "delete") else None
    return (lsn, TS, kind, table, key, after, before, None)


def create(lsn: int, table: str = "t", schema: Any = None) -> tuple[Any, ...]:
    return op(lsn, "create", table, None, {"primary_key": "id", "schema": schema})


def inserts(first: int, keys: list[Any], table: str = "t") -> list[tuple[Any, ...]]:
    return [op(first + i, "insert", table, k, {"id": k, "v": i}) for i, k in enumerate(keys)]


def reference(frames: list[list[tuple[Any, ...]]]) -> tuple[Any, Any]:
    """What replaying the operations one by one through `apply_operation` gives: the error
    (type and message) or the state."""
    engine = Engine()
    try:
        for ops in frames:
            for o in ops:
                engine.apply_operation(Operation(*o))
    except Exception as exc:
        return type(exc), str(exc)
    return engine.to_dict(), internals(engine)


def opened(root: Path) -> tuple[Any, Any]:
    try:
        with DictDB.open(root, fsync="off") as db:
            return db.to_dict(), internals(db.engine)
    except Exception as exc:
        return type(exc), str(exc)


BAD_LOGS = {
    "duplicate key in a batch of inserts": [[create(1)], inserts(2, [1, 2, 1])],
    "duplicate key in a mixed batch": [[create(1), *inserts(2, [1, 2, 1])]],
    "insert of a key an earlier operation of the batch inserted": [
        [create(1), *inserts(2, [1]), *inserts(3, [1])]
    ],
    "a batch of inserts mixing key types": [[create(1)], inserts(2, [1, "1", 1])],
    "insert of a key an earlier batch inserted": [[create(1), *inserts(2, [1])], inserts(3, [1])],
    "insert into a missing table": [inserts(1, [1])],
    "insert into a missing table in a mixed batch": [[create(1), *inserts(2, [1], table="u")]],
    "update of a missing key": [[create(1), *inserts(2, [1]), op(3, "update", "t", 2, {"id": 2})]],
    "update with another key": [[create(1), *inserts(2, [1]), op(3, "update", "t", 1, {"id": 2})]],
    "update into a missing table": [[create(1), op(2, "update", "u", 1, {"id": 1})]],
    "insert of a second table's key in its batch": [
        [create(1), create(2, "u")],
        [*inserts(3, [1]), *inserts(4, [1], table="u"), *inserts(5, [1])],
    ],
    "delete of a missing key": [[create(1), op(2, "delete", "t", 5)]],
    "delete of a missing key, own batch": [[create(1)], [op(2, "delete", "t", 5)]],
    "after-image without its key": [[create(1)], [op(2, "insert", "t", 1, {"v": 1})]],
    "after-image with another key": [[create(1)], [op(2, "insert", "t", 1, {"id": 2})]],
    "after-image with a key of another type": [[create(1)], [op(2, "insert", "t", 1, {"id": "1"})]],
    "after-image not a record": [[create(1)], [op(2, "insert", "t", 1, None)]],
    "key of a type keys cannot have": [[create(1)], [op(2, "insert", "t", 1.5, {"id": 1.5})]],
    "schema violated in a batch of inserts": [
        [create(1, schema={"id": "int", "v": "str"})],
        inserts(2, [1, 2]),
    ],
    "schema violated in a mixed batch": [
        [create(1, schema={"id": "int", "v": "str"}), *inserts(2, [1, 2])],
    ],
    "create of an existing table": [[create(1), create(2)]],
    "drop of a missing table": [[op(1, "drop", "t", None, None)]],
    "unknown kind": [[create(1), op(2, "upsert", "t", 1, {"id": 1})]],
}


@pytest.mark.parametrize("name", sorted(BAD_LOGS))
def test_a_log_that_does_not_fit_the_state_is_refused_as_one_by_one(
    tmp_path: Path, name: str
) -> None:
    frames = BAD_LOGS[name]
    expected = reference(frames)
    assert isinstance(expected[0], type), "the case must be refused"
    write_log(tmp_path / "db", frames)
    assert expected == opened(tmp_path / "db")


GOOD_LOGS = {
    "inserts, int keys": [[create(1)], inserts(2, list(range(50)))],
    "inserts, str keys": [[create(1)], inserts(2, [f"k{i}" for i in range(50)])],
    "inserts into a schema table": [
        [create(1, schema={"id": "int", "v": "int"})],
        inserts(2, list(range(10))),
    ],
    "mixed kinds and tables": [
        [
            create(1),
            create(2, "u"),
            *inserts(3, [1, 2, 3]),
            op(6, "update", "t", 2, {"id": 2, "v": "changed"}),
            op(7, "delete", "t", 1),
            *inserts(8, [1], table="u"),
            op(9, "drop", "t", None, None),
            create(10),
            *inserts(11, [7]),
        ]
    ],
    "ints at the edge of 64 bits": [
        [create(1)],
        [op(2, "insert", "t", 1, {"id": 1, "big": 10**18 - 1, "small": 1 - 10**18})],
        [
            op(3, "insert", "t", 2, {"id": 2, "big": 2**63}),
            op(4, "insert", "t", 2**64 - 1, {"id": 2**64 - 1}),
            op(5, "insert", "t", 3, {"id": 3, "big": 2**63 - 1, "small": -(2**63)}),
        ],
    ],
    "a record that reads like a tag": [[create(1, "t")], [op(2, "insert", "t", 1, {"id": 1})]],
}


#: Operations of GOOD_LOGS in batches that are not plain (checked one by one): 19 digits
#: make the decoder doubt, 2**63 - 1 included.
NOT_PLAIN = {"ints at the edge of 64 bits": 3}


@pytest.mark.parametrize("name", sorted(GOOD_LOGS))
def test_a_log_replays_to_the_state_one_by_one_gives(tmp_path: Path, name: str) -> None:
    frames = GOOD_LOGS[name]
    expected = reference(frames)
    assert not isinstance(expected[0], type), expected
    write_log(tmp_path / "db", frames)
    count = sum(map(len, frames))
    checked = [0]
    original = Engine.apply_operation

    def apply_operation(self: Engine, op: Operation) -> None:
        checked[0] += 1
        original(self, op)

    with counting_applies() as calls, pytest.MonkeyPatch.context() as patch:
        patch.setattr(Engine, "apply_operation", apply_operation)
        assert expected == opened(tmp_path / "db")
    assert count == calls[0]
    # Plain inserts, updates and deletes take the batched path; DDL the checked one.
    ddl = sum(o[2] in ("create", "drop") for ops in frames for o in ops)
    assert ddl + NOT_PLAIN.get(name, 0) == checked[0]


def test_a_one_field_record_whose_field_starts_with_a_dollar_is_not_plain(
    tmp_path: Path,
) -> None:
    with DictDB.open(tmp_path / "db", fsync="off") as db:
        t = db.create_table("t", "$id")
        t.insert({"$id": 1})
        t.insert({"$id": 2, "x": 1})
        expected, inside = db.to_dict(), internals(db.engine)
    assert ["1"] == inside["tables"]["t"][0]
    with DictDB.open(tmp_path / "db", fsync="off") as again:
        assert [] == db_diff(expected, again.to_dict())
        assert inside == internals(again.engine)


def test_values_that_need_tags_come_back_exactly(tmp_path: Path) -> None:
    rows = [
        {"id": 1, **sample_values()},
        {"id": 2, "b": b"\x00\xff", "d": dt.date(2024, 2, 29), "u": uuid.UUID(int=7)},
        {"id": 3, "t": dt.datetime(2024, 1, 1, 1, 30, fold=1), "n": decimal.Decimal("-0.0")},
        {"id": 4, "big": 2**70, "neg": -(2**70), "inf": float("inf"), "z": -0.0},
        {"id": 5, "nested": {"$x": [1, {"$bytes": "not a tag"}]}, "l": [[[]]]},
        {"id": 6, "flat": "plain", "n": 1, "f": 1.5, "ok": True, "none": None},
    ]
    with DictDB.open(tmp_path / "db", fsync="off") as db:
        t = db.create_table("t")
        t.insert(rows)
        keyed = db.create_table("k", "key")
        for key in (b"\x01", dt.date(2020, 1, 1), uuid.UUID(int=1), "s", 2**63 - 1):
            keyed.insert({"key": key, "v": 1})
        expected, inside = db.to_dict(), internals(db.engine)
    with DictDB.open(tmp_path / "db", fsync="off") as again:
        assert [] == db_diff(expected, again.to_dict())
        assert inside == internals(again.engine)
        for row in rows:
            back = again.engine.tables["t"].rows[row["id"]]
            assert row == back
            assert list(map(type, row.values())) == list(map(type, back.values()))


@settings(max_examples=15)
@given(data=st.data(), compress=st.booleans())
def test_replay_equals_the_live_database_and_goes_through_apply(
    data: st.DataObject, compress: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "db"
        db = DictDB.open(root, fsync="off", compress=compress, segment_size=8192)
        bulk = db.create_table("bulk")
        bulk.insert([{"v": i, "s": f"r{i}"} for i in range(data.draw(st.integers(0, 300)))])
        for _ in range(data.draw(st.integers(0, 30), label="statements")):
            random_statement(data, db)
        expected, inside = db.to_dict(), internals(db.engine)
        live_special = {name: t.special for name, t in db.engine.tables.items()}
        db.close()
        with counting_applies() as calls, DictDB.open(root, fsync="off") as again:
            assert [] == db_diff(expected, again.to_dict())
            assert inside["lsn"] == again.lsn
            for name, table in again.engine.tables.items():
                assert inside["tables"][name][1] == table.next_pk
                # Exactly the rows that are not plain (the live path may mark more: a row
                # built around a one-field record whose field starts with "$").
                assert exact_special(table) == table.special
                assert table.special <= live_special[name]
        assert inside["lsn"] == calls[0]


def exact_special(table: TableState) -> set[Any]:
    return {key for key, row in table.rows.items() if not own_record(table.name, row)[1]}


# -- the column decoder --------------------------------------------------------------------


def payload(ops: list[tuple[Any, ...]]) -> bytes:
    return encode_batch(ops, [False] * len(ops))


def test_plain_batches_are_exactly_those_of_flat_untagged_values() -> None:
    flat = [(*create(1)[:5], {"primary_key": "id", "schema": None}, None, None)]
    assert decode_columns(payload(flat)).plain
    rows = [op(1, "insert", "t", 1, {"id": 1, "s": "x", "f": -0.0, "b": False, "n": None})]
    assert decode_columns(payload(rows)).plain
    for after in (
        {"id": 1, "big": 2**63},  # written as a number, beyond 64-bit signed
        {"id": 1, "inf": float("inf")},
        {"id": 1, "nested": [1]},
        {"id": 1, "b": b"x"},
        {"$id": 1},  # a record that reads like a tag
    ):
        batch = decode_columns(payload([op(1, "insert", "t", 1, after)]))
        assert not batch.plain, after
        assert [Operation(1, TS, "insert", "t", 1, after, None, None)] == batch.operations()
    assert not decode_columns(payload([op(1, "insert", "t", b"k", {"id": b"k"})])).plain
    # A 19-digit number in a string only makes the check doubt (plain is never wrongly True).
    assert not decode_columns(payload([op(1, "insert", "t", 1, {"s": "1" * 19})])).plain


@pytest.mark.parametrize(
    "image",
    [{"$date": "2020-01-01"}, {"$int": "5"}, {"$dict": {"a": 1}}, {"$x": 1}, {"$": None}],
)
def test_a_flat_image_that_is_a_tag_is_read_back(image: dict[str, Any]) -> None:
    from wal.framing import decode_each

    for at in (5, 6, 7):  # after-image, before-image, meta
        items: list[Any] = [1, TS, "insert", "t", 1, None, None, None]
        items[at] = image
        try:
            expected: Any = decode_each(items).operations()
        except CodecError as exc:
            with pytest.raises(CodecError, match=re.escape(str(exc))):
                decode_columns(orjson.dumps(items))
            continue
        batch = decode_columns(orjson.dumps(items))
        assert not batch.plain
        assert expected == batch.operations()


def test_an_int_lsn_range_and_times_are_checked_by_column() -> None:
    ops = [op(7 + i, "insert", "t", i, {"id": i}) for i in range(5)]
    batch = decode_columns(payload(ops))
    assert (7, 11, 5) == (batch.first, batch.last, len(batch))
    assert [Operation(*o) for o in ops] == batch.operations()
    assert batch.operations() == decode_batch(payload(ops))
    assert batch.after(6) is batch
    assert batch.after(11) is None
    tail = batch.after(9)
    assert tail is not None
    assert [Operation(*o) for o in ops[3:]] == tail.operations()
    int_times = orjson.dumps([1, 5, "insert", "t", 1, {"id": 1}, None, None])
    assert [5.0] == decode_columns(int_times).ts
    assert float is type(decode_columns(int_times).operations()[0].ts)


BAD_PAYLOADS = {
    "an LSN that is a float": [1.0, TS, "insert", "t", 1, None, None, None],
    "an LSN that is a bool": [True, TS, "insert", "t", 1, None, None, None],
    "LSNs not consecutive": [1, TS, "insert", "t", 1, None, None, None] * 2,
    "a time before 1970": [1, -1, "insert", "t", 1, None, None, None],
    "a time as a string": [1, "now", "insert", "t", 1, None, None, None],
    "a kind that is a list": [1, TS, ["insert"], "t", 1, None, None, None],
    "a table that is a number": [1, TS, "insert", 5, 1, None, None, None],
    "a bad tag": [1, TS, "insert", "t", 1, {"id": {"$date": "not a date"}}, None, None],
    "a bad tag after a header error": [
        *[1, TS, "insert", "t", 1, {"$bytes": "!"}, None, None],
        *[2, TS, 3, "t", 1, None, None, None],
    ],
    "a bad key tag after a bad after-image tag": [
        *[1, TS, "insert", "t", 1, {"$bytes": "!"}, None, None],
        *[2, TS, "insert", "t", {"$uuid": "x"}, None, None, None],
    ],
}


def slow_error(items: list[Any]) -> str:
    """The error the per-operation decoder gives (the reference)."""
    from wal.framing import decode_each

    with pytest.raises(Exception) as caught:
        decode_each(items)
    return f"{type(caught.value).__name__}: {caught.value}"


@pytest.mark.parametrize("name", sorted(BAD_PAYLOADS))
def test_a_malformed_payload_gives_the_per_operation_error(name: str) -> None:
    items = BAD_PAYLOADS[name]
    assert 0 == len(items) % WIDTH
    with pytest.raises(Exception) as caught:
        decode_columns(orjson.dumps(items))
    assert slow_error(items) == f"{type(caught.value).__name__}: {caught.value}"


def test_a_gap_between_frames_is_refused(tmp_path: Path) -> None:
    write_log(tmp_path / "db", [[create(1), *inserts(2, [1])], inserts(4, [2])])
    with pytest.raises(RecoveryError, match="frame starts at LSN 4, expected 3"):
        DictDB.open(tmp_path / "db", fsync="off")


@pytest.mark.parametrize("retain", [True, None])
def test_the_journal_after_replay_is_as_if_each_operation_was_appended(
    tmp_path: Path, retain: bool | None
) -> None:
    write_log(tmp_path / "db", [[create(1)], inserts(2, list(range(20))), inserts(22, [20])])
    logged = read_wal(tmp_path / "db" / "wal")[0]
    with DictDB.open(tmp_path / "db", fsync="off", retain_journal=retain) as db:
        journal = db.engine.journal
        assert (22, TS) == (journal.last_lsn, journal.last_ts)
        if retain:
            assert logged == journal.read(1)
        else:
            assert 0 == len(journal)
        db.get_table("t").insert({"id": 99})  # the journal goes on from there
        assert 23 == journal.last_lsn

"""The bulk write path (`dictdb._values.own_records`, `Engine.commit_inserts`) against the
row-by-row one it stands for.

`own_records` checks chunks of flat rows a column at a time; whatever it gives must be exactly
what `own_record` gives row by row (rows, field order, plain flags, the same refusal), and the
auto keys those of the row-by-row key rule. `Engine.apply_inserts` must leave the state that
applying each operation leaves. Chunks are made tiny here so that batches cross many chunk
boundaries, mixing fast and slow chunks.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dictdb import DictDB, DuplicateKeyError, PrimaryKeyError, ValueDomainError, _values
from dictdb._engine import Engine
from dictdb._values import own_record, own_records
from tests import strategies as s
from wal import DELETE, INSERT, UPDATE


class StrSub(str):
    """A str subclass: not of the domain (as `tests.strategies.Color` for int)."""


#: Flat values of the fast path's types, with every edge of "plain" and of the domain.
FLAT_VALUES: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    7,
    2**63 - 1,
    -(2**63),
    2**63,  # in the domain, not plain
    -(2**63) - 1,
    2**70,
    0.0,
    -0.0,
    1.5,
    1e308,
    -1e308,  # sums overflow: the slow look must still accept them
    float("inf"),  # in the domain, not plain
    float("-inf"),
    "",
    "a",
    "é",
    "日本",
    "$x",
)
#: Values outside the domain, or not flat scalars.
ODD_VALUES: tuple[Any, ...] = (
    float("nan"),
    "\ud800",
    "a\udfffb",
    StrSub("x"),
    s.Color.RED,
    decimal.Decimal("NaN"),
    b"bytes",
    dt.date(2024, 1, 1),
    uuid.UUID(int=3),
    decimal.Decimal("1.5"),
    [1, "a"],
    {"k": [1]},
    {"$k": 1},
    (1, 2),
    object(),
)
FIELDS = ("a", "b", "id", "$t", "é")


@pytest.fixture
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_values, "_CHUNK", 3)


def flat_values(odd: bool) -> st.SearchStrategy[Any]:
    base = st.sampled_from(FLAT_VALUES) | st.integers() | st.text(max_size=4)
    return (base | st.sampled_from(ODD_VALUES)) if odd else base


@st.composite
def batches(draw: st.DrawFn, odd: bool = True) -> list[Any]:
    """Records mostly sharing one set of fields (the fast path's case), some ragged, some
    odd: other fields or order, a value outside the domain, a non-dict, a non-str field."""
    fields = draw(st.lists(st.sampled_from(FIELDS), min_size=0, max_size=3, unique=True))
    out: list[Any] = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 9)) if odd else 0
        if kind <= 6:
            record = {f: draw(flat_values(odd and kind == 6)) for f in fields}
        elif kind == 7:
            record = draw(s.records(max_size=3))
        elif kind == 8:
            record = {f: draw(flat_values(False)) for f in reversed(fields)}
            if draw(st.booleans()):
                record[draw(st.sampled_from(FIELDS))] = draw(flat_values(False))
            else:
                record.pop(draw(st.sampled_from(FIELDS)), None)
        else:
            record = draw(
                st.sampled_from(
                    [[("a", 1)], s.SubDict(a=1), {1: "x"}, {"\udc80": 1}, {"$only": 1}, {}]
                )
            )
        if isinstance(record, dict) and "id" in record and draw(st.booleans()):
            record["id"] = draw(st.none() | st.integers(-3, 40) | st.sampled_from(["k", b"k"]))
        out.append(record)
    return out


def described(row: Any) -> Any:
    """A row with every value's exact type and the fields' order, for exact comparison."""
    if type(row) is dict:
        return [(k, described(v)) for k, v in row.items()]
    if type(row) is list:
        return [described(v) for v in row]
    if type(row) is float and math.isnan(row):
        return (float, "nan")
    return (type(row), row)


def row_by_row(
    records: list[Any], key_field: str | None, first_key: int
) -> tuple[list[dict[str, Any]], list[bool], bool]:
    """What `own_records` stands for, with `own_record` row by row."""
    pairs = [own_record("t", r) for r in records]
    rows = [row for row, _ in pairs]
    plains = [plain for _, plain in pairs]
    if key_field is None:
        return rows, plains, False
    if any(row.get(key_field) is not None for row in rows):
        return rows, plains, True
    for position, row in enumerate(rows):
        row[key_field] = first_key + position
        if len(row) == 1 and key_field[0] == "$":
            plains[position] = False
    return rows, plains, False


def outcome(call: Any) -> Any:
    try:
        return call()
    except ValueDomainError as exc:
        return ("refused", exc.table, exc.field, exc.path)


@pytest.mark.usefixtures("tiny_chunks")
@given(records=batches(), key_field=st.sampled_from([None, "id", "$t"]), first=st.integers(1, 9))
def test_own_records_is_own_record_row_by_row(
    records: list[Any], key_field: str | None, first: int
) -> None:
    expected = outcome(lambda: row_by_row(records, key_field, first))
    auto = list(range(first, first + len(records)))
    got = outcome(lambda: own_records("t", records, key_field, auto))
    if expected[0] == "refused":
        assert got == expected
        return
    rows, plains, keyed = got
    want_rows, want_plains, want_keyed = expected
    assert keyed == want_keyed
    assert [described(r) for r in rows] == [described(r) for r in want_rows]
    assert (plains or [True] * len(rows)) == want_plains
    for row, record in zip(rows, records, strict=True):
        assert row is not record  # owned


@given(column=st.lists(flat_values(True), min_size=1, max_size=6))
def test_a_plain_column_is_one_of_plain_rows(column: list[Any]) -> None:
    want = all(outcome(lambda v=v: own_record("t", {"f": v})[1]) is True for v in column)
    assert _values._plain_column(column, len(column)) == want


# -- the table: keys, atomicity, ownership, journal -------------------------------------------


def state(db: DictDB, name: str = "t") -> Any:
    t = db.engine.tables[name]
    return (
        [(described(k), described(r)) for k, r in t.rows.items()],
        sorted(map(repr, t.special)),
        sorted((repr(k), v) for k, v in t.changed.items()),
        t.next_pk,
        db.engine.lsn,
    )


def one_by_one_keys(db: DictDB, records: list[Any]) -> list[Any]:
    """The keys the batch must get: the row-by-row rule (explicit ones skipped)."""
    table = db.engine.tables["t"]
    rows = table.rows
    explicit = {r.get("id") for r in records} - {None}
    next_key = table.next_pk
    keys = []
    for r in records:
        key = r.get("id")
        if type(key) is int:
            next_key = max(next_key, key + 1)
        elif key is None:
            while next_key in rows or next_key in explicit:
                next_key += 1
            key = next_key
            next_key += 1
        keys.append(key)
    return keys


def populated(retain: bool | None) -> DictDB:
    db = DictDB(retain_journal=retain)
    t = db.create_table("t")
    t.insert([{"a": 1}, {"a": [2]}, {"a": 3}, {"id": 9, "a": 4}])
    t.delete(where=t.a == 3)  # key 3 deleted: a dirty "gone"
    t.update({"a": dt.date(2024, 1, 1)}, where=t.id == 1)  # key 1 special
    return db


@pytest.mark.usefixtures("tiny_chunks")
@given(records=batches(), retain=st.sampled_from([None, True, False]))
def test_bulk_insert_is_the_operations_applied_one_by_one(
    records: list[Any], retain: bool | None
) -> None:
    db = populated(retain)
    db.engine.want_journal()
    before = state(db)
    lsn = db.engine.lsn
    try:
        keys = db.get_table("t").insert(records)
    except (ValueDomainError, DuplicateKeyError, PrimaryKeyError):
        assert state(db) == before  # atomic: nothing changed, nothing journaled
        assert db.engine.journal.last_lsn == lsn
        return
    assert keys == one_by_one_keys(populated(retain), records)
    assert db.engine.lsn == db.engine.journal.last_lsn == lsn + len(records)
    # The same operations applied one at a time by `Engine.apply` give the same state.
    twin = populated(retain)
    engine = twin.engine
    table = db.engine.tables["t"]
    for i, key in enumerate(keys):
        row = table.rows[key]
        engine.apply(
            (lsn + 1 + i, 0.0, INSERT, "t", key, row, None, None), key not in table.special
        )
    assert state(twin) == state(db)
    if db.engine.journal.retain:
        ops = db.engine.journal.read(lsn + 1)
        assert [(op.kind, op.key, op.before) for op in ops] == [(INSERT, k, None) for k in keys]
        assert all(op.after is table.rows[op.key] for op in ops)
        assert len({op.ts for op in ops}) <= 1  # one statement, one time
    # Rows are owned: changing what was passed changes nothing stored.
    snapshot = state(db)
    for record in records:
        if type(record) is dict:
            record["a"] = "changed"
            record.clear()
    assert state(db) == snapshot


def test_apply_inserts_equals_apply_of_each() -> None:
    def engine() -> Engine:
        e = Engine()
        e.create("t", "id", None)
        e.commit(INSERT, "t", 1, {"id": 1, "x": [1]}, None, False)
        e.commit(INSERT, "t", 2, {"id": 2}, None)
        e.cut_pre(e.lsn)  # a backup cut: 1 and 2 there at it
        e.commit(DELETE, "t", 2, None, {"id": 2}, True)  # 2: gone since the cut
        e.commit(UPDATE, "t", 1, {"id": 1, "x": [2]}, {"id": 1, "x": [1]}, False)
        e.tables["t"].special.add(5)  # a stale flag: the plain insert of 5 clears it
        return e

    rows = [{"id": k, "v": str(k)} for k in (2, 5, 7, "s")]
    plains = [True, True, False, True]
    keys = [r["id"] for r in rows]
    bulk, each = engine(), engine()
    bulk.apply_inserts(bulk.tables["t"], keys, rows, plains, bulk.lsn + 4)
    for i, (key, row, plain) in enumerate(zip(keys, rows, plains, strict=True)):
        each.apply((each.lsn + 1, 0.0, INSERT, "t", key, row, None, None), plain)
        assert each.lsn == bulk.lsn - 3 + i
    a, b = bulk.tables["t"], each.tables["t"]
    assert list(a.rows.items()) == list(b.rows.items())
    assert a.changed == b.changed
    assert a.changed[2] == 1  # there at the cut: written
    assert a.special == b.special == {1, 7}
    assert a.next_pk == b.next_pk == 8
    assert bulk.lsn == each.lsn


def test_a_bad_value_deep_in_a_big_batch_changes_nothing() -> None:
    db = DictDB(retain_journal=True)
    t = db.create_table("t")
    t.insert({"name": "first"})
    rows = [{"name": f"user{i}", "age": i, "score": i / 3} for i in range(5000)]
    before = state(db)
    for bad in ("\ud800", float("nan"), StrSub("x"), s.Color.RED, {1: 2}):
        rows[3333]["age"] = bad
        with pytest.raises(ValueDomainError) as info:
            t.insert(rows)
        assert (info.value.table, info.value.field) == ("t", "age")
        assert state(db) == before
        assert len(db.engine.journal) == 2  # the create and the first insert
    rows[3333]["age"] = 2**63  # in the domain, not plain: stored, and flagged
    keys = t.insert(rows)
    assert keys == list(range(2, 5002))
    assert db.engine.tables["t"].special == {3335}
    assert t.get(3335)["age"] == 2**63
    rows[0]["name"] = "changed"
    assert t.get(2)["name"] == "user0"
    assert len(db.engine.journal) == 5002


def test_fields_beyond_the_first_rows_are_checked() -> None:
    t = DictDB().create_table("t")
    rows: list[dict[str, Any]] = [{"a": 1, "b": 2} for _ in range(3000)]
    rows[2500] = {"a": 1, "c": float("nan")}  # same width, another field
    with pytest.raises(ValueDomainError):
        t.insert(rows)
    rows[2500] = {"a": 1, "b": 2, "c": "\udc00"}  # one field more
    with pytest.raises(ValueDomainError):
        t.insert(rows)
    assert len(t) == 0


def test_auto_and_explicit_keys_across_chunks(tiny_chunks: None) -> None:
    t = DictDB().create_table("t")
    records: list[dict[str, Any]] = [{"v": i} for i in range(10)]
    records[8]["id"] = 2  # named late: the auto keys before it skip it
    records[3]["id"] = None
    assert t.insert(records) == [1, 3, 4, 5, 6, 7, 8, 9, 2, 10]
    assert list(t.get(5)) == ["v", "id"]  # a None key stays where it was
    assert list(t.get(1)) == ["v", "id"]
    assert t.next_pk == 11


def test_durable_bulk_insert_reopens_equal(tmp_path: Any) -> None:
    db = DictDB.open(tmp_path / "db", fsync="off")
    t = db.create_table("t")
    t.insert([{"n": i, "f": i / 7, "s": f"é{i}"} for i in range(3000)])
    t.insert([{"n": 1, "d": dt.date(2024, 1, i % 28 + 1)} for i in range(2000)])
    want = db.engine.to_dict()
    db.close()
    again = DictDB.open(tmp_path / "db", fsync="off")
    try:
        assert again.engine.to_dict() == want
        assert again.engine.tables["t"].special == set(range(3001, 5001))
    finally:
        again.close()


# -- writes by key ------------------------------------------------------------------------------

KEYS: tuple[Any, ...] = (
    1,
    2,
    -5,
    2**70,
    "a",
    "1",
    b"1",
    uuid.UUID(int=1),
    dt.date(2024, 1, 1),
    dt.datetime(2024, 1, 1),
    dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
)


@given(
    keys=st.lists(st.sampled_from(KEYS), unique=True, max_size=6),
    value=st.sampled_from(KEYS + s.TRICKY_VALUES),
)
def test_a_key_equality_matches_what_a_scan_matches(keys: list[Any], value: Any) -> None:
    db = DictDB(retain_journal=True)
    t = db.create_table("t")
    for key in keys:
        # Equal aware datetimes in two offsets are one key: the second is a duplicate.
        if key not in t:
            t.insert({"id": key, "v": 0})
    where = t.id == value
    scan = [(k, r) for k, r in t._t.rows.items() if where.fn(r)]
    assert t._matching(where) == scan
    assert [(k, r) for k, r in t._matching(where) if r["id"] is k] == scan  # the row's own key
    if scan:
        assert t.update({"v": 1}, where=where) == len(scan)
        assert t.get(scan[0][0])["v"] == 1
        op = db.engine.journal.read(db.engine.lsn)[0]
        assert (op.kind, op.key) == (UPDATE, scan[0][0])
    else:
        with pytest.raises(Exception, match="no record matches"):
            t.update({"v": 1}, where=where)


def test_update_by_key_keeps_the_rules() -> None:
    db = DictDB(retain_journal=True)
    t = db.create_table("t")
    t.insert([{"v": 1}, {"v": [2]}])
    assert t.update({"id": 1.0, "w": 2}, where=t.id == 1) == 1  # an equal key: allowed
    assert type(t.get(1)["id"]) is int  # and the key keeps its own type
    with pytest.raises(PrimaryKeyError):
        t.update({"id": 3}, where=t.id == 1)
    with pytest.raises(ValueDomainError):
        t.update({"v": float("nan")}, where=t.id == 1)
    assert t.update({"v": 5}, where=t.id == 1) == 1
    assert 1 not in db.engine.tables["t"].special
    assert t.update({"v": {"k": 1}}, where=t.id == 1) == 1
    assert 1 in db.engine.tables["t"].special
    assert t.update({"v": 5}, where=t.id == 2) == 1
    op = db.engine.journal.read(db.engine.lsn)[0]
    assert (op.kind, op.key, op.before, op.after) == (
        UPDATE,
        2,
        {"v": [2], "id": 2},
        {"v": 5, "id": 2},
    )
    assert t.get(1) == {"v": {"k": 1}, "id": 1, "w": 2}


def test_upsert_paths() -> None:
    db = DictDB(retain_journal=True)
    t = db.create_table("t")
    assert t.upsert({"v": 1}) == (1, "inserted")
    assert t.upsert({"id": 1, "w": [1]}) == (1, "updated")
    assert 1 in db.engine.tables["t"].special
    assert t.upsert({"id": 1, "w": 2}, on_conflict="ignore") == (1, "ignored")
    with pytest.raises(DuplicateKeyError):
        t.upsert({"id": 1}, on_conflict="error")
    with pytest.raises(ValueDomainError):
        t.upsert({"id": 1, "w": "\ud800"})
    with pytest.raises(PrimaryKeyError):
        t.upsert({"id": 1.5})
    assert t.get(1) == {"v": 1, "id": 1, "w": [1]}
    assert t.upsert({"id": 1, "w": 3}) == (1, "updated")
    assert t.upsert({"id": "k"}) == ("k", "inserted")
    assert db.engine.lsn == 5 == len(db.engine.journal)


def test_field_attributes_are_kept_and_members_win() -> None:
    t = DictDB().create_table("t")
    t.insert([{"age": 1}, {"age": 2}])
    first = t.age
    assert t.age is first  # kept after the first lookup
    assert t.count(where=t.age == 2) == 1
    assert callable(t.insert)  # members are never fields
    assert t["insert"].name == "insert"
    with pytest.raises(AttributeError):
        _ = t._private

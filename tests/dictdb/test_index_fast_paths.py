"""The indexes' fast paths give what the plain forms would.

`HashIndex` holds a value's only key bare (a set only from the second key on); its build and
its row-level calls inline the value-level ones. These tests drive random write sequences
through both faces and compare every lookup with a scan of the current rows.
"""

from __future__ import annotations

import decimal
import gc
import operator
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dictdb import Field, Table
from dictdb._select import copy_rows
from dictdb.index import (
    NO_KEY,
    HashIndex,
    SortedIndex,
    candidates,
    hash_key,
    make_index,
    matching_rows,
)
from dictdb.index.planner import _exact
from dictdb.query import Compare
from tests import strategies as s

# A small pool, so that values are shared by several rows, then by one, then by none.
POOL = (0, 1, 1.0, True, "a", "b", None, b"a", [1], [1.0], {"k": 1}, 2.5)


def check_representation(index: HashIndex) -> None:
    """An entry is one bare key, or a set of two keys or more; never an empty set."""
    for entry in index._buckets.values():
        if type(entry) is set:
            assert len(entry) >= 2, entry


def expected_keys(model: dict[Any, Any], value: Any) -> set[Any]:
    form = hash_key(value)
    return {pk for pk, v in model.items() if hash_key(v) == form}


ops = st.lists(
    st.tuples(
        st.sampled_from(["insert", "delete", "update"]),
        st.integers(0, 7),
        st.sampled_from(POOL),
    ),
    max_size=60,
)


@given(steps=ops)
def test_value_level_calls_keep_hash_lookups_equal_to_a_scan(steps: list[Any]) -> None:
    index = HashIndex()
    model: dict[int, Any] = {}
    for op, pk, value in steps:
        if op == "insert" and pk not in model:
            index.insert(pk, value)
            model[pk] = value
        elif op == "delete" and pk in model:
            index.delete(pk, model.pop(pk))
        elif op == "update" and pk in model:
            index.update(pk, model[pk], value)
            model[pk] = value
        check_representation(index)
        for probe in POOL:
            assert expected_keys(model, probe) == set(index.equal(probe)), probe
            assert expected_keys(model, probe) == index.search(probe)
    # The read-only view shows sets whatever the entry's form.
    assert {form: set(keys) for form, keys in index.index.items()} == {
        hash_key(v): expected_keys(model, v) for v in model.values()
    }


def test_a_reinserted_key_and_a_deleted_absent_key_change_nothing() -> None:
    index = HashIndex()
    index.insert(1, "x")
    index.insert(1, "x")
    assert index._buckets == {"x": 1}
    index.delete(2, "x")  # another key under the value: nothing to forget
    index.delete(1, "y")
    assert index._buckets == {"x": 1}
    index.insert(2, "x")
    index.insert(3, "x")
    index.delete(2, "x")
    index.delete(3, "x")
    assert index._buckets == {"x": 1}
    assert {"x"} == set(index.index)
    assert frozenset({1}) == index.index["x"]
    index.delete(1, "x")
    assert index._buckets == {}
    assert set() == index.search("x")


def test_a_value_without_a_canonical_form_is_kept_aside() -> None:
    index = HashIndex("v")
    odd = float("nan")
    index.build([(1, {"v": odd}), (2, {"v": "a"})])
    assert hash_key(odd) is NO_KEY
    assert {1} == index._odd
    assert {1, 2} == index.equal("a")  # over-reported, never lost
    index.remove(1, {"v": odd})
    assert {2} == index.equal("a")


@given(
    rows=st.lists(st.fixed_dictionaries({}, optional={"v": st.sampled_from(POOL)}), max_size=30),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["insert", "update", "upsert", "delete"]),
            st.integers(1, 35),
            st.fixed_dictionaries({}, optional={"v": st.sampled_from(POOL)}),
        ),
        max_size=30,
    ),
)
def test_table_writes_keep_both_indexes_equal_to_a_rebuild_and_a_scan(
    rows: list[dict[str, Any]], steps: list[Any]
) -> None:
    hashed, ordered, plain = Table("h"), Table("s"), Table("p")
    hashed.create_index("v", "hash")
    for t in (hashed, ordered, plain):
        t.insert([dict(r) for r in rows])
    ordered.create_index("v", "sorted")
    field = Field("v")
    for op, pk, record in steps:
        for t in (hashed, ordered, plain):
            if op == "insert" and pk not in t._t.rows:
                t.insert({"id": pk, **record})
            elif op == "update" and pk in t._t.rows:
                t.update(record, where=Field("id") == pk)
            elif op == "upsert":
                t.upsert({"id": pk, **record})
            elif op == "delete" and pk in t._t.rows:
                t.delete(Field("id") == pk)
        for t in (hashed, ordered):
            index = t._t.indexes["v"]
            fresh = make_index("v", index.index_type)
            fresh.build(t._t.rows.items())
            if isinstance(index, HashIndex):
                assert isinstance(fresh, HashIndex)
                check_representation(index)
                assert dict(fresh.index) == dict(index.index)
                assert fresh._odd == index._odd
            else:
                assert isinstance(index, SortedIndex)
                assert isinstance(fresh, SortedIndex)
                assert list(fresh._map.items()) == list(index._map.items())
        for probe in POOL:
            expected = plain.select(where=field == probe)
            assert expected == hashed.select(where=field == probe), probe
            assert expected == ordered.select(where=field == probe), probe
            found = candidates(field == probe, hashed._t.indexes, hashed._t.rows, "id")
            assert found is not None
            assert {r["id"] for r in expected} <= set(found)


@given(rows=st.lists(s.query_records(), max_size=25), probe=s.query_values())
def test_hash_lookups_after_a_build_equal_a_scan(rows: list[dict[str, Any]], probe: Any) -> None:
    plain, hashed = Table("p"), Table("h")
    plain.insert(rows)
    hashed.insert(rows)
    hashed.create_index("a", "hash")
    where = Field("a") == probe
    assert plain.select(where=where) == hashed.select(where=where)
    assert plain.select(where=Field("a").is_in([probe, 1, "a"])) == hashed.select(
        where=Field("a").is_in([probe, 1, "a"])
    )


LAYOUTS = ({}, {"a": "hash", "b": "sorted"}, {"a": "sorted", "count": "hash"})


@given(
    rows=st.lists(s.query_records(), max_size=30),
    deleted=st.lists(st.integers(1, 30), max_size=5),
    where=st.one_of(s.leaf_predicates(), s.predicates()),
    layout=st.sampled_from(LAYOUTS),
)
def test_matching_rows_equals_a_scan_in_table_order(
    rows: list[dict[str, Any]], deleted: list[int], where: Any, layout: dict[str, str]
) -> None:
    t = Table("t")
    for field, kind in layout.items():
        t.create_index(field, kind)
    t.insert(rows)
    for pk in deleted:
        if pk in t._t.rows:
            t.delete(Field("id") == pk)
    state = t._t
    expected = [row for row in state.rows.values() if where.fn(row)]
    got = matching_rows(where, state.indexes, state.rows, state.positions, "id")
    assert [id(r) for r in expected] == [id(r) for r in got]  # the stored rows, in order


def test_matching_rows_takes_each_path() -> None:
    t = Table("t")
    t.create_index("v", "sorted")
    t.insert([{"v": i % 10} for i in range(100)])
    state = t._t

    def match(where: Any) -> list[int]:
        found = matching_rows(where, state.indexes, state.rows, state.positions, "id")
        return [r["id"] for r in found]

    v = Field("v")
    assert match(Field("id") == 7) == [7]  # the row map itself
    assert match(v == 3) == list(range(4, 101, 10))  # few candidates, in table order
    assert match(v >= 1) == [i + 1 for i in range(100) if i % 10 >= 1]  # many: a walk
    assert match(Field("w") == 1) == []  # unindexed: a scan
    assert match((v >= 8) & (Field("id") > 90)) == [99, 100]


# -- the compiled ordering tests and the copies of a select --------------------------------------

ORDERING = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def python_says(v: Any, op: str, operand: Any) -> bool:
    """The documented rule: never None, never a value that cannot be ordered against it."""
    if v is None or operand is None:
        return False
    try:
        return bool(ORDERING[op](v, operand))
    except (TypeError, ArithmeticError):
        return False


@given(
    values=st.lists(s.query_values(), max_size=20),
    operand=st.one_of(
        s.query_values(), st.sampled_from([float("nan"), decimal.Decimal("NaN"), True, b"a"])
    ),
)
def test_ordering_tests_follow_the_documented_rule(values: list[Any], operand: Any) -> None:
    for op in ORDERING:
        test = Compare("v", op, operand).fn
        for v in values:
            assert python_says(v, op, operand) is test({"v": v}), (v, op, operand)
        assert test({}) is False


def test_a_row_holding_a_container_is_tracked_so_it_is_deep_copied() -> None:
    t = Table("t")
    t.insert([{"v": [1]}, {"v": {"k": [2]}}, {"v": 1}, {"v": uuid.UUID(int=1)}])
    t.update({"w": {"k": 3}}, where=Field("v") == 1)
    t.upsert({"id": 5, "v": [[]]})
    for row in t._t.rows.values():
        if any(type(v) in (list, dict) for v in row.values()):
            assert gc.is_tracked(row), row
    got = t.select()
    assert got == [dict(r) for r in t._t.rows.values()]
    for copy, stored in zip(got, t._t.rows.values(), strict=True):
        assert copy is not stored
        for name, value in copy.items():
            if type(value) in (list, dict):
                assert value is not stored[name]
    got[0]["v"].append(9)
    got[1]["v"]["k"].append(9)
    got[2]["w"]["k"] = 0
    assert t.select() == [
        {"id": 1, "v": [1]},
        {"id": 2, "v": {"k": [2]}},
        {"id": 3, "v": 1, "w": {"k": 3}},
        {"id": 4, "v": uuid.UUID(int=1)},
        {"id": 5, "v": [[]]},
    ]


def test_copy_rows_copies_flat_mixed_and_empty_lists() -> None:
    flat = [{"a": 1}, {"a": "x", "b": None}]
    mixed = [*flat, {"a": [1, [2]]}]
    assert copy_rows([]) == []
    for rows in (flat, mixed):
        copies = copy_rows(rows)
        assert copies == rows
        assert all(c is not r for c, r in zip(copies, rows, strict=True))
    deep = copy_rows(mixed)[2]["a"]
    assert deep is not mixed[2]["a"]
    assert deep[1] is not mixed[2]["a"][1]  # type: ignore[index]


@given(
    rows=st.lists(s.query_records(), max_size=30),
    where=s.leaf_predicates(),
    layout=st.sampled_from(LAYOUTS[1:]),
)
def test_an_exact_answer_is_exactly_the_matching_keys(
    rows: list[dict[str, Any]], where: Any, layout: dict[str, str]
) -> None:
    """Where `matching_rows` skips the test (an exact index answer), no row is over-reported."""
    t = Table("t")
    t.insert(rows)
    for field, kind in layout.items():
        t.create_index(field, kind)
    state = t._t
    found = candidates(where, state.indexes, state.rows, "id")
    if found is not None and _exact(where, state.indexes):
        assert set(found) == {key for key, row in state.rows.items() if where.fn(row)}


def test_exact_answers_are_those_of_comparisons_and_between() -> None:
    t = Table("t")
    t.create_index("a", "sorted")
    t.create_index("b", "hash")
    t.insert([{"a": i, "b": i % 3} for i in range(20)])
    idx = t._t.indexes
    a, b = Field("a"), Field("b")
    for exact in (a == 1, a < 3, a >= 3, a.between(2, 4), b == 1, Field("id") == 3):
        assert _exact(exact, idx), exact
    for inexact in (a != 1, a.is_in([1, 2]), a.like("1%"), (a == 1) & (b == 1), ~(a == 1)):
        assert not _exact(inexact, idx), inexact
    index = idx["b"]
    assert isinstance(index, HashIndex)
    index._odd.add(99)  # a key without a canonical form: over-reported, so not exact
    assert not _exact(b == 1, idx)

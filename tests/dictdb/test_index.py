"""Indexes: the API, maintenance on every write path, the planner, and indexed == unindexed."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dictdb import (
    And,
    Count,
    DictDB,
    Field,
    IndexNotFoundError,
    Max,
    Min,
    Not,
    Or,
    PredicateExpr,
    RecordNotFoundError,
    Table,
)
from dictdb.index import HashIndex, SortedIndex, candidates, hash_key, make_index
from dictdb.storage.persist import apply_delta, save_delta
from tests import strategies as s

# -- helpers ---------------------------------------------------------------------------------


def outcome(call: Callable[[], Any]) -> tuple[str, str]:
    """What a call did, comparable across tables: its result's repr, or its error type.

    repr keeps types apart (1, 1.0 and True are equal but print differently).
    """
    try:
        return "ok", repr(call())
    except Exception as exc:  # the same error on both sides is the same outcome
        return "error", type(exc).__name__


def index_state(index: Any) -> Any:
    """An index's content, comparable with that of a freshly built index."""
    if isinstance(index, HashIndex):
        return {k: set(v) for k, v in index.index.items()}, set(index._odd)
    return [(k, set(v)) for k, v in index._map.items()]


def assert_indexes_match_rows(table: Table) -> None:
    """Every maintained index equals one built from scratch on the current rows."""
    for field, index in table.indexes.items():
        fresh = make_index(field, index.index_type)
        fresh.build(table._t.rows.items())
        assert index_state(fresh) == index_state(index), field
    if table.indexes:
        assert list(table._t.rows) == sorted(table._t.rows, key=table._t.positions.__getitem__)


def people(index: dict[str, str] | None = None) -> Table:
    t = Table("people")
    for field, kind in (index or {}).items():
        t.create_index(field, kind)
    t.insert(
        [
            {"name": "ann", "dept": "IT", "age": 31},
            {"name": "bob", "dept": "HR", "age": 52},
            {"name": "cy", "dept": "OPS", "age": 50},
            {"name": "dan", "dept": None, "age": None},
            {"name": "eve", "age": 19},
            {"name": "fay", "dept": "IT", "age": "unknown"},
            {"name": "gus", "dept": ["IT", "HR"], "age": 44.5},
        ]
    )
    return t


def names(rows: list[dict[str, Any]]) -> list[str]:
    return [r["name"] for r in rows]


# -- the API -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hash", "HASH", "Sorted", "sorted"])
def test_create_index_takes_the_type_in_any_case(kind: str) -> None:
    t = people()
    t.create_index("dept", kind)
    assert (["dept"], True, kind.lower()) == (
        t.indexed_fields(),
        t.has_index("dept"),
        t.indexes["dept"].index_type,
    )


def test_an_unknown_index_type_raises_value_error_and_creates_nothing() -> None:
    t = people()
    with pytest.raises(ValueError, match="unknown index type 'btree'"):
        t.create_index("dept", "btree")
    assert (t.indexed_fields(), t.has_index("dept")) == ([], False)


def test_a_second_index_of_the_same_type_is_a_no_op() -> None:
    t = people()
    t.create_index("dept")
    index = t.indexes["dept"]
    t.create_index("dept", "HASH")
    assert index is t.indexes["dept"]


def test_a_second_index_of_another_type_raises_until_the_first_is_dropped() -> None:
    t = people()
    t.create_index("dept")
    with pytest.raises(ValueError, match="already has a hash index"):
        t.create_index("dept", "sorted")
    t.drop_index("dept")
    t.create_index("dept", "sorted")
    assert t.indexes["dept"].index_type == "sorted"


def test_drop_index_of_a_field_without_one_raises_index_not_found() -> None:
    t = people()
    with pytest.raises(IndexNotFoundError) as caught:
        t.drop_index("dept")
    assert isinstance(caught.value, KeyError)
    assert str(caught.value).split(": ", 1)[1] == "no index on field 'dept'"


def test_indexed_fields_keep_creation_order_and_indexes_is_a_copy() -> None:
    t = people()
    t.create_index("name", "sorted")
    t.create_index("age")
    t.create_index("dept")
    t.drop_index("age")
    assert t.indexed_fields() == ["name", "dept"]
    t.indexes.clear()
    assert t.indexed_fields() == ["name", "dept"]


def test_an_index_field_must_be_a_str() -> None:
    with pytest.raises(TypeError):
        people().create_index(1)  # type: ignore[arg-type]


def test_an_index_on_a_column_named_like_a_table_member() -> None:
    t = Table("t")
    t.insert([{"count": 1}, {"count": 2}, {"count": 2}])
    t.create_index("count", "sorted")
    assert [r["id"] for r in t.select(where=t["count"] >= 2)] == [2, 3]


# -- results equal scans, in table order --------------------------------------------------------

QUERIES: dict[str, Callable[[Table], Any]] = {
    "eq": lambda t: t.dept == "IT",
    "eq-none-matches-missing": lambda t: t.dept == None,  # noqa: E711 - the DSL's == None
    "is_null": lambda t: t.dept.is_null(),
    "eq-list": lambda t: t.dept == ["IT", "HR"],
    "is_in": lambda t: t.dept.is_in(["HR", None, ["IT", "HR"]]),
    "lt-mixed-kinds": lambda t: t.age < 50,
    "ge-int-vs-float": lambda t: t.age >= 44.5,
    "gt-str": lambda t: t.age > "a",
    "between": lambda t: t.age.between(19, 50),
    "between-kinds-differ": lambda t: t.age.between(19, "z"),
    "like-prefix": lambda t: t.name.like("b%"),
    "startswith": lambda t: t.name.startswith("c"),
    "or": lambda t: (t.dept == "IT") | (t.dept == "HR"),
    "or-with-unindexed-branch": lambda t: Or(t.dept == "IT", t.age >= 50),
    "not": lambda t: Not(t.dept == "IT"),
    "and": lambda t: (t.dept == "IT") & (t.age > 20),
    "and-not": lambda t: (t.age > 20) & ~(t.dept == "IT"),
    "pk": lambda t: t.id.is_in([7, 2, 99]),
}


@pytest.mark.parametrize("query", QUERIES.values(), ids=QUERIES.keys())
@pytest.mark.parametrize("kind", ["hash", "sorted"])
def test_indexed_selects_equal_scans_in_table_order(
    query: Callable[[Table], Any], kind: str
) -> None:
    scanned = people()
    indexed = people({"dept": kind, "age": kind, "name": kind})
    where = query(scanned)
    expected = names(scanned.select(where=where))
    assert expected == names(indexed.select(where=where))
    assert scanned.count(where) == indexed.count(where)


def test_an_index_narrows_the_rows_tested() -> None:
    t = Table("t")
    t.insert([{"k": i % 100, "v": i} for i in range(1000)])
    t.create_index("k")
    tested: list[int] = []

    def spy(row: dict[str, Any]) -> bool:
        tested.append(row["v"])
        return True

    rows = t.select(where=(Field("k") == 7) & PredicateExpr(spy))
    assert [7 + 100 * i for i in range(10)] == [r["v"] for r in rows]
    assert sorted(tested) == [r["v"] for r in rows]


def test_large_candidate_sets_come_back_in_table_order() -> None:
    t = Table("t")
    t.insert([{"k": i % 3} for i in range(300)])
    t.delete(Field("id") == 5)
    t.insert({"id": 5, "k": 1})  # re-inserted: now last in table order
    t.create_index("k", "sorted")
    expected = [r["id"] for r in t.all() if r["k"] >= 1]
    assert expected == [r["id"] for r in t.select(where=Field("k") >= 1)]
    few = [r["id"] for r in t.select(where=Field("id").is_in([5, 9, 3]))]
    assert few == [3, 9, 5]


# -- the planner ------------------------------------------------------------------------------


def test_the_planner_never_uses_an_index_under_not() -> None:
    t = people({"dept": "hash"})
    assert None is candidates(Not(Field("dept") == "IT"), t._t.indexes, t._t.rows, "id")
    assert None is candidates(Field("dept") != "IT", t._t.indexes, t._t.rows, "id")


def test_the_planner_unions_a_disjunction_only_when_every_branch_is_indexed() -> None:
    t = people({"dept": "hash"})
    both = Or(Field("dept") == "IT", Field("dept") == "HR")
    assert {1, 2, 6} == set(candidates(both, t._t.indexes, t._t.rows, "id") or ())
    assert None is candidates(
        Or(Field("dept") == "IT", Field("age") >= 50), t._t.indexes, t._t.rows, "id"
    )


def test_the_planner_intersects_a_conjunction_and_ignores_unindexed_operands() -> None:
    t = Table("t")
    t.insert([{"k": i % 2, "v": i} for i in range(100)])
    t.create_index("k")
    t.create_index("v", "sorted")
    pred = And(Field("k") == 0, Field("v") < 10, Field("other") == "unindexed")
    assert {1, 3, 5, 7, 9} == set(candidates(pred, t._t.indexes, t._t.rows, "id") or ())


def test_a_conjunction_stops_looking_up_once_candidates_are_few() -> None:
    t = people({"dept": "hash", "age": "sorted"})
    pred = And(Field("age") >= 30, Field("dept") == "IT")  # the equality is looked up first
    assert {1, 6} == set(candidates(pred, t._t.indexes, t._t.rows, "id") or ())
    assert names(t.select(where=pred)) == ["ann"]


def test_the_planner_answers_primary_key_equality_with_the_stored_key() -> None:
    t = Table("t")
    t.insert({"id": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)})
    other_offset = dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    (key,) = candidates(Field("id") == other_offset, t._t.indexes, t._t.rows, "id") or ()
    assert dt.UTC is key.tzinfo
    assert None is candidates(Field("id") == 1.0, t._t.indexes, t._t.rows, "id")


@pytest.mark.parametrize(
    "operand",
    [(1, 2), {1, 2}, float("nan"), decimal.Decimal("NaN"), object()],
    ids=["tuple", "set", "nan", "decimal-nan", "object"],
)
@pytest.mark.parametrize("kind", ["hash", "sorted"])
def test_operands_outside_the_domain_fall_back_to_a_scan(operand: Any, kind: str) -> None:
    t = people({"dept": kind, "age": kind})
    assert None is candidates(Field("dept") == operand, t._t.indexes, t._t.rows, "id")
    assert t.select(where=Field("dept") == operand) == []


def test_an_operand_with_its_own_equality_gets_the_scans_answer() -> None:
    class Anything:
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = object.__hash__

    scanned, indexed = people(), people({"dept": "hash"})
    where = Field("dept") == Anything()
    assert 7 == len(scanned.select(where=where)) == len(indexed.select(where=where))


def test_hash_key_gives_equal_values_equal_keys() -> None:
    assert hash_key(1) == hash_key(1.0) == hash_key(True) == hash_key(decimal.Decimal(1))
    assert hash_key([1, {"a": 1}]) == hash_key([1.0, {"a": True}])
    assert hash_key({"a": 1, "b": 2}) == hash_key({"b": 2, "a": 1})
    assert hash_key([1]) != hash_key({"1": 1})
    assert hash_key([1]) != hash_key((1,))  # a tuple is not in the domain: no key


def test_sorted_index_ranges_stay_within_the_operands_kind() -> None:
    index = SortedIndex("v")
    values = [None, 1, 2.5, decimal.Decimal(3), True, "a", "b", b"a", dt.date(2024, 1, 1)]
    values += [dt.datetime(2024, 1, 1), [1], {"k": 1}]
    index.build((i, {"v": v}) for i, v in enumerate(values))
    index.add(99, {})  # missing: indexed as None
    assert {1, 4} == index.compare("<", 2)  # never None, never another kind
    assert {1, 2, 3, 4} == index.between(1, 3)
    assert {5, 6} == index.compare(">=", "a")
    assert set() == index.compare("<", None)
    assert {0, 99} == index.equal(None)
    assert None is index.equal([1])  # containers: by the hash index or a scan
    assert {8} == index.compare("<=", dt.date(2024, 1, 1))


# -- maintenance on every write path -------------------------------------------------------------


def test_every_write_keeps_indexes_equal_to_a_rebuild() -> None:
    t = people({"dept": "hash", "age": "sorted", "name": "sorted", "id": "hash"})
    t.insert({"name": "hal", "dept": {"k": [1]}})
    t.upsert({"id": 1, "dept": "HR", "extra": 1})
    t.upsert({"id": 42, "name": "new"})
    t.upsert({"id": 2, "age": 0}, on_conflict="ignore")
    t.update({"age": 99}, where=Field("dept") == "IT")
    t.update({"dept": None}, where=Field("age") > 90)
    t.delete(Field("name").like("c%"))
    assert_indexes_match_rows(t)
    assert names(t.select(where=Field("dept").is_null())) == [
        r["name"] for r in t.all() if r.get("dept") is None
    ]


def test_a_refused_write_leaves_indexes_untouched() -> None:
    t = people({"dept": "hash"})
    before = index_state(t.indexes["dept"])
    with pytest.raises(TypeError):
        t.insert([{"dept": "X"}, {"dept": {1, 2}}])  # the second row is outside the domain
    with pytest.raises(RecordNotFoundError):
        t.update({"dept": "Y"}, where=Field("dept") == "nowhere")
    assert before == index_state(t.indexes["dept"])


def test_replay_maintains_indexes_created_on_the_replica() -> None:
    db = DictDB(retain_journal=True)
    t = db.create_table("t")
    t.insert([{"v": i % 4} for i in range(20)])
    t.update({"v": 9}, where=Field("v") == 1)
    t.delete(Field("v") == 2)
    replica = DictDB(retain_journal=True)
    replica.replay(db.journal.read(1, 1))  # the create
    replica.get_table("t").create_index("v", "sorted")
    replica.replay(db.journal.read(2))
    mirror = replica.get_table("t")
    assert_indexes_match_rows(mirror)
    assert t.select(where=Field("v") >= 3) == mirror.select(where=Field("v") >= 3)


def test_apply_delta_maintains_indexes(tmp_path: Path) -> None:
    """The reference's A5: indexes went stale after apply_delta."""
    db = DictDB()
    t = db.create_table("users")
    t.insert([{"dept": "IT"}, {"dept": "OPS"}, {"dept": "HR"}])
    base = tmp_path / "base.json"
    db.save(base)
    t.update({"dept": "IT"}, where=Field("dept") == "OPS")
    t.delete(Field("dept") == "HR")
    t.insert({"dept": "OPS"})
    delta = tmp_path / "delta.json"
    assert save_delta(db, delta)
    restored = DictDB.load(base)
    users = restored.get_table("users")
    users.create_index("dept")
    apply_delta(restored, delta)
    assert_indexes_match_rows(users)
    for dept in ("IT", "OPS", "HR"):
        assert t.select(where=Field("dept") == dept) == users.select(where=Field("dept") == dept)


def test_loaded_databases_start_without_indexes(tmp_path: Path) -> None:
    db = DictDB()
    db.create_table("t").create_index("v")
    path = tmp_path / "snap.json"
    db.save(path)
    assert DictDB.load(path).get_table("t").indexed_fields() == []


def test_a_recreated_table_starts_without_indexes() -> None:
    db = DictDB()
    db.create_table("t").create_index("v")
    db.drop_table("t")
    assert db.create_table("t").indexed_fields() == []


# -- the property: indexed == unindexed -----------------------------------------------------------

INDEX_LAYOUTS: dict[str, dict[str, str]] = {
    "hash": {"a": "hash", "b": "hash", "count": "hash", "id": "hash"},
    "sorted": {"a": "sorted", "b": "sorted", "count": "sorted", "id": "sorted"},
    "mixed": {"a": "hash", "b": "sorted"},
}


def tables(rows: list[dict[str, Any]]) -> list[Table]:
    """One table without indexes, then indexed twins: indexes made before and after rows."""
    out = []
    for layout, early in [
        ({}, True),
        *((lay, e) for lay in INDEX_LAYOUTS.values() for e in (True, False)),
    ]:
        t = Table("t")
        if early:
            for field, kind in layout.items():
                t.create_index(field, kind)
        t.insert(rows)
        if not early:
            for field, kind in layout.items():
                t.create_index(field, kind)
        out.append(t)
    return out


def same_everywhere(tables_: list[Table], call: Callable[[Table], Any]) -> None:
    expected = outcome(lambda: call(tables_[0]))
    for t in tables_[1:]:
        assert expected == outcome(lambda t=t: call(t)), t.indexed_fields()


@given(
    rows=st.lists(s.query_records(), max_size=25),
    queries=st.lists(st.one_of(s.leaf_predicates(), s.predicates()), min_size=1, max_size=4),
    update_where=s.predicates(),
    changes=s.query_records(),
    delete_where=s.predicates(),
    order_by=st.sampled_from([None, "a", "-b", ["count", "-a"]]),
    limit=st.sampled_from([None, 0, 2, -1]),
)
def test_indexed_results_equal_unindexed_results(
    rows: list[dict[str, Any]],
    queries: list[Any],
    update_where: Any,
    changes: dict[str, Any],
    delete_where: Any,
    order_by: Any,
    limit: Any,
) -> None:
    """select/count/aggregate/update/delete give the same with hash, sorted or no indexes."""
    twins = tables(rows)

    def check_reads() -> None:
        for where in queries:
            same_everywhere(twins, lambda t, w=where: t.select(where=w))
            same_everywhere(
                twins,
                lambda t, w=where: t.select(["a", "b"], where=w, order_by=order_by, limit=limit),
            )
            same_everywhere(
                twins, lambda t, w=where: t.select(["a"], where=w, distinct=True, limit=limit)
            )
            same_everywhere(twins, lambda t, w=where: t.count(w))
            same_everywhere(
                twins,
                lambda t, w=where: t.aggregate(
                    where=w, n=Count(), na=Count("a"), lo=Min("b"), hi=Max("count")
                ),
            )
            same_everywhere(twins, lambda t, w=where: t.aggregate(where=w, group_by="a", n=Count()))

    check_reads()
    same_everywhere(twins, lambda t: t.update(changes, where=update_where))
    same_everywhere(twins, lambda t: t.all())
    check_reads()
    same_everywhere(twins, lambda t: t.delete(delete_where))
    same_everywhere(twins, lambda t: t.all())
    check_reads()
    for t in twins:
        assert_indexes_match_rows(t)


@given(values=st.lists(s.query_values(), max_size=30), operand=s.query_values())
def test_sorted_index_comparisons_equal_python_comparisons(values: list[Any], operand: Any) -> None:
    """For every ordering operator, the sorted index finds every row Python says matches."""
    t = Table("t")
    t.insert([{"v": v} for v in values])
    t.create_index("v", "sorted")
    field = Field("v")
    for pred in (field < operand, field <= operand, field > operand, field >= operand):
        found = candidates(pred, t._t.indexes, t._t.rows, "id")
        matching = {r["id"] for r in t.all() if pred(r)}
        assert found is None or matching <= set(found), repr(pred)


def test_uuid_and_bytes_values_are_indexable() -> None:
    t = Table("t")
    u = uuid.UUID(int=7)
    t.insert([{"v": u}, {"v": b"x"}, {"v": uuid.UUID(int=9)}])
    t.create_index("v", "sorted")
    assert [r["id"] for r in t.select(where=Field("v") == u)] == [1]
    assert [r["id"] for r in t.select(where=Field("v") < uuid.UUID(int=8))] == [1]
    assert [r["id"] for r in t.select(where=Field("v") >= b"a")] == [2]

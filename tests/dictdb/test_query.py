"""The query DSL: every operator of the reference's catalogue, combinators, and select options.

Tests that take the `db` fixture (or `table`, built on it) run on an in-memory and on a durable
database; one test checks that a standalone `Table` answers every operator case the same.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dictdb import And, Condition, DictDB, Field, Not, Or, PredicateExpr, Table
from dictdb.query import Predicate
from tests import strategies as s

ROWS: list[dict[str, Any]] = [
    {"name": "Alice", "age": 30, "tags": ["a", "b"], "meta": {"k": 1}},  # id 1
    {"name": "alicia", "age": 30.0, "tags": [], "meta": {}},  # id 2
    {"name": "Bob", "age": None},  # id 3
    {"name": "bobby", "age": "thirty"},  # id 4
    {"name": "100%_sure", "age": True, "tags": "abc"},  # id 5
    {"age": decimal.Decimal("12.5"), "bytes": b"\x01\x02"},  # id 6, no name
    {"name": "line\nbreak", "age": [30]},  # id 7
]


@pytest.fixture
def table(db: DictDB) -> Table:
    """Table "t" holding ROWS, in the `db` fixture's database."""
    t = db.create_table("t")
    t.insert(ROWS)
    return t


def ids(table: Table, where: Any) -> list[int]:
    return [r["id"] for r in table.select(where=where)]


name, age, tags = Field("name"), Field("age"), Field("tags")

CASES: dict[str, tuple[Predicate, list[int]]] = {
    # comparisons: Python equality (30 == 30.0 == ... ; True == 1), missing reads as None
    "eq": (age == 30, [1, 2]),
    "eq-bool-is-one": (age == 1, [5]),
    "eq-list": (age == [30.0], [7]),
    "eq-none-matches-missing": (name == None, [6]),  # noqa: E711 - the DSL's == None
    "ne": (age != 30, [3, 4, 5, 6, 7]),
    "ne-none": (name != None, [1, 2, 3, 4, 5, 7]),  # noqa: E711
    # ordering never matches None, nor values of another kind, and never raises
    "lt": (age < 20, [5, 6]),
    "le": (age <= 30, [1, 2, 5, 6]),
    "gt-str": (age > "a", [4]),
    "ge-list": (age >= [29], [7]),
    "lt-none-operand": (age < None, []),
    "lt-decimal-nan-operand": (age < decimal.Decimal("NaN"), []),
    "between": (age.between(12.5, 30), [1, 2, 6]),
    "between-none": (age.between(None, 100), []),
    "between-kinds-differ": (age.between(1, "z"), []),
    "is_in": (age.is_in([30, None]), [1, 2, 3]),
    "is_in-unhashable": (age.is_in([[30], 99]), [7]),
    "is_in-empty": (age.is_in([]), []),
    "is_null": (name.is_null(), [6]),
    "is_not_null": (age.is_not_null(), [1, 2, 4, 5, 6, 7]),
    # LIKE: anchored, % any run, _ one char, escape, DOTALL; non-str never matches
    "like-prefix": (name.like("A%"), [1]),
    "like-underscore": (name.like("B_b"), [3]),
    "like-anchored": (name.like("lic"), []),
    "like-contains": (name.like("%lic%"), [1, 2]),
    "like-escape": (name.like("100!%!_%", escape="!"), [5]),
    "like-dotall": (name.like("line_break"), [7]),
    "like-no-trailing-newline-match": (name.like("line"), []),
    "like-non-str": (age.like("3%"), []),
    "ilike": (name.ilike("ALI%"), [1, 2]),
    "ilike-escape": (name.ilike("100!%%", escape="!"), [5]),
    # contains: substring, list member, dict key; others false
    "contains-substring": (name.contains("ob"), [3, 4]),
    "contains-member": (tags.contains("a"), [1, 5]),
    "contains-key": (Field("meta").contains("k"), [1]),
    "contains-byte": (Field("bytes").contains(2), [6]),
    "contains-byte-out-of-range": (Field("bytes").contains(300), []),
    "contains-unhashable-in-dict": (Field("meta").contains(["k"]), []),
    "contains-none-value": (age.contains(3), []),
    # str tests
    "startswith": (name.startswith("Al"), [1]),
    "startswith-tuple": (name.startswith(("Al", "al")), [1, 2]),
    "endswith": (name.endswith("by"), [4]),
    "iequals": (name.iequals("BOB"), [3]),
    "icontains": (name.icontains("LIC"), [1, 2]),
    "istartswith": (name.istartswith("bo"), [3, 4]),
    "iendswith": (name.iendswith("CIA"), [2]),
    "i-non-str": (age.iequals("thirty"), [4]),
    # combinators
    "and": ((age == 30) & name.startswith("A"), [1]),
    "or": ((age == None) | (name == "Bob"), [3]),  # noqa: E711
    "not": (~(age == 30), [3, 4, 5, 6, 7]),
    "And": (And(age >= 1, age <= 30, name.istartswith("a")), [1, 2]),
    "Or": (Or(name == "Bob", name == "bobby", age == [30]), [3, 4, 7]),
    "Not": (Not(name.is_not_null()), [6]),
    "Condition": (Condition(age == 30), [1, 2]),
    "Condition-combined": (Condition(age == 30) & ~Condition(name == "Alice"), [2]),
    "PredicateExpr": (PredicateExpr(lambda r: len(r) == 3), [3, 4, 6, 7]),
    "PredicateExpr-and-field": (PredicateExpr(lambda r: "tags" in r) & (age == 30), [1, 2]),
}


@pytest.mark.parametrize(("where", "expected"), CASES.values(), ids=CASES.keys())
def test_each_operator_matches_the_documented_rows(
    table: Table, where: Predicate, expected: list[int]
) -> None:
    assert expected == ids(table, where)


def test_a_standalone_table_answers_every_operator_case_as_a_database_table() -> None:
    standalone = Table("t")
    standalone.insert(ROWS)
    assert [expected for _, expected in CASES.values()] == [
        ids(standalone, where) for where, _ in CASES.values()
    ]


def test_a_plain_callable_is_a_condition(table: Table) -> None:
    assert ids(table, lambda row: row.get("name") == "Bob") == [3]


def test_table_attributes_and_items_build_fields(table: Table) -> None:
    t = table
    assert ids(t, Field("age") == 30) == ids(t, t.age == 30) == ids(t, t["age"] == 30)
    # the reference's Field(table, name)
    assert ids(t, Field(t, "age") == 30) == ids(t, t.age == 30)


def test_a_condition_has_no_truth_value() -> None:
    with pytest.raises(TypeError, match="no truth value"):
        bool(age == 30)
    with pytest.raises(TypeError):
        _ = (age == 30) and (age == 31)


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: name.like(3), TypeError),
        (lambda: name.like("a", escape="!!"), ValueError),
        (lambda: name.iequals(3), TypeError),
        (lambda: name.startswith(3), TypeError),
        (And, ValueError),
        (lambda: And(name == "x"), ValueError),  # the reference's rule: two or more
        (lambda: Or(name == "x"), ValueError),
        (lambda: Not(3), TypeError),
        (lambda: PredicateExpr(3), TypeError),
    ],
    ids=[
        "like-pattern",
        "like-escape",
        "iequals",
        "startswith",
        "And-empty",
        "And-one",
        "Or-one",
        "Not",
        "expr",
    ],
)
def test_malformed_conditions_are_refused_when_built(build: Any, error: type) -> None:
    with pytest.raises(error):
        build()


def test_an_escape_as_the_last_character_stands_for_itself(db: DictDB) -> None:
    t = db.create_table("t")
    t.insert([{"v": "a!"}, {"v": "a"}])
    assert [r["id"] for r in t.select(where=Field("v").like("a!", escape="!"))] == [1]


def test_a_predicate_expr_receives_a_copy_of_the_row(table: Table) -> None:
    t = table

    def mutate(row: dict[str, Any]) -> bool:
        row["tags"] = "changed"
        return True

    t.select(where=PredicateExpr(mutate))
    assert ROWS[0]["tags"] == t.get(1)["tags"]


@given(pattern=s.like_patterns(), text=st.text(alphabet="abAB%_!\n", max_size=6))
def test_like_equals_an_sql_like_oracle(pattern: str, text: str) -> None:
    """LIKE with escape '!' agrees with a direct recursive matcher of SQL LIKE."""

    def match(p: str, t: str) -> bool:
        if not p:
            return not t
        if p[0] == "!" and len(p) > 1:
            return bool(t) and t[0] == p[1] and match(p[2:], t[1:])
        if p[0] == "%":
            return any(match(p[1:], t[i:]) for i in range(len(t) + 1))
        if p[0] == "_":
            return bool(t) and match(p[1:], t[1:])
        return bool(t) and t[0] == p[0] and match(p[1:], t[1:])

    assert match(pattern, text) == Field("v").like(pattern, escape="!")({"v": text})


# -- select options ------------------------------------------------------------------------------


def test_columns_as_list_dict_and_pairs_project_missing_fields_as_none(table: Table) -> None:
    t = table
    where = Field("id").is_in([1, 6])
    expected = [{"n": "Alice", "a": 30}, {"n": None, "a": decimal.Decimal("12.5")}]
    assert expected == t.select({"n": "name", "a": "age"}, where=where)
    assert expected == t.select([("n", "name"), ("a", "age")], where=where)
    assert t.select(["name"], where=where) == [{"name": "Alice"}, {"name": None}]


def test_order_by_several_keys_mixed_directions_with_none_and_mixed_kinds(db: DictDB) -> None:
    t = db.create_table("t")
    t.insert(
        [
            {"g": 1, "v": 2},
            {"g": 1, "v": None},
            {"g": None, "v": 1},
            {"g": 1, "v": "x"},
            {"v": 5},
            {"g": 0, "v": dt.date(2024, 1, 1)},
        ]
    )
    assert [r["id"] for r in t.select(order_by=["g", "-v"])] == [5, 3, 6, 4, 1, 2]
    assert [r["id"] for r in t.select(order_by=("-g", "-v"))] == [4, 1, 2, 6, 5, 3]


def test_order_by_with_limit_and_offset_pages_the_ordered_rows(db: DictDB) -> None:
    t = db.create_table("t")
    t.insert([{"v": v} for v in (5, 3, 9, 1, 7)])
    assert [r["v"] for r in t.select(order_by="v", limit=2, offset=1)] == [3, 5]
    assert [r["v"] for r in t.select(order_by="-v", limit=2)] == [9, 7]


@pytest.mark.parametrize(
    ("limit", "offset", "expected"),
    [(None, 0, 7), (-1, 0, 7), (-5, 2, 5), (0, 0, 0), (3, -5, 3), (3, 5, 2), (10, 10, 0)],
)
def test_limit_and_offset(table: Table, limit: int | None, offset: int, expected: int) -> None:
    """A negative limit means no limit, a negative offset counts as 0."""
    assert expected == len(table.select(limit=limit, offset=offset))


def test_distinct_applies_to_projected_rows_before_limit_and_keeps_kinds_apart(
    db: DictDB,
) -> None:
    t = db.create_table("t")
    t.insert([{"d": "IT"}, {"d": "IT"}, {"d": [1]}, {"d": [1]}, {"d": 1}, {"d": 1.0}, {"d": "HR"}])
    assert t.select(["d"], distinct=True, limit=2) == [{"d": "IT"}, {"d": [1]}]
    assert t.select(["d"], distinct=True, offset=2) == [{"d": 1}, {"d": 1.0}, {"d": "HR"}]


def test_selected_rows_are_owned_copies(table: Table) -> None:
    t = table
    rows = t.select(where=Field("id") == 1)
    rows[0]["tags"].append("X")
    rows[0]["meta"]["k"] = 2
    projected = t.select(["tags"], where=Field("id") == 1)
    projected[0]["tags"].append("Y")
    assert ROWS[0]["tags"] == t.get(1)["tags"]
    assert t.get(1)["meta"] == {"k": 1}


def test_a_condition_passed_as_columns_is_refused_with_a_hint(table: Table) -> None:
    with pytest.raises(TypeError, match="where="):
        table.select(Field("age") == 30)  # type: ignore[arg-type]

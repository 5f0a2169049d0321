"""Aggregations: Count, Sum, Avg, Min, Max, with where and group_by (catalogue §5).

Tests that take the `db` fixture (or `sales`, built on it) run on an in-memory and on a durable
database; one test checks that a standalone `Table` aggregates the same.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pytest

from dictdb import Avg, Count, DictDB, Field, Max, Min, Sum, Table
from dictdb.aggregate import Agg

SALES: list[dict[str, Any]] = [
    {"region": "N", "shop": "a", "amount": 10, "tags": ["x"]},
    {"region": "N", "shop": "b", "amount": 2.5},
    {"region": "S", "shop": "a", "amount": None},
    {"region": "S", "shop": "a", "amount": 4},
    {"shop": "c", "amount": 1},
    {"region": "N", "shop": "a"},
]


@pytest.fixture
def sales(db: DictDB) -> Table:
    """Table "sales" holding SALES, in the `db` fixture's database."""
    t = db.create_table("sales")
    t.insert(SALES)
    return t


def test_a_standalone_table_aggregates_as_a_database_table(sales: Table) -> None:
    standalone = Table("sales")
    standalone.insert(SALES)
    for table in (standalone, sales):
        assert {"rows": 6, "total": 17.5, "low": 1, "high": 10} == table.aggregate(
            rows=Count(), total=Sum("amount"), low=Min("amount"), high=Max("amount")
        )
        assert [{"region": "N", "n": 3}, {"region": "S", "n": 2}, {"region": None, "n": 1}] == (
            table.aggregate(group_by="region", n=Count())
        )


def test_aggregates_over_all_rows(sales: Table) -> None:
    expected = {
        "rows": 6,
        "amounts": 4,
        "total": 17.5,
        "mean": 4.375,
        "low": 1,
        "high": 10,
    }
    assert expected == sales.aggregate(
        rows=Count(),
        amounts=Count("amount"),
        total=Sum("amount"),
        mean=Avg("amount"),
        low=Min("amount"),
        high=Max("amount"),
    )


def test_aggregates_with_where(sales: Table) -> None:
    t = sales
    assert t.aggregate(where=Field("region") == "N", n=Count(), total=Sum("amount")) == {
        "n": 3,
        "total": 12.5,
    }


def test_aggregates_of_nothing_are_zero_and_none(db: DictDB) -> None:
    t = db.create_table("t")
    expected = {"n": 0, "c": 0, "s": None, "a": None, "lo": None, "hi": None}
    assert expected == t.aggregate(
        n=Count(), c=Count("v"), s=Sum("v"), a=Avg("v"), lo=Min("v"), hi=Max("v")
    )
    assert t.aggregate(group_by="v", n=Count()) == []


def test_group_by_one_field_in_first_seen_order_with_missing_as_none(sales: Table) -> None:
    expected = [
        {"region": "N", "n": 3, "total": 12.5},
        {"region": "S", "n": 2, "total": 4},
        {"region": None, "n": 1, "total": 1},
    ]
    assert expected == sales.aggregate(group_by="region", n=Count(), total=Sum("amount"))


def test_group_by_several_fields(sales: Table) -> None:
    expected = [
        {"region": "N", "shop": "a", "n": 2},
        {"region": "N", "shop": "b", "n": 1},
        {"region": "S", "shop": "a", "n": 2},
        {"region": None, "shop": "c", "n": 1},
    ]
    assert expected == sales.aggregate(group_by=["region", "shop"], n=Count())


def test_group_by_equal_values_of_different_types_and_containers(db: DictDB) -> None:
    t = db.create_table("t")
    t.insert([{"g": 1}, {"g": 1.0}, {"g": True}, {"g": [1]}, {"g": [1.0]}, {"g": {"k": 1}}])
    result = t.aggregate(group_by="g", n=Count())
    assert result == [{"g": 1, "n": 3}, {"g": [1], "n": 2}, {"g": {"k": 1}, "n": 1}]
    assert int is type(result[0]["g"])


def test_min_and_max_order_mixed_kinds_as_order_by_does(db: DictDB) -> None:
    t = db.create_table("t")
    t.insert([{"v": "b"}, {"v": 3}, {"v": dt.date(2024, 1, 1)}, {"v": None}, {"v": [1]}])
    assert t.aggregate(lo=Min("v"), hi=Max("v")) == {"lo": 3, "hi": [1]}


def test_sum_and_avg_keep_decimal_exact(db: DictDB) -> None:
    t = db.create_table("t")
    t.insert([{"v": decimal.Decimal("0.1")}, {"v": decimal.Decimal("0.2")}])
    assert {"s": decimal.Decimal("0.3"), "a": decimal.Decimal("0.15")} == t.aggregate(
        s=Sum("v"), a=Avg("v")
    )


def test_sum_of_values_that_do_not_add_raises_type_error_naming_the_aggregate(db: DictDB) -> None:
    t = db.create_table("t")
    t.insert([{"v": 1}, {"v": "x"}])
    with pytest.raises(TypeError, match="Sum\\('v'\\)"):
        t.aggregate(s=Sum("v"))
    with pytest.raises(TypeError, match="Avg\\('v'\\)"):
        t.aggregate(a=Avg("v"))


@pytest.mark.parametrize("bad", [len, "Count", Count], ids=["function", "str", "class"])
def test_a_non_aggregate_is_refused(sales: Table, bad: Any) -> None:
    with pytest.raises(TypeError, match="must be Count, Sum, Avg, Min or Max"):
        sales.aggregate(x=bad)


def test_group_by_must_name_fields(sales: Table) -> None:
    with pytest.raises(TypeError):
        sales.aggregate(group_by=[1], n=Count())  # type: ignore[list-item]


def test_aggregate_results_are_owned_copies(db: DictDB) -> None:
    t = db.create_table("t")
    t.insert({"g": ["a"], "v": ["b"]})
    (group,) = t.aggregate(group_by="g", hi=Max("v"))
    group["g"].append("X")
    group["hi"].append("Y")
    assert t.get(1) == {"id": 1, "g": ["a"], "v": ["b"]}


def test_aggregates_are_values_with_the_reference_interface() -> None:
    assert Sum("a") == Sum("a")
    assert isinstance(Count(), Agg)
    assert Min("a").extract_values([{"a": 1}, {}]) == [1, None]
    assert Count().compute(Count().extract_values([{}, {}])) == 2

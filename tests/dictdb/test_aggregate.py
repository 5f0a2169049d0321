"""Aggregations: Count, Sum, Avg, Min, Max, with where and group_by (catalogue §5)."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pytest

from dictdb import Avg, Count, Field, Max, Min, Sum, Table
from dictdb.aggregate import Agg


def sales() -> Table:
    t = Table("sales")
    t.insert(
        [
            {"region": "N", "shop": "a", "amount": 10, "tags": ["x"]},
            {"region": "N", "shop": "b", "amount": 2.5},
            {"region": "S", "shop": "a", "amount": None},
            {"region": "S", "shop": "a", "amount": 4},
            {"shop": "c", "amount": 1},
            {"region": "N", "shop": "a"},
        ]
    )
    return t


def test_aggregates_over_all_rows() -> None:
    expected = {
        "rows": 6,
        "amounts": 4,
        "total": 17.5,
        "mean": 4.375,
        "low": 1,
        "high": 10,
    }
    assert expected == sales().aggregate(
        rows=Count(),
        amounts=Count("amount"),
        total=Sum("amount"),
        mean=Avg("amount"),
        low=Min("amount"),
        high=Max("amount"),
    )


def test_aggregates_with_where() -> None:
    t = sales()
    assert t.aggregate(where=Field("region") == "N", n=Count(), total=Sum("amount")) == {
        "n": 3,
        "total": 12.5,
    }


def test_aggregates_of_nothing_are_zero_and_none() -> None:
    t = Table("t")
    expected = {"n": 0, "c": 0, "s": None, "a": None, "lo": None, "hi": None}
    assert expected == t.aggregate(
        n=Count(), c=Count("v"), s=Sum("v"), a=Avg("v"), lo=Min("v"), hi=Max("v")
    )
    assert t.aggregate(group_by="v", n=Count()) == []


def test_group_by_one_field_in_first_seen_order_with_missing_as_none() -> None:
    expected = [
        {"region": "N", "n": 3, "total": 12.5},
        {"region": "S", "n": 2, "total": 4},
        {"region": None, "n": 1, "total": 1},
    ]
    assert expected == sales().aggregate(group_by="region", n=Count(), total=Sum("amount"))


def test_group_by_several_fields() -> None:
    expected = [
        {"region": "N", "shop": "a", "n": 2},
        {"region": "N", "shop": "b", "n": 1},
        {"region": "S", "shop": "a", "n": 2},
        {"region": None, "shop": "c", "n": 1},
    ]
    assert expected == sales().aggregate(group_by=["region", "shop"], n=Count())


def test_group_by_equal_values_of_different_types_and_containers() -> None:
    t = Table("t")
    t.insert([{"g": 1}, {"g": 1.0}, {"g": True}, {"g": [1]}, {"g": [1.0]}, {"g": {"k": 1}}])
    result = t.aggregate(group_by="g", n=Count())
    assert result == [{"g": 1, "n": 3}, {"g": [1], "n": 2}, {"g": {"k": 1}, "n": 1}]
    assert int is type(result[0]["g"])


def test_min_and_max_order_mixed_kinds_as_order_by_does() -> None:
    t = Table("t")
    t.insert([{"v": "b"}, {"v": 3}, {"v": dt.date(2024, 1, 1)}, {"v": None}, {"v": [1]}])
    assert t.aggregate(lo=Min("v"), hi=Max("v")) == {"lo": 3, "hi": [1]}


def test_sum_and_avg_keep_decimal_exact() -> None:
    t = Table("t")
    t.insert([{"v": decimal.Decimal("0.1")}, {"v": decimal.Decimal("0.2")}])
    assert {"s": decimal.Decimal("0.3"), "a": decimal.Decimal("0.15")} == t.aggregate(
        s=Sum("v"), a=Avg("v")
    )


def test_sum_of_values_that_do_not_add_raises_type_error_naming_the_aggregate() -> None:
    t = Table("t")
    t.insert([{"v": 1}, {"v": "x"}])
    with pytest.raises(TypeError, match="Sum\\('v'\\)"):
        t.aggregate(s=Sum("v"))
    with pytest.raises(TypeError, match="Avg\\('v'\\)"):
        t.aggregate(a=Avg("v"))


@pytest.mark.parametrize("bad", [len, "Count", Count], ids=["function", "str", "class"])
def test_a_non_aggregate_is_refused(bad: Any) -> None:
    with pytest.raises(TypeError, match="must be Count, Sum, Avg, Min or Max"):
        sales().aggregate(x=bad)


def test_group_by_must_name_fields() -> None:
    with pytest.raises(TypeError):
        sales().aggregate(group_by=[1], n=Count())  # type: ignore[list-item]


def test_aggregate_results_are_owned_copies() -> None:
    t = Table("t")
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

"""Value tags: domain values ⇄ plain trees (standard JSON), exactly, and their refusals."""

# The suite asserts `expected == actual` (STYLE.md), which SIM300 calls a Yoda condition.

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import uuid
import zoneinfo
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import wal
from tests import strategies as s
from wal import CodecError, UnsupportedValueError, compress, decompress, from_plain, to_plain


def _through_json(tree: Any) -> Any:
    return orjson.loads(orjson.dumps(tree))


def _through_json_and_zstd(tree: Any) -> Any:
    data = orjson.dumps(tree)
    return orjson.loads(decompress(compress(data), max_size=len(data)))


#: How a plain tree travels: as JSON (the log's payloads, dictdb's files), compressed or not.
CARRIERS: list[Callable[[Any], Any]] = [_through_json, _through_json_and_zstd]
CARRIER_IDS = ["json", "json+zstd"]


def same(a: Any, b: Any) -> bool:
    """Equal *and* of the same type all the way down (-0.0 is not 0.0; offsets must match)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if type(a) is decimal.Decimal:
        return a.as_tuple() == b.as_tuple()
    if type(a) is dt.datetime:
        return (
            a.replace(tzinfo=None) == b.replace(tzinfo=None)
            and type(a.tzinfo) is type(b.tzinfo)
            and a.utcoffset() == b.utcoffset()
        )
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    return bool(a == b)


def roundtrip(carry: Callable[[Any], Any], value: Any) -> Any:
    return from_plain(carry(to_plain(value)))


# -- the helper itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (0.0, -0.0),
        (1, True),
        (1, 1.0),
        (decimal.Decimal("1.0"), decimal.Decimal("1.00")),
        (decimal.Decimal("0"), decimal.Decimal("-0")),
        (
            dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC),
            dt.datetime(2024, 1, 1, 13, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        ),
        (dt.datetime(2024, 1, 1), dt.date(2024, 1, 1)),
        ([1], [1.0]),
        ({"a": 0.0}, {"a": -0.0}),
    ],
)
def test_same_tells_apart_values_that_compare_equal(a: Any, b: Any) -> None:
    assert (False, False) == (same(a, b), same(b, a))


# -- values ----------------------------------------------------------------------------------


@given(s.domain_values())
def test_from_plain_inverts_to_plain_type_for_type(value: Any) -> None:
    assert same(value, from_plain(to_plain(value)))


@pytest.mark.parametrize("carry", CARRIERS, ids=CARRIER_IDS)
@given(value=s.domain_values())
def test_every_domain_value_survives_json_and_compression(
    carry: Callable[[Any], Any], value: Any
) -> None:
    assert same(value, roundtrip(carry, value))


@given(s.records())
def test_a_plain_tree_is_standard_json(record: dict[str, Any]) -> None:
    tree = to_plain(record)
    assert tree == json.loads(json.dumps(tree, allow_nan=False))


@pytest.mark.parametrize(
    "value",
    [
        0.0,
        -0.0,
        math.inf,
        -math.inf,
        2**63 - 1,
        2**63,
        -(2**63),
        -(2**63) - 1,
        2**64,
        10**100,
        decimal.Decimal("-0"),
        decimal.Decimal("1.500"),
        decimal.Decimal("1E-30"),
        decimal.Decimal("1E+3"),
        dt.datetime(1, 1, 1),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone(-dt.timedelta(hours=23))),
        dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(seconds=30))),
        dt.date(1, 1, 1),
        uuid.UUID(int=0),
        b"",
        b"\x00\xff",
        "",
        "$date",
        [],
        {},
    ],
    ids=repr,
)
@pytest.mark.parametrize("carry", CARRIERS, ids=CARRIER_IDS)
def test_edge_values_survive_json_and_compression(carry: Callable[[Any], Any], value: Any) -> None:
    assert same(value, roundtrip(carry, value))
    assert same([value], roundtrip(carry, [value]))


@pytest.mark.parametrize(
    "user_dict",
    [
        {"$date": "x"},
        {"$dict": {"a": 1}},
        {"$dict": "x"},
        {"$int": "5"},
        {"$bytes": 1},
        {"$unknown": None},
        {"$": {"$": {"$": 1}}},
        {"$datetime": "2024-01-01T00:00:00"},
    ],
    ids=repr,
)
@pytest.mark.parametrize("carry", CARRIERS, ids=CARRIER_IDS)
def test_user_dicts_shaped_like_tags_come_back_as_dicts(
    carry: Callable[[Any], Any], user_dict: dict[str, Any]
) -> None:
    assert same(user_dict, roundtrip(carry, user_dict))
    assert same({"k": user_dict}, roundtrip(carry, {"k": user_dict}))


@pytest.mark.parametrize(
    "nan",
    [
        float("nan"),
        -float("nan"),
        decimal.Decimal("NaN"),
        decimal.Decimal("-NaN"),
        decimal.Decimal("sNaN"),
        [1, float("nan")],
        {"a": {"b": decimal.Decimal("NaN")}},
    ],
    ids=repr,
)
def test_nan_is_refused_as_float_and_as_decimal(nan: Any) -> None:
    with pytest.raises(UnsupportedValueError):
        to_plain(nan)
    with pytest.raises(UnsupportedValueError):
        wal.own_value(nan)


NESTED_OUT_OF_DOMAIN = [
    ({1, 2}, ""),
    ((1, 2), ""),
    ({"tags": [1, 2, {3}]}, "tags[2]"),
    ({"a": {"b": (1,)}}, "a.b"),
    ([0, [1, object()]], "[1][1]"),
    ({"when": dt.datetime(2024, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))}, "when"),
    ({"level": [s.Color.RED]}, "level[0]"),
    ({"doc": s.SubDict(a=1)}, "doc"),
    ({"x": [{"y": frozenset()}]}, "x[0].y"),
    ({"f": float("nan")}, "f"),
]


NESTED_IDS = [f"{i}:{path or 'top'}" for i, (_, path) in enumerate(NESTED_OUT_OF_DOMAIN)]


@pytest.mark.parametrize(("value", "path"), NESTED_OUT_OF_DOMAIN, ids=NESTED_IDS)
def test_own_value_refuses_out_of_domain_values_naming_their_path(value: Any, path: str) -> None:
    with pytest.raises(UnsupportedValueError) as info:
        wal.own_value(value)
    assert path == info.value.path


@pytest.mark.parametrize(("value", "path"), NESTED_OUT_OF_DOMAIN, ids=NESTED_IDS)
def test_to_plain_refuses_out_of_domain_values(value: Any, path: str) -> None:
    with pytest.raises(UnsupportedValueError):
        to_plain(value)


@pytest.mark.parametrize(
    ("value", "path"), [p for p in NESTED_OUT_OF_DOMAIN if p[1]], ids=lambda v: str(v)[:20]
)
def test_to_plain_error_path_names_the_nested_location(value: Any, path: str) -> None:
    with pytest.raises(UnsupportedValueError) as info:
        to_plain(value)
    assert path == info.value.path


@given(s.out_of_domain_values())
def test_any_out_of_domain_value_is_refused_by_both_entry_points(value: Any) -> None:
    with pytest.raises(UnsupportedValueError):
        to_plain(value)
    with pytest.raises(UnsupportedValueError):
        wal.own_value(value)


@pytest.mark.parametrize("value", [{1: "a"}, {"a": {None: 1}}, [{b"k": 1}]], ids=repr)
def test_dict_keys_must_be_str(value: Any) -> None:
    with pytest.raises(UnsupportedValueError):
        to_plain(value)
    with pytest.raises(UnsupportedValueError):
        wal.own_value(value)


@given(s.domain_values())
def test_own_value_returns_an_equal_copy_sharing_no_container(value: Any) -> None:
    owned = wal.own_value(value)
    assert same(value, owned)

    def containers(v: Any) -> list[int]:
        if type(v) is list:
            return [id(v), *(i for x in v for i in containers(x))]
        if type(v) is dict:
            return [id(v), *(i for x in v.values() for i in containers(x))]
        return []

    assert set() == set(containers(value)) & set(containers(owned))


@pytest.mark.parametrize(
    "tree",
    [
        {"$int": "12a"},
        {"$int": ""},
        {"$float": "nan"},
        {"$float": 1.0},
        {"$decimal": "NaN"},
        {"$decimal": "abc"},
        {"$bytes": "!!!"},
        {"$date": "2024-13-01"},
        {"$datetime": "yesterday"},
        {"$uuid": "not-a-uuid"},
        {"$dict": [1]},
        {"$nope": 1},
        [{"$int": None}],
    ],
    ids=repr,
)
def test_malformed_tags_are_refused_with_codec_error(tree: Any) -> None:
    with pytest.raises(CodecError):
        from_plain(tree)


@given(st.datetimes(timezones=s.sub_second_or_named_timezones()))
def test_datetimes_whose_timezone_iso_8601_cannot_carry_are_refused(value: Any) -> None:
    """A named timezone or a sub-second offset would not come back exactly: refused."""
    with pytest.raises(UnsupportedValueError):
        wal.own_value(value)
    with pytest.raises(UnsupportedValueError):
        to_plain(value)


# -- nesting -------------------------------------------------------------------------------------


def escaped_dicts(levels: int) -> Any:
    """*levels* dicts nested in each other, each with one key starting with ``$`` (so each is
    escaped by a ``$dict`` tag: the plain tree is twice as deep), bytes at the bottom."""
    value: Any = b"\x00"
    for _ in range(levels):
        value = {"$k": value}
    return value


def test_a_value_as_deep_as_the_limit_round_trips_through_json_at_its_deepest() -> None:
    value = escaped_dicts(wal.MAX_NESTING)
    assert value == wal.own_value(value)
    plain = to_plain(value)
    assert value == from_plain(orjson.loads(orjson.dumps(plain)))
    # The deepest document holding it: the plain tree inside a row, in a file's tables.
    document = {"tables": {"t": {"records": [{"id": 1, "v": plain}], "special": [0]}}}
    assert document == orjson.loads(orjson.dumps(document))


@pytest.mark.parametrize(
    "value",
    [escaped_dicts(wal.MAX_NESTING + 1), [escaped_dicts(wal.MAX_NESTING)]],
    ids=["dicts", "list-of-dicts"],
)
def test_a_value_one_level_deeper_than_the_limit_is_refused_both_ways(value: Any) -> None:
    with pytest.raises(UnsupportedValueError, match=f"nest more than {wal.MAX_NESTING} deep"):
        wal.own_value(value)
    with pytest.raises(UnsupportedValueError, match="nest more than"):
        wal.own_value(escaped_dicts(wal.MAX_NESTING), "field", depth=1)  # inside a record
    # to_plain of an unchecked value still works; a reader refuses it.
    with pytest.raises(CodecError, match=f"nest more than {wal.MAX_NESTING} deep"):
        from_plain(to_plain(value))


def test_a_plain_tree_nested_a_thousand_deep_is_refused_without_recursion_error() -> None:
    for text in (b"[" * 1000 + b"]" * 1000, b'{"$dict":' * 1000 + b"{}" + b"}" * 1000):
        with pytest.raises(CodecError, match="nest more than"):
            from_plain(orjson.loads(text))
    deep: Any = None
    for _ in range(10**5):
        deep = [deep]
    with pytest.raises(UnsupportedValueError, match="nest more than"):
        wal.own_value(deep)


def test_a_flat_dict_comes_back_as_it_is_and_a_tag_inside_a_dict_is_still_read() -> None:
    flat = {"a": 1, "b": "x", "c": None, "d": 1.5, "e": True}
    assert flat is from_plain(flat)
    nested = {"a": {"$bytes": "eA=="}, "b": 2}
    assert {"a": b"x", "b": 2} == from_plain(nested)
    assert b"x" == from_plain({"$bytes": "eA=="})

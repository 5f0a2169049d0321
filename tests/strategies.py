"""The shared hypothesis strategies: domain values, records, field names, primary keys.

Every test module draws from here, so that "the value domain" means one thing in the suite:
None, bool, int (including ints far beyond 64 bits), float (including -0.0 and ±inf, never
NaN), str, bytes, datetime (naive or with a fixed-offset `datetime.timezone`), date, Decimal
(finite, including negative exponents), UUID, and lists and str-keyed dicts of those.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
import zoneinfo
from typing import Any

from hypothesis import strategies as st

#: Field names that collide with Table members, DSL words, codec tags or nothing at all.
AWKWARD_FIELD_NAMES = (
    "id",
    "count",
    "select",
    "size",
    "schema",
    "records",
    "insert",
    "all",
    "copy",
    "table_name",
    "primary_key",
    "$weird",
    "$date",
    "$dict",
    "$int",
    "$",
    "",
    "a b",
    "é",
)


def field_names() -> st.SearchStrategy[str]:
    """Field names: awkward fixed ones, often, and arbitrary short text."""
    return st.one_of(st.sampled_from(AWKWARD_FIELD_NAMES), st.text(max_size=8))


def fixed_offset_timezones() -> st.SearchStrategy[dt.timezone]:
    """`datetime.timezone` instances with whole-second offsets (no names): the domain.

    Sub-second offsets and named timezones are refused by the value domain (ISO 8601, as
    Python 3.11 parses it, cannot bring them back); `sub_second_or_named_timezones` has them.
    """
    bound = 24 * 3600 - 1
    return st.one_of(
        st.just(dt.UTC),
        st.builds(dt.timezone, st.integers(-bound, bound).map(lambda s: dt.timedelta(seconds=s))),
        st.builds(
            dt.timezone,
            st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: dt.timedelta(minutes=m)),
        ),
    )


def sub_second_or_named_timezones() -> st.SearchStrategy[dt.timezone]:
    """Fixed-offset timezones outside the domain: a sub-second offset, or a name."""
    return st.one_of(
        st.integers(1, 999_999).map(lambda us: dt.timezone(dt.timedelta(microseconds=us))),
        st.builds(
            dt.timezone,
            st.integers(-23, 23).map(lambda h: dt.timedelta(hours=h)),
            st.sampled_from(["CET", "EST", "local"]),
        ),
    )


def datetimes() -> st.SearchStrategy[dt.datetime]:
    """Naive datetimes and datetimes aware of a fixed-offset timezone."""
    return st.one_of(
        st.datetimes(),
        st.datetimes(timezones=fixed_offset_timezones()),
    )


def huge_ints() -> st.SearchStrategy[int]:
    """Ints beyond the signed and the unsigned 64-bit ranges, and around their edges."""
    return st.one_of(
        st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
        st.integers(min_value=-(2**63) - 2, max_value=-(2**63) + 2),
        st.integers(min_value=2**64, max_value=2**300),
        st.integers(min_value=-(2**300), max_value=-(2**64)),
    )


def floats() -> st.SearchStrategy[float]:
    """Floats with -0.0, ±inf and subnormals, never NaN."""
    return st.one_of(
        st.floats(allow_nan=False),
        st.sampled_from([0.0, -0.0, float("inf"), float("-inf"), 5e-324, -5e-324]),
    )


def decimals() -> st.SearchStrategy[decimal.Decimal]:
    """Finite Decimals, with negative exponents and signed zeros."""
    return st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False),
        st.sampled_from(
            [decimal.Decimal(s) for s in ("-0", "0.000", "1E+3", "-1.50", "1E-30", "123.4560")]
        ),
    )


def scalars() -> st.SearchStrategy[Any]:
    """Every scalar type of the domain."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        huge_ints(),
        floats(),
        st.text(max_size=20),
        st.binary(max_size=20),
        datetimes(),
        st.dates(),
        decimals(),
        st.uuids(),
    )


def domain_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any domain value: scalars nested in lists and str-keyed dicts."""
    return st.recursive(
        scalars(),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(field_names(), children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def records(max_size: int = 5) -> st.SearchStrategy[dict[str, Any]]:
    """A record: a dict str → domain value."""
    return st.dictionaries(field_names(), domain_values(max_leaves=6), max_size=max_size)


def primary_keys() -> st.SearchStrategy[Any]:
    """Values of the types a primary key may have (int, str, bytes, UUID, date, datetime)."""
    return st.one_of(
        st.integers(),
        huge_ints(),
        st.text(max_size=10),
        st.binary(max_size=8),
        st.uuids(),
        st.dates(),
        datetimes(),
    )


class Color(enum.IntEnum):
    """An int subclass: equal to an int, but not of the domain."""

    RED = 1


class SubDict(dict):  # type: ignore[type-arg]
    """A dict subclass: not of the domain."""


def out_of_domain_scalars() -> st.SearchStrategy[Any]:
    """Values outside the domain: container and scalar types it does not name, and NaN."""
    return st.sampled_from(
        [
            {1, 2},
            frozenset({1}),
            (1, 2),
            object(),
            float("nan"),
            decimal.Decimal("NaN"),
            decimal.Decimal("sNaN"),
            Color.RED,
            SubDict(a=1),
            bytearray(b"x"),
            1 + 2j,
            dt.datetime(2024, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
            dt.time(12, 0),
            dt.timedelta(1),
        ]
    )


def out_of_domain_values() -> st.SearchStrategy[Any]:
    """An out-of-domain value, alone or nested inside lists and dicts."""
    return st.recursive(
        out_of_domain_scalars(),
        lambda inner: st.one_of(
            st.tuples(st.lists(scalars(), max_size=2), inner).map(lambda p: [*p[0], p[1]]),
            st.tuples(field_names(), inner).map(lambda p: {p[0]: p[1]}),
        ),
        max_leaves=3,
    )


# -- queries (tests/dictdb/test_index.py, test_query.py) -----------------------------------------

#: Values that collide under ``==``, hashing or ordering across kinds: 1 == 1.0 == True ==
#: Decimal(1), -0.0 == 0, equal aware datetimes in two offsets, naive vs aware, date vs
#: datetime, equal lists and dicts of different element types, LIKE metacharacters.
TRICKY_VALUES: tuple[Any, ...] = (
    None,
    0,
    1,
    -1,
    2,
    2**70,
    1.0,
    1.5,
    -0.0,
    float("inf"),
    True,
    False,
    decimal.Decimal("1"),
    decimal.Decimal("1.5"),
    "",
    "a",
    "A",
    "ab",
    "aB",
    "abc",
    "b",
    "%",
    "a_c",
    "a\nb",
    b"",
    b"a",
    dt.date(2024, 1, 1),
    dt.datetime(2024, 1, 1),
    dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    uuid.UUID(int=1),
    [],
    [1],
    [1.0],
    [True],
    ["a"],
    [[1], {"k": 1}],
    {},
    {"k": 1},
    {"k": 1.0},
    {"k": [1]},
)

#: The few fields query tests use (including one named like a Table member).
QUERY_FIELDS = ("a", "b", "count")


def query_values() -> st.SearchStrategy[Any]:
    """Domain values, mostly from `TRICKY_VALUES` so that comparisons often hit."""
    return st.one_of(
        st.sampled_from(TRICKY_VALUES),
        st.sampled_from(TRICKY_VALUES),
        scalars(),
        domain_values(max_leaves=3),
    )


def query_records(fields: tuple[str, ...] = QUERY_FIELDS) -> st.SearchStrategy[dict[str, Any]]:
    """A record over *fields*, each field present or missing, no primary key."""
    return st.fixed_dictionaries({}, optional={f: query_values() for f in fields})


def like_patterns() -> st.SearchStrategy[str]:
    """LIKE patterns: short mixes of letters, wildcards and the escape character ``!``."""
    return st.lists(st.sampled_from(["a", "b", "A", "%", "_", "!", "!%", "\n", "ab"])).map("".join)


def query_texts() -> st.SearchStrategy[str]:
    """Operands of the str tests (startswith, iequals, ...)."""
    return st.one_of(st.sampled_from(["", "a", "A", "ab", "aB", "b", "%"]), st.text(max_size=3))


def leaf_predicates(fields: tuple[str, ...] = QUERY_FIELDS) -> st.SearchStrategy[Any]:
    """One field condition, from every operator of the DSL (`dictdb.query`)."""
    from dictdb.query import Condition, Field, PredicateExpr

    def field() -> st.SearchStrategy[Field]:
        return st.sampled_from(fields).map(Field)

    ops = ["__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"]
    return st.one_of(
        st.builds(
            lambda f, op, v: getattr(f, op)(v), field(), st.sampled_from(ops), query_values()
        ),
        st.builds(lambda f, vs: f.is_in(vs), field(), st.lists(query_values(), max_size=4)),
        st.builds(lambda f, lo, hi: f.between(lo, hi), field(), query_values(), query_values()),
        st.builds(
            lambda f, p, e, i: (f.ilike if i else f.like)(p, e),
            field(),
            like_patterns(),
            st.sampled_from([None, "!"]),
            st.booleans(),
        ),
        st.builds(lambda f, v: f.contains(v), field(), query_values()),
        st.builds(
            lambda f, m, t: getattr(f, m)(t),
            field(),
            st.sampled_from(
                ["startswith", "endswith", "iequals", "icontains", "istartswith", "iendswith"]
            ),
            query_texts(),
        ),
        st.builds(lambda f: f.is_null(), field()),
        st.builds(lambda f: f.is_not_null(), field()),
        st.builds(lambda f, v: Condition(f == v), field(), query_values()),
        st.sampled_from(fields).map(
            lambda name: PredicateExpr(lambda row: row.get(name) is not None)
        ),
    )


def predicates(fields: tuple[str, ...] = QUERY_FIELDS) -> st.SearchStrategy[Any]:
    """Conditions built from `leaf_predicates` with ``&``, ``|``, ``~``, `And`, `Or`, `Not`."""
    from dictdb.query import And, Not, Or

    return st.recursive(
        leaf_predicates(fields),
        lambda inner: st.one_of(
            st.builds(lambda a, b: a & b, inner, inner),
            st.builds(lambda a, b: a | b, inner, inner),
            st.builds(lambda a: ~a, inner),
            st.lists(inner, min_size=2, max_size=3).map(lambda ps: And(*ps)),
            st.lists(inner, min_size=2, max_size=3).map(lambda ps: Or(*ps)),
            inner.map(Not),
        ),
        max_leaves=5,
    )


def plain_json(
    text_size: int = 10, container_size: int = 3, max_leaves: int = 8
) -> st.SearchStrategy[Any]:
    """JSON values that `wal.tags` keeps as they are (no tags needed): what the durable log
    may dump without tagging."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=text_size),
    )
    keys = st.text(max_size=6).filter(lambda k: not k.startswith("$"))
    return st.recursive(
        leaves,
        lambda c: st.one_of(
            st.lists(c, max_size=container_size), st.dictionaries(keys, c, max_size=container_size)
        ),
        max_leaves=max_leaves,
    )

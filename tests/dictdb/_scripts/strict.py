"""A strict, type-for-type comparison of values and of whole databases.

``==`` is too lenient for a restore: ``1 == 1.0 == True``, ``0.0 == -0.0``,
``Decimal("1.0") == Decimal("1.00")``, and two aware datetimes of different offsets are equal
when they name the same instant. `diff` tells all of those apart and returns readable
differences (an empty list means identical).

Not compared: `datetime.fold` (the codec does not carry it; see the xfail test in
``tests/dictdb/test_persist.py``) and the order of rows inside a table (a restore may
legitimately place a deleted-then-re-inserted key where it was).
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any


def diff(a: Any, b: Any, path: str = "$") -> list[str]:
    """Every difference between *a* and *b*: types, float signs, Decimal exponents,
    datetime offsets, dict key order, list lengths."""
    ta, tb = type(a), type(b)
    if ta is not tb:
        return [f"{path}: type {ta.__name__} != {tb.__name__} ({a!r} vs {b!r})"]
    if ta is float:
        return [] if repr(a) == repr(b) else [f"{path}: float {a!r} != {b!r}"]
    if ta is decimal.Decimal:
        return [] if str(a) == str(b) else [f"{path}: Decimal {a} != {b}"]
    if ta is dt.datetime:
        same = (
            a.isoformat() == b.isoformat()
            and type(a.tzinfo) is type(b.tzinfo)
            and a.utcoffset() == b.utcoffset()
        )
        return [] if same else [f"{path}: datetime {a!r} != {b!r}"]
    if ta is dict:
        if list(a) != list(b):
            return [f"{path}: keys {list(a)!r} != {list(b)!r}"]
        out: list[str] = []
        for k, v in a.items():
            out += diff(v, b[k], f"{path}[{k!r}]")
        return out
    if ta is list:
        if len(a) != len(b):
            return [f"{path}: list length {len(a)} != {len(b)}"]
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += diff(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def db_diff(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Differences between two `DictDB.to_dict()` results (rows matched by key, any order)."""
    if list(expected) != list(actual):
        return [f"tables {list(expected)!r} != {list(actual)!r}"]
    out: list[str] = []
    for name, table in expected.items():
        other = actual[name]
        if list(table) != list(other):
            out.append(f"{name}: fields {list(table)!r} != {list(other)!r}")
            continue
        for field in table:
            if field != "records":
                out += diff(table[field], other[field], f"{name}.{field}")
        out += records_diff(table["records"], other["records"], name)
    return out


def records_diff(expected: dict[Any, Any], actual: dict[Any, Any], where: str = "$") -> list[str]:
    """Differences between two key → row mappings, ignoring their order."""
    if expected.keys() != actual.keys():
        missing = [k for k in expected if k not in actual][:5]
        extra = [k for k in actual if k not in expected][:5]
        return [f"{where}: missing keys {missing!r}, unexpected keys {extra!r}"]
    out: list[str] = []
    own_keys = {k: k for k in actual}
    for key, row in expected.items():
        if type(own_keys[key]) is not type(key):
            out.append(f"{where}: key {key!r} came back as {own_keys[key]!r}")
        out += diff(row, actual[key], f"{where}[{key!r}]")
    return out

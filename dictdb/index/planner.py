"""The planner: which keys a condition may match, from the table's indexes and row map.

A comparison on an indexed field is a lookup; ``pk == x`` (and ``pk.is_in``) is a lookup in
the row map itself; a conjunction intersects the lookups of the operands that have one
(equalities first, stopping once the candidates are few); a disjunction is the union of its
branches only when *every* branch has a lookup; a negation never uses an index. Anything else
is a scan.

`matching_rows` runs the whole match for a read: lookup, then the test of each candidate in
table order, returning the stored rows themselves (no (key, row) pairs: on a large result
those pairs are what made the collector walk the whole heap, see `matching_rows`).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from itertools import compress, repeat
from typing import Any, Final

from dictdb._values import PK_TYPES, Record
from dictdb.index.base import Index
from dictdb.query import (
    And,
    Between,
    Compare,
    Condition,
    IsIn,
    Like,
    Or,
    Predicate,
    TextMatch,
)

#: A conjunction stops looking up more operands once it has at most this many candidates:
#: testing a few rows costs less than another lookup (a range lookup may touch many keys).
_FEW: Final = 16
_EQUALITY: Final = {"==": operator.eq, "!=": operator.ne}
_get = dict.get


def _key_lookup(rows: Mapping[Any, Any], value: Any, pk: str) -> set[Any] | None:
    # ``pk == value`` through the row map, for operands of a key type only (distinct key
    # types never compare equal, so 1.0 or True could find key 1 but must not stand for it).
    # The key returned is the row's own, not the operand (equal aware datetimes may differ
    # in offset), since writes journal it.
    if type(value) in PK_TYPES:
        row = rows.get(value)
        return set() if row is None else {row[pk]}
    if value is None:
        return set()  # every row has a key, never None
    return None


def _equal(
    field: str, value: Any, indexes: Mapping[str, Index], rows: Mapping[Any, Any], pk: str
) -> AbstractSet[Any] | None:
    if field == pk:
        found = _key_lookup(rows, value, pk)
        if found is not None:
            return found
    index = indexes.get(field)
    return None if index is None else index.equal(value)


def _cost(node: Predicate) -> int:
    # Equalities are one bucket each; ranges and prefixes may gather many buckets.
    while isinstance(node, Condition):
        node = node.condition
    if isinstance(node, Compare) and node.op == "==":
        return 0
    return 1 if isinstance(node, IsIn) else 2


def candidates(
    pred: Predicate, indexes: Mapping[str, Index], rows: Mapping[Any, Any], primary_key: str
) -> AbstractSet[Any] | None:
    """Keys of the rows that may match *pred*, or None when only a scan can tell.

    Every row matching *pred* has its key in the result (the caller tests each candidate
    with *pred*); the result may be an index's own set and must not be modified.

    Args:
        pred: the condition.
        indexes: field → index of the table.
        rows: the table's row map (for primary-key lookups).
        primary_key: the table's key field.
    """
    while isinstance(pred, Condition):
        pred = pred.condition
    if isinstance(pred, Compare):
        if pred.op == "==":
            return _equal(pred.field, pred.value, indexes, rows, primary_key)
        if pred.op == "!=":
            return None  # a complement: as wide as a scan
        index = indexes.get(pred.field)
        return None if index is None else index.compare(pred.op, pred.value)
    if isinstance(pred, IsIn):
        parts = []
        for value in pred.values:
            found = _equal(pred.field, value, indexes, rows, primary_key)
            if found is None:
                return None
            parts.append(found)
        return set().union(*parts)
    if isinstance(pred, And):
        found_sets: list[AbstractSet[Any]] = []
        for operand in sorted(pred.operands, key=_cost):
            found = candidates(operand, indexes, rows, primary_key)
            if found is not None:
                found_sets.append(found)
                if len(found) <= _FEW:
                    break
        if not found_sets:
            return None
        found_sets.sort(key=len)
        first, *others = found_sets
        return set(first).intersection(*others) if others else first
    if isinstance(pred, Or):
        branches = []
        for operand in pred.operands:
            found = candidates(operand, indexes, rows, primary_key)
            if found is None:
                return None  # one branch needs a scan, so the whole disjunction does
            branches.append(found)
        return set().union(*branches)
    if isinstance(pred, Between):
        index = indexes.get(pred.field)
        return None if index is None else index.between(pred.low, pred.high)
    if isinstance(pred, Like):
        index = indexes.get(pred.field)
        return None if index is None or not pred.prefix else index.prefix(pred.prefix)
    if isinstance(pred, TextMatch):
        if pred.kind != "startswith" or pred.ignore_case or type(pred.text) is not str:
            return None
        index = indexes.get(pred.field)
        return None if index is None else index.prefix(pred.text)
    return None  # Not, PredicateExpr, Contains, case-insensitive tests: scan


def matching_rows(
    pred: Predicate,
    indexes: Mapping[str, Index],
    rows: Mapping[Any, Record],
    positions: Mapping[Any, int],
    primary_key: str,
) -> list[Record]:
    """The stored rows matching *pred*, in table order; the caller holds the lock.

    Equal to ``[row for key, row in rows.items() if pred.fn(row)]``, narrowed by
    `candidates`. The rows are the table's own (the caller copies them out). No (key, row)
    pair is made: a pair holding a dict is never untracked by the cyclic collector, so a
    result of 100k pairs pushed the collector into a walk of the whole heap (1M rows: ~60 ms,
    about twice per 100k-row select).

    Args:
        pred: the condition.
        indexes: field → index of the table.
        rows: the table's row map.
        positions: key → insertion rank (kept while the table has indexes; may be empty).
        primary_key: the table's key field.
    """
    node = pred
    while isinstance(node, Condition):
        node = node.condition
    if type(node) is Compare and node.op == "==" and node.field != primary_key:
        # The commonest query, an equality on a field, without the general dispatch.
        index = indexes.get(node.field)
        keys = None if index is None else index.equal(node.value)
    else:
        keys = candidates(node, indexes, rows, primary_key)
    if keys is None:
        values = rows.values()
        if type(node) is Compare and node.op in _EQUALITY:
            # The scan of ``f == x`` (or ``!=``) in C: the same ``row.get(f) == x`` per row,
            # without a Python call per row (1M rows: ~56 ms -> ~40 ms).
            tests = map(
                _EQUALITY[node.op], map(_get, values, repeat(node.field)), repeat(node.value)
            )
            return list(compress(values, tests))
        return list(filter(pred.fn, values))
    count = len(keys)
    if count == 0:
        return []
    exact = _exact(node, indexes)
    if count == 1:
        for key in keys:
            row = rows[key]
            return [row] if exact or pred.fn(row) else []
    if positions and count * 8 <= len(rows):
        # Few candidates: fetch them in table order rather than walk the whole row map.
        found = map(rows.__getitem__, sorted(keys, key=positions.__getitem__))
        return list(found) if exact else list(filter(pred.fn, found))
    if exact:
        return [row for key, row in rows.items() if key in keys]
    test = pred.fn
    return [row for key, row in rows.items() if key in keys and test(row)]


def _exact(node: Predicate, indexes: Mapping[str, Index]) -> bool:
    # Whether `candidates` answered *node* (a Condition unwrapped) with exactly the keys of
    # the matching rows: a comparison (not ``!=``) or a `Between`, looked up in an index that
    # says its answers are exact, or ``pk == x`` looked up in the row map (no index on the
    # field: only the row map can have answered).
    if type(node) is Compare:
        if node.op == "!=":
            return False
    elif type(node) is not Between:
        return False
    index = indexes.get(node.field)
    return index is None or index.exact

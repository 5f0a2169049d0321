"""Secondary indexes (one field each) and the planner that narrows a query with them.

Indexes never change a result, only how many rows are tested: the planner returns a set of
candidate keys that contains every matching row, and the table tests each candidate with the
full predicate. So an index may over-approximate, never miss. How each index keeps that
promise over the whole value domain:

- **Missing is None.** A row lacking the field is indexed under None, as the DSL reads it, so
  ``f == None`` finds rows holding None *and* rows without the field, as a scan does.
- **HashIndex**: canonical value → set of keys. Scalars are their own canonical form (Python
  equality and hashing already agree: ``1 == 1.0 == True`` share a bucket); lists and dicts,
  which are unhashable, become tagged tuples / frozensets of canonical forms, so ``[1]`` and
  ``[1.0]`` share a bucket too. Answers ``==``, `is_in`, `is_null`.
- **SortedIndex**: `dictdb._select.sort_key` → set of keys, in a `sortedcontainers.SortedDict`.
  ``sort_key`` orders the whole domain without raising (by kind, then by value within a
  kind), and two values share a key exactly when they are of one kind and equal. An ordering
  comparison in Python matches only values of the operand's kind (``"a" < 3`` is false, a
  datetime never compares with a date), so ``f < x`` is the run of keys of ``x``'s kind
  below ``x``. Answers ``==`` and `is_in` on scalars, ``<``, ``<=``, ``>``, ``>=``,
  `between`, case-sensitive ``like('prefix%')`` and `startswith`.
- **Operands outside the domain** (a tuple, a set, an object with its own ``__eq__``, a NaN)
  are never looked up: the planner falls back to a scan, which gives Python's answer.

Planner (`candidates`): a comparison on an indexed field is a lookup; ``pk == x`` (and
``pk.is_in``) is a lookup in the row map itself; a conjunction intersects the lookups of the
operands that have one (equalities first, stopping once the candidates are few); a
disjunction is the union of its branches only when *every* branch has a lookup; a negation
never uses an index. Anything else is a scan.

Indexes are not persisted, as in the reference: a database loaded from a snapshot or
restored from a backup directory starts without indexes (create them again after loading);
within one database they are maintained by every operation applied through
`dictdb.database.DictDB._apply`: live writes, replay, and delta application alike.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import uuid
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, Final

from sortedcontainers import SortedDict  # type: ignore[import-untyped]

from dictdb._select import sort_key
from dictdb._values import PK_TYPES, Record
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

#: The index types `make_index` knows, by lower-case name.
INDEX_TYPES: Final = ("hash", "sorted")


# Scalar types whose equality, hashing and ordering are Python's own and well-behaved.
_SCALARS: Final = frozenset(
    {
        type(None),
        bool,
        int,
        float,
        str,
        bytes,
        decimal.Decimal,
        uuid.UUID,
        _dt.date,
        _dt.datetime,
    }
)


class _Tag:
    """Marks the canonical form of a container, so it never equals a scalar's."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_LIST: Final = _Tag("list")
_DICT: Final = _Tag("dict")
#: `hash_key` of an operand that cannot be looked up exactly.
NO_KEY: Final[Any] = _Tag("no key")


def _is_nan(value: Any) -> bool:
    if type(value) is float:
        return value != value
    return type(value) is decimal.Decimal and value.is_nan()


def hash_key(value: Any) -> Any:
    """A hashable form of a domain value; equal values (by ``==``) get equal forms.

    Returns:
        The value itself for a scalar, a tagged tuple for a list, a tagged frozenset of
        (field, form) pairs for a dict; `NO_KEY` for anything outside the value domain or
        a NaN, which the planner then answers by a scan.
    """
    t = type(value)
    if t in _SCALARS:
        return NO_KEY if _is_nan(value) else value
    if t is list:
        items = []
        for item in value:
            form = hash_key(item)
            if form is NO_KEY:
                return NO_KEY
            items.append(form)
        return (_LIST, tuple(items))
    if t is dict:
        pairs = []
        for name, item in value.items():
            form = hash_key(item)
            if type(name) is not str or form is NO_KEY:
                return NO_KEY
            pairs.append((name, form))
        return (_DICT, frozenset(pairs))
    return NO_KEY


def _orderable(value: Any) -> bool:
    """Whether a range bound can be located in `sort_key` order (a non-NaN scalar)."""
    return type(value) in _SCALARS and value is not None and not _is_nan(value)


_EMPTY: Final[frozenset[Any]] = frozenset()


class Index:
    """An index on one field: maintenance, and lookups returning candidate key sets.

    A lookup returns None when it cannot answer exactly (the planner then scans); the sets it
    returns belong to the index and must not be modified.
    """

    __slots__ = ("field",)
    index_type: str = ""

    def __init__(self, field: str) -> None:
        self.field = field

    def build(self, items: Iterable[tuple[Any, Record]]) -> None:
        """Index every (key, row) of a table (the index starts empty)."""
        for key, row in items:
            self.add(key, row)

    def add(self, key: Any, row: Record) -> None:
        """Index a new row."""
        raise NotImplementedError

    def remove(self, key: Any, row: Record) -> None:
        """Forget a row that is being deleted."""
        raise NotImplementedError

    def replace(self, key: Any, old: Record, new: Record) -> None:
        """Move a row whose image changes from *old* to *new*."""
        raise NotImplementedError

    def equal(self, value: Any) -> AbstractSet[Any] | None:
        """Keys of rows whose field may equal *value*."""
        return None

    def compare(self, op: str, value: Any) -> AbstractSet[Any] | None:
        """Keys of rows whose field may satisfy ``field <op> value`` (an ordering op)."""
        return None

    def between(self, low: Any, high: Any) -> AbstractSet[Any] | None:
        """Keys of rows whose field may satisfy ``low <= field <= high``."""
        return None

    def prefix(self, text: str) -> AbstractSet[Any] | None:
        """Keys of rows whose field may be a str starting with *text*."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} on {self.field!r}>"


class HashIndex(Index):
    """Equality index: canonical value (`hash_key`) → keys."""

    __slots__ = ("_buckets", "_odd")
    index_type = "hash"

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self._buckets: dict[Any, set[Any]] = {}
        # Keys of rows whose value has no canonical form: impossible for rows that passed
        # the value domain, kept so that such a row could only be over-reported, never lost.
        self._odd: set[Any] = set()

    def add(self, key: Any, row: Record) -> None:
        form = hash_key(row.get(self.field))
        if form is NO_KEY:
            self._odd.add(key)
            return
        bucket = self._buckets.get(form)
        if bucket is None:
            self._buckets[form] = {key}
        else:
            bucket.add(key)

    def remove(self, key: Any, row: Record) -> None:
        form = hash_key(row.get(self.field))
        if form is NO_KEY:
            self._odd.discard(key)
            return
        bucket = self._buckets[form]
        bucket.discard(key)
        if not bucket:
            del self._buckets[form]

    def replace(self, key: Any, old: Record, new: Record) -> None:
        field = self.field
        before, after = old.get(field), new.get(field)
        if before is after:  # the common case: an update that does not touch this field
            return
        self.remove(key, old)
        self.add(key, new)

    def equal(self, value: Any) -> AbstractSet[Any] | None:
        form = hash_key(value)
        if form is NO_KEY:
            return None
        found = self._buckets.get(form, _EMPTY)
        return found | self._odd if self._odd else found


class SortedIndex(Index):
    """Ordered index: `sort_key` of the value → keys, in a `SortedDict`."""

    __slots__ = ("_map",)
    index_type = "sorted"

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self._map = SortedDict()

    def build(self, items: Iterable[tuple[Any, Record]]) -> None:
        # One sort of the distinct keys instead of one insertion per row.
        field = self.field
        groups: dict[Any, set[Any]] = {}
        for key, row in items:
            k = sort_key(row.get(field))
            bucket = groups.get(k)
            if bucket is None:
                groups[k] = {key}
            else:
                bucket.add(key)
        self._map = SortedDict(groups)

    def add(self, key: Any, row: Record) -> None:
        k = sort_key(row.get(self.field))
        bucket = self._map.get(k)
        if bucket is None:
            self._map[k] = {key}
        else:
            bucket.add(key)

    def remove(self, key: Any, row: Record) -> None:
        k = sort_key(row.get(self.field))
        bucket = self._map[k]
        bucket.discard(key)
        if not bucket:
            del self._map[k]

    def replace(self, key: Any, old: Record, new: Record) -> None:
        field = self.field
        if old.get(field) is new.get(field):
            return
        self.remove(key, old)
        self.add(key, new)

    def equal(self, value: Any) -> AbstractSet[Any] | None:
        if type(value) not in _SCALARS or _is_nan(value):
            return None  # containers: sort_key is not equality for them
        found: set[Any] = self._map.get(sort_key(value), _EMPTY)
        return found

    def _range(self, low: Any, high: Any, inclusive: tuple[bool, bool]) -> set[Any]:
        out: set[Any] = set()
        m = self._map
        for k in m.irange(low, high, inclusive):
            out |= m[k]
        return out

    def compare(self, op: str, value: Any) -> AbstractSet[Any] | None:
        if value is None:
            return _EMPTY  # an ordering comparison never matches None
        if not _orderable(value):
            return None
        k = sort_key(value)
        kind = k[0]
        if op == "<":
            return self._range((kind,), k, (True, False))
        if op == "<=":
            return self._range((kind,), k, (True, True))
        if op == ">":
            return self._range(k, (kind + 1,), (False, False))
        if op == ">=":
            return self._range(k, (kind + 1,), (True, False))
        return None

    def between(self, low: Any, high: Any) -> AbstractSet[Any] | None:
        if low is None or high is None:
            return _EMPTY
        if not (_orderable(low) and _orderable(high)):
            return None
        lo, hi = sort_key(low), sort_key(high)
        if lo[0] != hi[0] or hi < lo:
            return _EMPTY  # no value is of both kinds, or the range is empty
        return self._range(lo, hi, (True, True))

    def prefix(self, text: str) -> AbstractSet[Any] | None:
        if not text:
            return None  # every str: not worth a lookup
        out: set[Any] = set()
        m = self._map
        for k in m.irange((2, text), None):
            if k[0] != 2 or not k[1].startswith(text):
                break  # str keys starting with text are one contiguous run
            out |= m[k]
        return out


def make_index(field: str, index_type: str) -> Index:
    """A new empty index of *index_type* (``"hash"`` or ``"sorted"``, any case).

    Raises:
        ValueError: an unknown index type.
    """
    kind = index_type.lower() if isinstance(index_type, str) else index_type
    if kind == "hash":
        return HashIndex(field)
    if kind == "sorted":
        return SortedIndex(field)
    raise ValueError(f"unknown index type {index_type!r}; use 'hash' or 'sorted'")


# -- the planner --------------------------------------------------------------------------

#: A conjunction stops looking up more operands once it has at most this many candidates:
#: testing a few rows costs less than another lookup (a range lookup may touch many keys).
_FEW: Final = 16


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

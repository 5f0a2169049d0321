"""`SortedIndex`: `dictdb._select.sort_key` of the value → keys, in a `SortedDict`.

``sort_key`` orders the whole domain without raising (by kind, then by value within a kind),
and two scalars share a key exactly when they are of one kind and equal. An ordering
comparison in Python matches only values of the operand's kind (``"a" < 3`` is false, a
datetime never compares with a date), so ``f < x`` is the run of keys of ``x``'s kind below
``x``.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from typing import Any

from sortedcontainers import SortedDict  # type: ignore[import-untyped]

from dictdb._select import sort_key
from dictdb._values import Record
from dictdb.index.base import EMPTY, SCALARS, Index, is_nan, orderable


class SortedIndex(Index):
    """Ordered index. Answers ``==`` and `is_in` on scalars, ``<``, ``<=``, ``>``, ``>=``,
    `between`, case-sensitive ``like('prefix%')`` and `startswith`."""

    __slots__ = ("_map",)
    index_type = "sorted"
    supports_range = True

    def __init__(self, field: str = "") -> None:
        super().__init__(field)
        self._map = SortedDict()

    @property
    def exact(self) -> bool:
        # Two scalars share a sort key exactly when they are of one kind and equal, a run of
        # one kind's keys is ordered as Python orders its values, and values of other kinds
        # never compare (see the module). `prefix` is not covered: LIKE patterns need a test.
        return True

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
        # `insert` inlined, with `sort_key`'s common case (an int or a str, never None).
        value = row.get(self.field)
        t = type(value)
        k = (1, value) if t is int else (2, value) if t is str else sort_key(value)
        bucket = self._map.get(k)
        if bucket is None:
            self._map[k] = {key}
        else:
            bucket.add(key)

    def insert(self, pk: Any, value: Any) -> None:
        k = sort_key(value)
        bucket = self._map.get(k)
        if bucket is None:
            self._map[k] = {pk}
        else:
            bucket.add(pk)

    def delete(self, pk: Any, value: Any) -> None:
        k = sort_key(value)
        bucket = self._map.get(k)
        if bucket is None:
            return
        bucket.discard(pk)
        if not bucket:
            del self._map[k]

    def update(self, pk: Any, old_value: Any, new_value: Any) -> None:
        self.delete(pk, old_value)
        self.insert(pk, new_value)

    def search(self, value: Any) -> set[Any]:
        return self._found(self.equal(value), "the value", value)

    def search_lt(self, value: Any) -> set[Any]:
        return self._found(self.compare("<", value), "a bound", value)

    def search_lte(self, value: Any) -> set[Any]:
        return self._found(self.compare("<=", value), "a bound", value)

    def search_gt(self, value: Any) -> set[Any]:
        return self._found(self.compare(">", value), "a bound", value)

    def search_gte(self, value: Any) -> set[Any]:
        return self._found(self.compare(">=", value), "a bound", value)

    def search_between(self, low: Any, high: Any) -> set[Any]:
        """The keys indexed under a value in ``low..high``, both included."""
        return self._found(self.between(low, high), "the bounds", (low, high))

    def equal(self, value: Any) -> AbstractSet[Any] | None:
        if type(value) not in SCALARS or is_nan(value):
            return None  # containers: sort_key is not equality for them
        found: set[Any] = self._map.get(sort_key(value), EMPTY)
        return found

    def _range(self, low: Any, high: Any, inclusive: tuple[bool, bool]) -> set[Any]:
        out: set[Any] = set()
        m = self._map
        for k in m.irange(low, high, inclusive):
            out |= m[k]
        return out

    def compare(self, op: str, value: Any) -> AbstractSet[Any] | None:
        if value is None:
            return EMPTY  # an ordering comparison never matches None
        if not orderable(value):
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
            return EMPTY
        if not (orderable(low) and orderable(high)):
            return None
        lo, hi = sort_key(low), sort_key(high)
        if lo[0] != hi[0] or hi < lo:
            return EMPTY  # no value is of both kinds, or the range is empty
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

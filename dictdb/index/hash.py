"""`HashIndex`: canonical value (`dictdb.index.base.hash_key`) → keys; answers equality.

A value held by one row maps to that row's key itself, not to a set of one: a table indexed
on a column of distinct values (names, e-mails) then holds no set at all, which makes a
build about six times faster (a million one-key sets cost more to make, and to walk in the
collector's generations, than the dict that holds them) and an insert cheaper. A second row
with the value turns the entry into a set. A key is never a `set` (a set is unhashable), so
``type(entry) is set`` tells the two forms apart.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, Final

from dictdb._values import Record
from dictdb.index.base import EMPTY, NO_KEY, Index, hash_key

#: Types that are their own canonical form: scalars that can never be a NaN.
_PLAIN: Final = frozenset({type(None), bool, int, str, bytes, uuid.UUID, _dt.date, _dt.datetime})
_MISSING: Final[Any] = object()


class _Buckets(Mapping[Any, AbstractSet[Any]]):
    """Read-only view canonical value → set of keys over the one-key-or-set entries."""

    __slots__ = ("_entries",)

    def __init__(self, entries: dict[Any, Any]) -> None:
        self._entries = entries

    def __getitem__(self, form: Any) -> AbstractSet[Any]:
        entry = self._entries[form]
        return entry if type(entry) is set else frozenset((entry,))

    def __iter__(self) -> Iterator[Any]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, form: object) -> bool:
        return form in self._entries


class HashIndex(Index):
    """Equality index: canonical value (`hash_key`) → keys. Answers ``==``, `is_in`,
    `is_null`."""

    __slots__ = ("_buckets", "_odd")
    index_type = "hash"

    def __init__(self, field: str = "") -> None:
        super().__init__(field)
        # Canonical value -> the one key holding it, or a set of the keys (see the module).
        self._buckets: dict[Any, Any] = {}
        # Keys of rows whose value has no canonical form: impossible for rows that passed
        # the value domain, kept so that such a row could only be over-reported, never lost.
        self._odd: set[Any] = set()

    @property
    def index(self) -> Mapping[Any, AbstractSet[Any]]:
        """Read-only view canonical value → keys (the reference's ``index`` dict).

        A scalar is its own canonical value; see `hash_key` for lists and dicts.
        """
        return _Buckets(self._buckets)

    @property
    def exact(self) -> bool:
        # A bucket holds the rows whose canonical value equals the operand's: by `hash_key`,
        # exactly the rows ``==`` matches. Keys without a canonical form are over-reported.
        return not self._odd

    def build(self, items: Iterable[tuple[Any, Record]]) -> None:
        # `insert` inlined: one pass, and no set for a value only one row holds.
        field = self.field
        buckets = self._buckets
        setdefault = buckets.setdefault
        plain = _PLAIN
        for key, row in items:
            form = row.get(field)
            if type(form) not in plain:
                form = hash_key(form)
                if form is NO_KEY:
                    self._odd.add(key)
                    continue
            entry = setdefault(form, key)
            if entry is not key:
                if type(entry) is set:
                    entry.add(key)
                else:
                    buckets[form] = {entry, key}

    # The row-level calls the engine makes per write, each one call deep (`insert` and
    # `delete` inlined): they are most of what an index adds to a write.

    def add(self, key: Any, row: Record) -> None:
        # `insert`'s body inlined: every indexed write comes here, one call fewer.
        form = row.get(self.field)
        if type(form) not in _PLAIN:
            form = hash_key(form)
            if form is NO_KEY:
                self._odd.add(key)
                return
        buckets = self._buckets
        entry = buckets.setdefault(form, key)
        if entry is not key:
            if type(entry) is set:
                entry.add(key)
            elif entry != key:
                buckets[form] = {entry, key}

    def insert(self, pk: Any, value: Any) -> None:
        form = value if type(value) in _PLAIN else hash_key(value)
        if form is NO_KEY:
            self._odd.add(pk)
            return
        buckets = self._buckets
        entry = buckets.setdefault(form, pk)
        if entry is not pk:
            if type(entry) is set:
                entry.add(pk)
            elif entry != pk:
                buckets[form] = {entry, pk}

    def delete(self, pk: Any, value: Any) -> None:
        form = value if type(value) in _PLAIN else hash_key(value)
        if form is NO_KEY:
            self._odd.discard(pk)
            return
        buckets = self._buckets
        entry = buckets.get(form, _MISSING)
        if type(entry) is set:
            entry.discard(pk)
            if len(entry) <= 1:
                if entry:
                    buckets[form] = next(iter(entry))
                else:
                    del buckets[form]
        elif entry is not _MISSING and entry == pk:
            del buckets[form]

    def update(self, pk: Any, old_value: Any, new_value: Any) -> None:
        self.delete(pk, old_value)
        self.insert(pk, new_value)

    def search(self, value: Any) -> set[Any]:
        return self._found(self.equal(value), "the value", value)

    def equal(self, value: Any) -> AbstractSet[Any] | None:
        form = value if type(value) in _PLAIN else hash_key(value)
        if form is NO_KEY:
            return None
        entry = self._buckets.get(form, _MISSING)
        if type(entry) is set:
            found: AbstractSet[Any] = entry
        elif entry is _MISSING:
            found = EMPTY
        else:
            found = {entry}
        return found | self._odd if self._odd else found

"""`HashIndex`: canonical value (`dictdb.index.base.hash_key`) → keys; answers equality."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from types import MappingProxyType
from typing import Any

from dictdb.index.base import EMPTY, NO_KEY, Index, hash_key


class HashIndex(Index):
    """Equality index: canonical value (`hash_key`) → keys. Answers ``==``, `is_in`,
    `is_null`."""

    __slots__ = ("_buckets", "_odd")
    index_type = "hash"

    def __init__(self, field: str = "") -> None:
        super().__init__(field)
        self._buckets: dict[Any, set[Any]] = {}
        # Keys of rows whose value has no canonical form: impossible for rows that passed
        # the value domain, kept so that such a row could only be over-reported, never lost.
        self._odd: set[Any] = set()

    @property
    def index(self) -> Mapping[Any, AbstractSet[Any]]:
        """Read-only view canonical value → keys (the reference's ``index`` dict).

        A scalar is its own canonical value; see `hash_key` for lists and dicts.
        """
        return MappingProxyType(self._buckets)

    def insert(self, pk: Any, value: Any) -> None:
        form = hash_key(value)
        if form is NO_KEY:
            self._odd.add(pk)
            return
        bucket = self._buckets.get(form)
        if bucket is None:
            self._buckets[form] = {pk}
        else:
            bucket.add(pk)

    def delete(self, pk: Any, value: Any) -> None:
        form = hash_key(value)
        if form is NO_KEY:
            self._odd.discard(pk)
            return
        bucket = self._buckets.get(form)
        if bucket is None:
            return
        bucket.discard(pk)
        if not bucket:
            del self._buckets[form]

    def update(self, pk: Any, old_value: Any, new_value: Any) -> None:
        self.delete(pk, old_value)
        self.insert(pk, new_value)

    def search(self, value: Any) -> set[Any]:
        return self._found(self.equal(value), "the value", value)

    def equal(self, value: Any) -> AbstractSet[Any] | None:
        form = hash_key(value)
        if form is NO_KEY:
            return None
        found = self._buckets.get(form, EMPTY)
        return found | self._odd if self._odd else found

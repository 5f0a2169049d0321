"""The base of every index: the value forms indexes share, and the `Index` interface.

`Index` has two faces. The engine maintains an index row by row (`Index.add`,
`Index.remove`, `Index.replace`) and the planner asks it for candidate keys
(`Index.equal`, `Index.compare`, `Index.between`, `Index.prefix`; None means "scan").
The reference's value-level interface (``insert(pk, value)``, ``update``, ``delete``,
``search``, ``search_lt``...) is the primitive the row-level one is built on, so both stay
one implementation; `IndexBase` is the reference's name for the class.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import uuid
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from typing import Any, Final

from dictdb._values import Record

# Scalar types whose equality, hashing and ordering are Python's own and well-behaved.
SCALARS: Final = frozenset(
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


def is_nan(value: Any) -> bool:
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
    if t in SCALARS:
        return NO_KEY if is_nan(value) else value
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


def orderable(value: Any) -> bool:
    """Whether a range bound can be located in `sort_key` order (a non-NaN scalar)."""
    return type(value) in SCALARS and value is not None and not is_nan(value)


EMPTY: Final[frozenset[Any]] = frozenset()


class Index:
    """An index on one field: maintenance, and lookups returning candidate key sets.

    A lookup returns None when it cannot answer exactly (the planner then scans); the sets it
    returns belong to the index and must not be modified. The ``search*`` methods (the
    reference's) return sets of their own.

    Args:
        field: the indexed field; may be left empty for an index fed values directly.
    """

    __slots__ = ("field",)
    index_type: str = ""
    #: Whether `search_lt` and the other range searches are answered (the reference's flag).
    supports_range: bool = False

    def __init__(self, field: str = "") -> None:
        self.field = field

    # -- the value-level interface (the reference's) -----------------------------------------

    def insert(self, pk: Any, value: Any) -> None:
        """Index key *pk* under *value*."""
        raise NotImplementedError

    def delete(self, pk: Any, value: Any) -> None:
        """Forget key *pk* under *value* (nothing happens if it is not there)."""
        raise NotImplementedError

    def update(self, pk: Any, old_value: Any, new_value: Any) -> None:
        """Move key *pk* from *old_value* to *new_value*."""
        raise NotImplementedError

    def search(self, value: Any) -> set[Any]:
        """The keys indexed under a value equal to *value*.

        Raises:
            TypeError: the index cannot look *value* up exactly (outside the value domain).
        """
        raise NotImplementedError

    def search_multi(self, values: Iterable[Any]) -> set[Any]:
        """The keys indexed under any of *values*."""
        found: set[Any] = set()
        for value in values:
            found |= self.search(value)
        return found

    def search_lt(self, value: Any) -> set[Any]:
        """The keys indexed under a value below *value* (sorted indexes only)."""
        raise NotImplementedError

    def search_lte(self, value: Any) -> set[Any]:
        """The keys indexed under a value at or below *value* (sorted indexes only)."""
        raise NotImplementedError

    def search_gt(self, value: Any) -> set[Any]:
        """The keys indexed under a value above *value* (sorted indexes only)."""
        raise NotImplementedError

    def search_gte(self, value: Any) -> set[Any]:
        """The keys indexed under a value at or above *value* (sorted indexes only)."""
        raise NotImplementedError

    # -- the row-level interface (the engine's) ---------------------------------------------

    def build(self, items: Iterable[tuple[Any, Record]]) -> None:
        """Index every (key, row) of a table (the index starts empty)."""
        for key, row in items:
            self.add(key, row)

    def add(self, key: Any, row: Record) -> None:
        """Index a new row; a row lacking the field is indexed under None."""
        self.insert(key, row.get(self.field))

    def remove(self, key: Any, row: Record) -> None:
        """Forget a row that is being deleted."""
        self.delete(key, row.get(self.field))

    def replace(self, key: Any, old: Record, new: Record) -> None:
        """Move a row whose image changes from *old* to *new*."""
        field = self.field
        before, after = old.get(field), new.get(field)
        if before is after:  # the common case: an update that does not touch this field
            return
        self.update(key, before, after)

    @property
    def exact(self) -> bool:
        """Whether the sets `equal`, `compare` and `between` return hold only keys of rows
        that match (not just every one that does), so a caller may skip testing them."""
        return False

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

    def _found(self, found: AbstractSet[Any] | None, what: str, value: Any) -> set[Any]:
        if found is None:
            raise TypeError(
                f"a {self.index_type} index cannot look up {what} {value!r}: "
                "not a value of the domain it orders"
            )
        return set(found)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} on {self.field!r}>"


#: The reference's name for the base class.
IndexBase = Index

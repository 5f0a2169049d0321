"""Index types by name: `make_index`, and the reference's `create`."""

from __future__ import annotations

from typing import Final

from dictdb.index.base import Index
from dictdb.index.hash import HashIndex
from dictdb.index.sorted import SortedIndex

#: The index types `make_index` knows, by lower-case name.
INDEX_TYPES: Final = ("hash", "sorted")


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


def create(index_type: str) -> Index:
    """A new empty index of *index_type*, fed values directly (the reference's form).

    Raises:
        ValueError: an unknown index type.
    """
    return make_index("", index_type)

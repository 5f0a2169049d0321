"""Secondary indexes (one field each) and the planner that narrows a query with them.

Indexes never change a result, only how many rows are tested: the planner returns a set of
candidate keys that contains every matching row, and the table tests each candidate with the
full predicate. So an index may over-approximate, never miss. How each index keeps that
promise over the whole value domain:

- **Missing is None.** A row lacking the field is indexed under None, as the DSL reads it, so
  ``f == None`` finds rows holding None *and* rows without the field, as a scan does.
- **HashIndex**: canonical value → keys (the one key itself while a single row holds the
  value, a set from the second on). Scalars are their own canonical form (Python
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
never uses an index. Anything else is a scan. `matching_rows` runs a read's whole match and
returns the stored rows, skipping the test of each candidate where the index's answer is
exact (`Index.exact`: a comparison or between in a sorted index, an equality in a hash index).

Indexes are not persisted, as in the reference: a database loaded from a snapshot or
restored from a backup directory starts without indexes (create them again after loading);
within one database they are maintained by every operation applied through
`dictdb.database.DictDB._apply`: live writes, replay, and delta application alike.

Modules: `base` (the value forms every index shares and the `Index` base class, the
reference's ``IndexBase``), `hash` (`HashIndex`), `sorted` (`SortedIndex`), `registry`
(`make_index`, and the reference's ``create``), `planner` (`candidates`, `matching_rows`).
"""

from dictdb.index.base import NO_KEY, Index, IndexBase, hash_key
from dictdb.index.hash import HashIndex
from dictdb.index.planner import candidates, matching_rows
from dictdb.index.registry import INDEX_TYPES, create, make_index
from dictdb.index.sorted import SortedIndex

__all__ = [
    "INDEX_TYPES",
    "NO_KEY",
    "HashIndex",
    "Index",
    "IndexBase",
    "SortedIndex",
    "candidates",
    "create",
    "hash_key",
    "make_index",
    "matching_rows",
]

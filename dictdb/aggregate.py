"""Aggregations over the rows a query matched: `Count`, `Sum`, `Avg`, `Min`, `Max`.

Semantics (the reference's, with ordering made total):

- ``Count()`` counts rows; ``Count(field)`` counts rows whose field is present and not None.
- ``Sum(field)`` / ``Avg(field)``: over the non-None values; None when there are none. The
  values must add up (numbers; ``bool`` counts as int, as in Python); anything else raises
  `TypeError` naming the aggregate.
- ``Min(field)`` / ``Max(field)``: over the non-None values, in the order ``order_by`` uses
  (`dictdb._select.sort_key`), so values of different kinds never raise; None when there are
  none.
- ``group_by``: rows group by equal values (Python equality, so ``1``, ``1.0`` and ``True``
  are one group, and lists and dicts group by content); a row lacking a group field groups
  under None. Groups come in first-seen order, each a dict of its group fields (the first
  row's values) followed by the aggregates.

Results are owned by the caller (lists and dicts are copies).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from dictdb._select import sort_key
from dictdb._values import Record, copy_value
from dictdb.index import hash_key


@attrs.frozen
class Agg:
    """An aggregate over one field of a group of rows (the reference's base class)."""

    field: str | None = None

    def extract_values(self, records: Iterable[Record]) -> list[Any]:
        """The values this aggregate reads: the field of each row (None when absent)."""
        field = self.field
        if field is None:
            return [1 for _ in records]
        return [r.get(field) for r in records]

    def compute(self, values: list[Any]) -> Any:
        """The aggregate of *values* (as returned by `extract_values`)."""
        raise NotImplementedError


@attrs.frozen
class Count(Agg):
    """``Count()``: rows; ``Count(field)``: rows whose *field* is not None."""

    def compute(self, values: list[Any]) -> int:
        if self.field is None:
            return len(values)
        return sum(1 for v in values if v is not None)


def _present(values: list[Any]) -> list[Any]:
    return [v for v in values if v is not None]


def _total(name: str, values: list[Any]) -> Any:
    try:
        return sum(values)
    except TypeError as exc:
        raise TypeError(f"{name}: cannot add the values ({exc})") from None


@attrs.frozen
class Sum(Agg):
    """The sum of the non-None values of *field* (None if there are none)."""

    field: str

    def compute(self, values: list[Any]) -> Any:
        present = _present(values)
        return _total(f"Sum({self.field!r})", present) if present else None


@attrs.frozen
class Avg(Agg):
    """The mean of the non-None values of *field* (None if there are none)."""

    field: str

    def compute(self, values: list[Any]) -> Any:
        present = _present(values)
        if not present:
            return None
        return _total(f"Avg({self.field!r})", present) / len(present)


@attrs.frozen
class Min(Agg):
    """The smallest non-None value of *field*, ordered as ``order_by`` orders."""

    field: str

    def compute(self, values: list[Any]) -> Any:
        present = _present(values)
        return copy_value(min(present, key=sort_key)) if present else None


@attrs.frozen
class Max(Agg):
    """The largest non-None value of *field*, ordered as ``order_by`` orders."""

    field: str

    def compute(self, values: list[Any]) -> Any:
        present = _present(values)
        return copy_value(max(present, key=sort_key)) if present else None


def check_aggregations(aggregations: Mapping[str, Any]) -> None:
    """Refuse anything but `Agg` instances, before any row is read.

    Raises:
        TypeError: a value is not an `Agg`.
    """
    for name, agg in aggregations.items():
        if not isinstance(agg, Agg):
            raise TypeError(
                f"Expected Agg instance for aggregation {name!r}: it must be Count, Sum, Avg, "
                f"Min or Max, got {agg!r}"
            )


def _group_fields(group_by: str | Sequence[str]) -> list[str]:
    fields = [group_by] if isinstance(group_by, str) else list(group_by)
    if not fields or not all(type(f) is str for f in fields):
        raise TypeError(f"group_by must be a field name or a list of them, got {group_by!r}")
    return fields


def compute_aggregations(rows: Iterable[Record], aggregations: Mapping[str, Agg]) -> dict[str, Any]:
    """Each aggregate over all of *rows*: result name → value (the reference's function)."""
    rows = list(rows)
    return {name: agg.compute(agg.extract_values(rows)) for name, agg in aggregations.items()}


def group_and_aggregate(
    rows: Iterable[Record], group_by: str | Sequence[str], aggregations: Mapping[str, Agg]
) -> list[Record]:
    """One dict per group of *rows*: its group fields, then its aggregates (see above).

    Raises:
        TypeError: *group_by* is not a field name or a non-empty list of them.
    """
    fields = _group_fields(group_by)
    groups: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[Record]]] = {}
    for row in rows:
        values = tuple(row.get(f) for f in fields)
        marker = tuple(map(hash_key, values))
        group = groups.get(marker)
        if group is None:
            groups[marker] = (values, [row])
        else:
            group[1].append(row)
    out: list[Record] = []
    for values, members in groups.values():
        record = {f: copy_value(v) for f, v in zip(fields, values, strict=True)}
        record.update(compute_aggregations(members, aggregations))
        out.append(record)
    return out


def run_aggregate(
    rows: list[Record],
    group_by: str | Sequence[str] | None,
    aggregations: Mapping[str, Agg],
) -> dict[str, Any] | list[Record]:
    """Aggregate matched stored rows, as a whole or per group (see the module docstring)."""
    if group_by is None:
        return compute_aggregations(rows, aggregations)
    return group_and_aggregate(rows, group_by, aggregations)

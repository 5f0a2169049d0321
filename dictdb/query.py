"""The query DSL as an explicit expression tree.

``table.age >= 18`` builds a `Compare` node; ``&``, ``|`` and ``~`` (or `And`, `Or`, `Not`)
combine nodes. Because predicates are data, not opaque lambdas, the planner can see which parts
of a condition an index may answer. Each node compiles once into a plain function of a row.

Semantics (documented, identical through scans and indexes):

- a missing field reads as None, so ``f == None`` matches rows where ``f`` is None or absent;
- ordering comparisons (``<``, ``<=``, ``>``, ``>=``, `Field.between`) never match None, and
  never match a value that cannot be ordered against the operand (``"a" < 3`` is simply false);
- `PredicateExpr` wraps any callable ``row -> bool`` (opaque: never index-assisted).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, cast

from dictdb.values import Record, copy_row

RowFn = Callable[[Mapping[str, Any]], bool]

_ORDERING: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
COMPARISONS: Final = frozenset({"==", "!=", *_ORDERING})


class Predicate:
    """A condition on one row; combine with ``&``, ``|``, ``~``."""

    __slots__ = ("_fn",)
    _fn: RowFn

    def _compile(self) -> RowFn:
        raise NotImplementedError

    @property
    def fn(self) -> RowFn:
        """The compiled test, ``row -> bool`` (built once)."""
        try:
            fn: RowFn = self._fn
        except AttributeError:
            fn = self._fn = self._compile()
        return fn

    def __call__(self, row: Mapping[str, Any]) -> bool:
        return self.fn(row)

    def __and__(self, other: Predicate) -> And:
        return And(self, other)

    def __or__(self, other: Predicate) -> Or:
        return Or(self, other)

    def __invert__(self) -> Not:
        return Not(self)

    def __bool__(self) -> bool:
        raise TypeError(
            "a query condition has no truth value: combine conditions with &, | and ~ "
            "(not and/or/not), and pass them as where=..."
        )


class Compare(Predicate):
    """``field <op> value`` with op one of ``== != < <= > >=``."""

    __slots__ = ("field", "op", "value")

    def __init__(self, field: str, op: str, value: Any) -> None:
        if op not in COMPARISONS:
            raise ValueError(f"unknown comparison {op!r}")
        self.field = field
        self.op = op
        self.value = value

    def _compile(self) -> RowFn:
        field, value = self.field, self.value
        if self.op == "==":
            return lambda row: row.get(field) == value
        if self.op == "!=":
            return lambda row: row.get(field) != value
        cmp = _ORDERING[self.op]
        if value is None:
            return lambda row: False

        def ordered(row: Mapping[str, Any]) -> bool:
            v = row.get(field)
            if v is None:
                return False
            try:
                return bool(cmp(v, value))
            except TypeError:
                return False

        return ordered

    def __repr__(self) -> str:
        return f"({self.field} {self.op} {self.value!r})"


class IsIn(Predicate):
    """``field`` equals one of *values*."""

    __slots__ = ("field", "values")

    def __init__(self, field: str, values: Iterable[Any]) -> None:
        self.field = field
        self.values = tuple(values)

    def _compile(self) -> RowFn:
        field, values = self.field, self.values
        try:
            lookup = frozenset(values)
        except TypeError:  # unhashable members: compare one by one
            return lambda row: row.get(field) in values

        def member(row: Mapping[str, Any]) -> bool:
            v = row.get(field)
            try:
                return v in lookup
            except TypeError:
                return v in values

        return member

    def __repr__(self) -> str:
        return f"({self.field} in {self.values!r})"


class Between(Predicate):
    """``low <= field <= high`` (never matches None or unorderable values)."""

    __slots__ = ("field", "high", "low")

    def __init__(self, field: str, low: Any, high: Any) -> None:
        self.field = field
        self.low = low
        self.high = high

    def _compile(self) -> RowFn:
        return And(Compare(self.field, ">=", self.low), Compare(self.field, "<=", self.high)).fn

    def __repr__(self) -> str:
        return f"({self.field} between {self.low!r} and {self.high!r})"


class And(Predicate):
    """All operands hold."""

    __slots__ = ("operands",)

    def __init__(self, *operands: Predicate) -> None:
        self.operands = _check_operands("And", operands)

    def _compile(self) -> RowFn:
        fns = tuple(p.fn for p in self.operands)
        if len(fns) == 2:
            a, b = fns
            return lambda row: a(row) and b(row)
        return lambda row: all(f(row) for f in fns)

    def __repr__(self) -> str:
        return "(" + " & ".join(map(repr, self.operands)) + ")"


class Or(Predicate):
    """At least one operand holds."""

    __slots__ = ("operands",)

    def __init__(self, *operands: Predicate) -> None:
        self.operands = _check_operands("Or", operands)

    def _compile(self) -> RowFn:
        fns = tuple(p.fn for p in self.operands)
        if len(fns) == 2:
            a, b = fns
            return lambda row: a(row) or b(row)
        return lambda row: any(f(row) for f in fns)

    def __repr__(self) -> str:
        return "(" + " | ".join(map(repr, self.operands)) + ")"


class Not(Predicate):
    """The operand does not hold."""

    __slots__ = ("operand",)

    def __init__(self, operand: Predicate) -> None:
        self.operand = as_predicate(operand)

    def _compile(self) -> RowFn:
        fn = self.operand.fn
        return lambda row: not fn(row)

    def __repr__(self) -> str:
        return f"~{self.operand!r}"


class PredicateExpr(Predicate):
    """Any callable ``row -> bool`` used as a condition (opaque to the planner).

    The callable receives a copy of the stored row, so it cannot change stored state.
    """

    __slots__ = ("func",)

    def __init__(self, func: Callable[[Mapping[str, Any]], Any]) -> None:
        if not callable(func):
            raise TypeError(f"PredicateExpr needs a callable, got {type(func).__name__}")
        self.func = func

    def _compile(self) -> RowFn:
        func = self.func
        return lambda row: bool(func(copy_row(cast(Record, row))))

    def __repr__(self) -> str:
        return f"PredicateExpr({self.func!r})"


class Condition(Predicate):
    """The reference's optional wrapper around a condition: ``Condition(t.age > 3)``."""

    __slots__ = ("condition",)

    def __init__(self, condition: Predicate) -> None:
        self.condition = as_predicate(condition)

    def _compile(self) -> RowFn:
        return self.condition.fn

    def __repr__(self) -> str:
        return f"Condition({self.condition!r})"


def _check_operands(name: str, operands: tuple[Any, ...]) -> tuple[Predicate, ...]:
    if not operands:
        raise ValueError(f"{name}() needs at least one condition")
    return tuple(as_predicate(p) for p in operands)


def as_predicate(where: Any) -> Predicate:
    """Accept a `Predicate` or a plain callable; refuse anything else.

    Raises:
        TypeError: *where* is neither (e.g. a bool from comparing a non-field attribute).
    """
    if isinstance(where, Predicate):
        return where
    if callable(where) and not isinstance(where, type):
        return PredicateExpr(where)
    raise TypeError(
        f"where must be a condition such as table.field == value, got {type(where).__name__} "
        f"{where!r}; for a column named like a Table member use table['name']"
    )


class Field:
    """A column in the DSL: ``Field("age") >= 18``.

    ``Field(table, "count")`` (the reference's form) is accepted too; ``table["count"]`` and,
    for names that are not Table members, ``table.count`` give the same.
    """

    __slots__ = ("name",)

    def __init__(self, table_or_name: Any, name: str | None = None) -> None:
        self.name = table_or_name if name is None else name
        if type(self.name) is not str:
            raise TypeError(f"a field name must be str, got {self.name!r}")

    def __eq__(self, value: object) -> Compare:  # type: ignore[override]
        return Compare(self.name, "==", value)

    def __ne__(self, value: object) -> Compare:  # type: ignore[override]
        return Compare(self.name, "!=", value)

    def __lt__(self, value: Any) -> Compare:
        return Compare(self.name, "<", value)

    def __le__(self, value: Any) -> Compare:
        return Compare(self.name, "<=", value)

    def __gt__(self, value: Any) -> Compare:
        return Compare(self.name, ">", value)

    def __ge__(self, value: Any) -> Compare:
        return Compare(self.name, ">=", value)

    __hash__ = None  # type: ignore[assignment]

    def is_in(self, values: Iterable[Any]) -> IsIn:
        """The field equals one of *values*."""
        return IsIn(self.name, values)

    def between(self, low: Any, high: Any) -> Between:
        """``low <= field <= high``."""
        return Between(self.name, low, high)

    def is_null(self) -> Compare:
        """The field is None or absent."""
        return Compare(self.name, "==", None)

    def is_not_null(self) -> Compare:
        """The field is present and not None."""
        return Compare(self.name, "!=", None)

    def __repr__(self) -> str:
        return f"Field({self.name!r})"


def equality_on(pred: Predicate, field: str) -> tuple[bool, Any]:
    """Find a top-level conjunct ``field == value`` in *pred*.

    Returns:
        (True, value) when every matching row must have ``field == value``; (False, None)
        otherwise. Used to answer primary-key equality by lookup.
    """
    while isinstance(pred, Condition):
        pred = pred.condition
    if isinstance(pred, Compare):
        if pred.op == "==" and pred.field == field and pred.value is not None:
            return True, pred.value
        return False, None
    if isinstance(pred, And):
        for operand in pred.operands:
            found, value = equality_on(operand, field)
            if found:
                return True, value
    return False, None

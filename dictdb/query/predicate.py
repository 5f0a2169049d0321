"""The query DSL as an explicit expression tree.

``table.age >= 18`` builds a `Compare` node; ``&``, ``|`` and ``~`` (or `And`, `Or`, `Not`)
combine nodes. Because predicates are data, not opaque lambdas, the planner
(`dictdb.index.planner.candidates`) can see which parts of a condition an index may answer.
Each node compiles once into a plain function of a row.

Operators (`Field` methods; ``v`` is the row's value, a missing field reads as None):

- ``==``, ``!=``: Python equality (``1 == 1.0 == True``; ``[1] == [1.0]``); ``f == None`` (or
  `Field.is_null`) matches rows where ``f`` is None or absent, ``f != None``
  (`Field.is_not_null`) the others.
- ``<``, ``<=``, ``>``, ``>=``, `Field.between` (``low <= v <= high``): never match None, and
  never match a value that cannot be ordered against the operand (``"a" < 3`` is simply false,
  not an error).
- `Field.is_in`: ``v`` equals one of the values.
- `Field.like` / `Field.ilike`: SQL LIKE on str values (``%`` any run, ``_`` one character,
  *escape* makes the next character literal), anchored at both ends, case-insensitive for
  ``ilike``; non-str values never match.
- `Field.contains`: ``item in v`` (substring of a str, member of a list, key of a dict,
  byte of a bytes); False when ``v`` is None or cannot contain *item*.
- `Field.startswith` / `Field.endswith`: str values only, case-sensitive.
- `Field.iequals`, `Field.icontains`, `Field.istartswith`, `Field.iendswith`: str values only,
  compared after ``str.lower()`` on both sides.
- `PredicateExpr` wraps any callable ``row -> bool`` (it receives a copy of the row; opaque,
  so never index-assisted); a plain callable passed as ``where`` is wrapped the same way.
- `Condition` is the reference's optional wrapper: ``Condition(t.age > 3)`` equals
  ``t.age > 3`` everywhere.

Results never depend on indexes: the planner only narrows the rows to test, and every
candidate row is tested with the full predicate.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, cast

from dictdb._values import Record, copy_row

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
    _fn: RowFn | None

    def _compile(self) -> RowFn:
        raise NotImplementedError

    @property
    def fn(self) -> RowFn:
        """The compiled test, ``row -> bool`` (built once)."""
        # Each node sets ``_fn = None`` when made: a query builds a new node, and a slot
        # read that raises AttributeError cost more than the compilation (~0.8 us).
        try:
            fn: RowFn | None = self._fn
        except AttributeError:  # a subclass that does not set it
            fn = None
        if fn is None:
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
        self._fn = None
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
        if value is None:
            return lambda row: False
        if type(value) in _BOOL_ORDERED:
            return _ordered_scalar(field, self.op, value)
        cmp = _ORDERING[self.op]

        def ordered(row: Mapping[str, Any]) -> bool:
            v = row.get(field)
            if v is None:
                return False
            try:
                return bool(cmp(v, value))
            except (TypeError, ArithmeticError):  # unorderable, or a Decimal NaN operand
                return False

        return ordered

    def __repr__(self) -> str:
        return f"({self.field} {self.op} {self.value!r})"


#: Operand types whose ordering comparisons with any domain value give a bool or raise
#: (TypeError, or InvalidOperation for a NaN against a Decimal): the test needs no ``bool()``
#: and no operator call.
_BOOL_ORDERED: Final = frozenset({bool, int, float, str, bytes})


def _ordered_scalar(field: str, op: str, value: Any) -> RowFn:
    # The general test of `Compare._compile`, unrolled per operator.
    if op == "<":

        def lt(row: Mapping[str, Any]) -> bool:
            v = row.get(field)
            try:
                return v is not None and v < value
            except (TypeError, ArithmeticError):
                return False

        return lt
    if op == "<=":

        def le(row: Mapping[str, Any]) -> bool:
            v = row.get(field)
            try:
                return v is not None and v <= value
            except (TypeError, ArithmeticError):
                return False

        return le
    if op == ">":

        def gt(row: Mapping[str, Any]) -> bool:
            v = row.get(field)
            try:
                return v is not None and v > value
            except (TypeError, ArithmeticError):
                return False

        return gt

    def ge(row: Mapping[str, Any]) -> bool:
        v = row.get(field)
        try:
            return v is not None and v >= value
        except (TypeError, ArithmeticError):
            return False

    return ge


class IsIn(Predicate):
    """``field`` equals one of *values*."""

    __slots__ = ("field", "values")

    def __init__(self, field: str, values: Iterable[Any]) -> None:
        self._fn = None
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
        self._fn = None
        self.field = field
        self.low = low
        self.high = high

    def _compile(self) -> RowFn:
        return And(Compare(self.field, ">=", self.low), Compare(self.field, "<=", self.high)).fn

    def __repr__(self) -> str:
        return f"({self.field} between {self.low!r} and {self.high!r})"


class Like(Predicate):
    """SQL ``LIKE`` on str values: ``%`` any run, ``_`` one character, *escape* quotes.

    Attributes:
        prefix: the literal text every match starts with ("" if none); only set for
            case-sensitive patterns, where a sorted index can answer it as a range.
    """

    __slots__ = ("escape", "field", "ignore_case", "pattern", "prefix", "regex")

    def __init__(
        self, field: str, pattern: str, escape: str | None = None, *, ignore_case: bool = False
    ) -> None:
        self._fn = None
        if type(pattern) is not str:
            raise TypeError(f"a LIKE pattern must be a str, got {pattern!r}")
        if escape is not None and (type(escape) is not str or len(escape) != 1):
            raise ValueError(f"a LIKE escape must be one character, got {escape!r}")
        self.field = field
        self.pattern = pattern
        self.escape = escape
        self.ignore_case = ignore_case
        parts: list[str] = []
        prefix: list[str] = []
        literal = True  # still inside the leading run of literal characters
        i = 0
        while i < len(pattern):
            char = pattern[i]
            # As in the reference, an escape as the last character stands for itself.
            if char == escape and i + 1 < len(pattern):
                i += 1
                char = pattern[i]
            elif char in "%_":
                parts.append(".*" if char == "%" else ".")
                literal = False
                i += 1
                continue
            parts.append(re.escape(char))
            if literal:
                prefix.append(char)
            i += 1
        flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
        self.regex = re.compile("".join(parts), flags)
        self.prefix = "" if ignore_case else "".join(prefix)

    def _compile(self) -> RowFn:
        field, match = self.field, self.regex.fullmatch

        def like(row: Mapping[str, Any]) -> bool:
            v = row.get(field)
            return type(v) is str and match(v) is not None

        return like

    def __repr__(self) -> str:
        op = "ilike" if self.ignore_case else "like"
        escape = "" if self.escape is None else f" escape {self.escape!r}"
        return f"({self.field} {op} {self.pattern!r}{escape})"


class Contains(Predicate):
    """``item in v``: a substring of a str, a member of a list, a key of a dict."""

    __slots__ = ("field", "item")

    def __init__(self, field: str, item: Any) -> None:
        self._fn = None
        self.field = field
        self.item = item

    def _compile(self) -> RowFn:
        field, item = self.field, self.item

        def contains(row: Mapping[str, Any]) -> bool:
            v = row.get(field)
            if v is None:
                return False
            try:
                return item in v
            except (TypeError, ValueError):  # not a container, or cannot hold item: 1 in "a",
                return False  # 300 in b"a"

        return contains

    def __repr__(self) -> str:
        return f"({self.field} contains {self.item!r})"


#: `TextMatch` kinds.
TEXT_KINDS: Final = frozenset({"equals", "contains", "startswith", "endswith"})


class TextMatch(Predicate):
    """A test on str values: equals, contains, startswith or endswith, maybe ignoring case.

    Case-insensitive tests compare ``v.lower()`` with ``text.lower()``; non-str values never
    match. Case-sensitive ``startswith``/``endswith`` also take a tuple of str, as
    `str.startswith` does.
    """

    __slots__ = ("field", "ignore_case", "kind", "text")

    def __init__(self, field: str, kind: str, text: Any, *, ignore_case: bool = False) -> None:
        self._fn = None
        if kind not in TEXT_KINDS:
            raise ValueError(f"unknown text test {kind!r}")
        tuple_ok = not ignore_case and kind in ("startswith", "endswith")
        if not (
            type(text) is str
            or (tuple_ok and type(text) is tuple and all(type(t) is str for t in text))
        ):
            raise TypeError(f"{'i' if ignore_case else ''}{kind} needs a str, got {text!r}")
        self.field = field
        self.kind = kind
        self.text = text
        self.ignore_case = ignore_case

    def _compile(self) -> RowFn:
        field, kind, ignore_case = self.field, self.kind, self.ignore_case
        text: Any = self.text
        if ignore_case:
            text = text.lower()
        if kind == "equals":
            test: Callable[[str], bool] = text.__eq__
        elif kind == "contains":
            test = lambda v: text in v  # noqa: E731
        else:
            test = operator.methodcaller(kind, text)

        def match(row: Mapping[str, Any]) -> bool:
            v = row.get(field)
            return type(v) is str and test(v.lower() if ignore_case else v)

        return match

    def __repr__(self) -> str:
        return f"({self.field} {'i' if self.ignore_case else ''}{self.kind} {self.text!r})"


class And(Predicate):
    """All operands hold."""

    __slots__ = ("operands",)

    def __init__(self, *operands: Predicate) -> None:
        self._fn = None
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
        self._fn = None
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
        self._fn = None
        self.operand = _operand("Not", operand)

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
        self._fn = None
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
        self._fn = None
        self.condition = as_predicate(condition)

    def _compile(self) -> RowFn:
        return self.condition.fn

    def __repr__(self) -> str:
        return f"Condition({self.condition!r})"


def _check_operands(name: str, operands: tuple[Any, ...]) -> tuple[Predicate, ...]:
    if len(operands) < 2:
        raise ValueError(
            f"{name}() requires at least 2 operands, got {len(operands)}; "
            "a single condition needs no combinator"
        )
    return tuple(_operand(name, p) for p in operands)


def _operand(name: str, operand: Any) -> Predicate:
    if isinstance(operand, Predicate):
        return operand
    if callable(operand) and not isinstance(operand, type):
        return PredicateExpr(operand)
    raise TypeError(
        f"Expected PredicateExpr or Condition (or a callable row -> bool) as an operand of "
        f"{name}(), got {type(operand).__name__} {operand!r}"
    )


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
        f"where must be a Condition or PredicateExpr such as table.field == value (or a "
        f"callable row -> bool), got {type(where).__name__} {where!r}; for a column named "
        "like a Table member use table['name']"
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

    def like(self, pattern: str, escape: str | None = None) -> Like:
        """SQL LIKE (case-sensitive): ``%`` any run, ``_`` one character.

        Raises:
            TypeError: *pattern* is not a str.
            ValueError: *escape* is not one character.
        """
        return Like(self.name, pattern, escape)

    def ilike(self, pattern: str, escape: str | None = None) -> Like:
        """SQL LIKE ignoring case."""
        return Like(self.name, pattern, escape, ignore_case=True)

    def contains(self, item: Any) -> Contains:
        """``item in value``: substring, list member or dict key."""
        return Contains(self.name, item)

    def startswith(self, prefix: str | tuple[str, ...]) -> TextMatch:
        """A str value starting with *prefix* (or one of a tuple of prefixes)."""
        return TextMatch(self.name, "startswith", prefix)

    def endswith(self, suffix: str | tuple[str, ...]) -> TextMatch:
        """A str value ending with *suffix* (or one of a tuple of suffixes)."""
        return TextMatch(self.name, "endswith", suffix)

    def iequals(self, text: str) -> TextMatch:
        """A str value equal to *text*, ignoring case."""
        return TextMatch(self.name, "equals", text, ignore_case=True)

    def icontains(self, text: str) -> TextMatch:
        """A str value containing *text*, ignoring case."""
        return TextMatch(self.name, "contains", text, ignore_case=True)

    def istartswith(self, prefix: str) -> TextMatch:
        """A str value starting with *prefix*, ignoring case."""
        return TextMatch(self.name, "startswith", prefix, ignore_case=True)

    def iendswith(self, suffix: str) -> TextMatch:
        """A str value ending with *suffix*, ignoring case."""
        return TextMatch(self.name, "endswith", suffix, ignore_case=True)

    def is_null(self) -> Compare:
        """The field is None or absent."""
        return Compare(self.name, "==", None)

    def is_not_null(self) -> Compare:
        """The field is present and not None."""
        return Compare(self.name, "!=", None)

    def __repr__(self) -> str:
        return f"Field({self.name!r})"

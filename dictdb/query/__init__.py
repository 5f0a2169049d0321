"""The query layer: conditions (`predicate`) and, at the reference's path, `aggregate`.

`dictdb.query.predicate` holds the condition tree (`Field`, `Compare`, `And`...); this
package re-exports its names, so ``from dictdb.query import Field`` keeps working.
`dictdb.query.aggregate` is the reference's path for the aggregates of `dictdb.aggregate`.
"""

from dictdb.query.predicate import (
    COMPARISONS,
    TEXT_KINDS,
    And,
    Between,
    Compare,
    Condition,
    Contains,
    Field,
    IsIn,
    Like,
    Not,
    Or,
    Predicate,
    PredicateExpr,
    RowFn,
    TextMatch,
    as_predicate,
)

__all__ = [
    "COMPARISONS",
    "TEXT_KINDS",
    "And",
    "Between",
    "Compare",
    "Condition",
    "Contains",
    "Field",
    "IsIn",
    "Like",
    "Not",
    "Or",
    "Predicate",
    "PredicateExpr",
    "RowFn",
    "TextMatch",
    "as_predicate",
]

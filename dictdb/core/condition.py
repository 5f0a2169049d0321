"""The reference's module path for conditions: re-exports them from `dictdb.query`."""

from dictdb.query import And, Condition, Not, Or, PredicateExpr

__all__ = ["And", "Condition", "Not", "Or", "PredicateExpr"]

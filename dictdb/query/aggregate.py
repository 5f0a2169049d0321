"""The reference's module path for aggregates: re-exports `dictdb.aggregate`."""

from dictdb.aggregate import (
    Agg,
    Avg,
    Count,
    Max,
    Min,
    Sum,
    compute_aggregations,
    group_and_aggregate,
)

__all__ = [
    "Agg",
    "Avg",
    "Count",
    "Max",
    "Min",
    "Sum",
    "compute_aggregations",
    "group_and_aggregate",
]

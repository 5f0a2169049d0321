"""The reference's module path for its logger: re-exports `dictdb.reference_logging`."""

from dictdb.reference_logging import (
    BoundLogger,
    DictDBFormatter,
    DictDBLogger,
    JSONFormatter,
    SampleDebugFilter,
    configure_logging,
    logger,
)

__all__ = [
    "BoundLogger",
    "DictDBFormatter",
    "DictDBLogger",
    "JSONFormatter",
    "SampleDebugFilter",
    "configure_logging",
    "logger",
]

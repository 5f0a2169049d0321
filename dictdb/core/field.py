"""The reference's module path for `Field`: re-exports `dictdb.query.Field`."""

from dictdb.query import Field

__all__ = ["Field"]

"""The reference's module path for `Table`: re-exports `dictdb.table.Table`."""

from dictdb.table import Table

__all__ = ["Table"]

"""The reference's module path for its type aliases: `Record` and `Schema`."""

from dictdb._values import Record
from dictdb.schema import Schema

__all__ = ["Record", "Schema"]

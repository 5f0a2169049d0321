"""The reference's module path for CSV reading and writing: re-exports `dictdb.csv_io`."""

from dictdb.csv_io import infer_types, read_csv, write_csv

__all__ = ["infer_types", "read_csv", "write_csv"]

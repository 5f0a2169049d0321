"""The history as a Parquet dataset (``export --format parquet``) and SQL over it (``sql``).

``sql OUT "SELECT ..."`` runs DuckDB with the view ``operations`` over the part files the
export's manifest names (and ``base`` when the export has a base dataset), Hive partitioning
giving the ``table`` column (a reserved word in SQL: write ``"table"``). It prints an aligned
table, or one JSON object per line (``--json``), or CSV (``--csv``). An SQL error is a failed
command (exit 1, DuckDB's message on stderr), as sqlite3 does.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as _dt
import decimal
import sys
import uuid
from pathlib import Path
from typing import Any, TextIO

from dictdb.cli._args import EXIT_FINDINGS, EXIT_OK, Add, UsageError, dump, progress

#: The columns of ``operations`` (DuckDB types), for an export that has no part file yet.
_OPERATIONS = (
    ("lsn", "BIGINT"),
    ("ts", "TIMESTAMPTZ"),
    ("key", "VARCHAR"),
    ("key_int", "BIGINT"),
    ("key_json", "VARCHAR"),
    ("kind", "VARCHAR"),
    ("actor", "VARCHAR"),
    ("reason", "VARCHAR"),
    ("meta", "VARCHAR"),
    ("before", "VARCHAR"),
    ("after", "VARCHAR"),
    ("granularity", "VARCHAR"),
    ("source", "VARCHAR"),
    ("file", "VARCHAR"),
    ("table", "VARCHAR"),
)


def run_export(args: argparse.Namespace, out: TextIO) -> int:
    """``export DIR --format parquet --out OUT [--with-base] [--timeline N]``."""
    from dictdb.audit import export_parquet

    if args.legacy:
        raise UsageError("--legacy writes a snapshot file: it does not go with --format parquet")
    if args.at is not None or args.lsn is not None:
        raise UsageError(
            "--at/--lsn pick a state for --legacy: a parquet export holds the whole history "
            "(filter it with dictdb sql)"
        )
    if args.force:
        raise UsageError(
            "--force does not go with --format parquet: an export is extended, never replaced"
        )
    if args.timeline is not None and args.timeline < 1:
        raise UsageError(f"--timeline must be >= 1, got {args.timeline}")
    report = export_parquet(
        args.dir,
        args.out,
        with_base=args.with_base,
        timeline=args.timeline,
        progress=progress("export", sys.stderr),
    )
    if args.json:
        doc = {
            "out": str(report.out),
            "rows_added": report.rows_added,
            "first_lsn": report.first_lsn,
            "last_lsn": report.last_lsn,
            "files": [str(p) for p in report.files],
            "bytes": report.bytes,
            "history_starts_at": report.history_starts_at,
            "base": None if report.base is None else str(report.base),
        }
        print(dump(doc), file=out)
        return EXIT_OK
    if report.rows_added or report.first_lsn is not None:
        print(
            f"exported {report.rows_added} rows (LSN {report.first_lsn}..{report.last_lsn}) "
            f"into {len(report.files)} files, {report.bytes} bytes: {report.out}",
            file=out,
        )
    else:
        print(f"nothing new after LSN {report.last_lsn}: {report.out}", file=out)
    if report.history_starts_at > 1:
        print(f"the history starts at LSN {report.history_starts_at}", file=out)
    if report.base is not None:
        print(f"base: {report.base}", file=out)
    return EXIT_OK


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _view(name: str, files: list[Path], columns: tuple[tuple[str, str], ...]) -> str:
    if not files:
        body = ", ".join(f'NULL::{kind} AS "{col}"' for col, kind in columns)
        return f"CREATE VIEW {name} AS SELECT {body} WHERE false"
    listed = ", ".join(_literal(str(p)) for p in files)
    return (
        f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{listed}], "
        "hive_partitioning = true, hive_types = {'table': VARCHAR})"
    )


def connect(directory: str | Path) -> Any:
    """A DuckDB connection with the views ``operations`` (and ``base``) of an export.

    Raises:
        ExportError: *directory* is not an export.
        MissingExtraError: duckdb is not installed.
    """
    from dictdb.audit.export import read_manifest, require

    duckdb = require("duckdb", "sql")
    out = Path(directory)
    manifest = read_manifest(out)
    con = duckdb.connect()
    files = [out / f["path"] for f in manifest["files"]]
    con.execute(_view("operations", files, _OPERATIONS))
    base = manifest.get("base") or {}
    if base.get("files"):
        base_dir = out.with_name(out.name + ".base")
        con.execute(
            _view(
                "base",
                [base_dir / f["path"] for f in base["files"]],
                (("key", "VARCHAR"), ("row", "VARCHAR"), ("lsn", "BIGINT"), ("table", "VARCHAR")),
            )
        )
    return con


def _plain(value: Any) -> Any:
    # A value DuckDB returned, for JSON and CSV: times in ISO 8601, exact numbers as text.
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID | _dt.timedelta):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    return str(_plain(value))


def _cmd_sql(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.audit.export import require

    if args.json and args.csv:
        raise UsageError("give --json or --csv, not both")
    duckdb = require("duckdb", "sql")
    con = connect(args.out_dir)
    try:
        cursor = con.execute(args.query)
        names = [d[0] for d in cursor.description or ()]
        rows = cursor.fetchall() if cursor.description else []
    except duckdb.Error as exc:
        message = " ".join(str(exc).split())
        print(f"dictdb: SQL error: {message}", file=sys.stderr)
        return EXIT_FINDINGS
    finally:
        con.close()
    if args.json:
        for row in rows:
            print(dump({n: _plain(v) for n, v in zip(names, row, strict=True)}), file=out)
        return EXIT_OK
    if args.csv:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([["" if v is None else _plain(v) for v in row] for row in rows])
        return EXIT_OK
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(n), *(len(r[i]) for r in cells)]) for i, n in enumerate(names)]
    print("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)
    print(f"({len(rows)} row{'' if len(rows) == 1 else 's'})", file=out)
    return EXIT_OK


def register(add: Add) -> None:
    """Add this module's commands to the parser (``export`` is `dictdb.cli.legacy`'s)."""
    p = add("sql", "run SQL (DuckDB) over a parquet export: FROM operations (and base)")
    p.add_argument("out_dir", metavar="OUT", help="the directory of a parquet export")
    p.add_argument("query", help='the SQL, e.g. "SELECT kind, count(*) FROM operations GROUP BY 1"')
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--csv", action="store_true", help="CSV with a header line")
    p.set_defaults(run=_cmd_sql)

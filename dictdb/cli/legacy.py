"""The reference DictDB's files: migrate a directory, export a state back; ``export --format
parquet`` (the operation history as a dataset) is `dictdb.cli.exporting`'s."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from dictdb.cli._args import (
    EXIT_OK,
    Add,
    UsageError,
    dump,
    parse_time,
    progress,
)


def _cmd_migrate(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.storage.migrate import migrate

    report = migrate(
        args.src,
        args.dest,
        file_format=args.format,
        compression=args.compression,
        force=args.force,
        progress=progress("migrate", sys.stderr),
    )
    if args.json:
        doc = {
            "written": [str(p) for p in report.written],
            "skipped": [{"file": str(p), "reason": r} for p, r in report.skipped],
            "lsn": report.lsn,
            "timeline": report.timeline,
        }
        print(dump(doc), file=out)
        return EXIT_OK
    for path, reason in report.skipped:
        print(f"skipped {path}: {reason}", file=out)
    print(
        f"migrated into {len(report.written)} files, LSN 0..{report.lsn}, timeline "
        f"{report.timeline}; restored and compared. Check it any time with: "
        f"python -m dictdb verify {args.dest}",
        file=out,
    )
    return EXIT_OK


def _cmd_export(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.cli.backups import check_out_path
    from dictdb.database import restore
    from dictdb.storage.legacy import save_legacy

    if args.format == "parquet":
        from dictdb.cli.exporting import run_export

        return run_export(args, out)
    if args.with_base or args.timeline is not None:
        raise UsageError("--with-base and --timeline go with --format parquet")
    if not args.legacy:
        raise UsageError(
            "export writes the reference DictDB's snapshot format (add --legacy) or the "
            "operation history as a Parquet dataset (--format parquet)"
        )
    target = check_out_path(args.out, args.force)
    at = None if args.at is None else parse_time(args.at)
    if args.lsn is not None and args.lsn < 0:
        raise UsageError(f"--lsn must be >= 0, got {args.lsn}")
    db = restore(args.dir, at=at, lsn=args.lsn)
    path = save_legacy(db, target, args.format)
    message = {"out": str(path), "lsn": db.lsn, "tables": db.list_tables()}
    print(
        dump(message) if args.json else f"wrote the reference DictDB snapshot {path}",
        file=out,
    )
    return EXIT_OK


def register(add: Add) -> None:
    """Add this module's commands to the parser."""
    p = add("migrate", "convert a reference DictDB 1.x backup directory into a dictdb chain")
    p.add_argument("src", help="the directory of dictdb_backup_*/dictdb_delta_* files")
    p.add_argument("dest", help="an empty directory (created if missing)")
    p.add_argument("--format", choices=("json", "pickle"), default="json")
    p.add_argument("--compression", choices=("zstd",))
    p.add_argument("--force", action="store_true", help="write into a non-empty DEST")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_migrate)
    p = add(
        "export",
        "write a state as a reference DictDB 1.x snapshot (--legacy), or the operation "
        "history as a Parquet dataset (--format parquet)",
    )
    p.add_argument("dir")
    p.add_argument("--legacy", action="store_true", help="the reference's format")
    p.add_argument("--out", required=True, help="the file (--legacy) or directory to write")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--at", help="a time: ISO 8601 or epoch seconds")
    target.add_argument("--lsn", type=int, help="the state right after this operation")
    p.add_argument(
        "--format",
        choices=("json", "pickle", "parquet"),
        default="json",
        help="json or pickle (--legacy); parquet: the history as a dataset, extended on re-runs",
    )
    p.add_argument(
        "--with-base",
        action="store_true",
        help="parquet: also OUT.base, the state the history starts from",
    )
    p.add_argument("--timeline", type=int, help="parquet: the timeline (default: the newest)")
    p.add_argument("--force", action="store_true", help="replace an existing --out (--legacy)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_export)

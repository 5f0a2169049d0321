"""The commands over a backup location as a whole: ls, verify, restore, inspect."""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from dictdb.cli._args import (
    EXIT_FINDINGS,
    EXIT_OK,
    Add,
    UsageError,
    dump,
    human_size,
    parse_time,
    progress,
    when,
)
from dictdb.errors import DictDBError
from dictdb.storage.target import as_target


def _cmd_ls(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.storage.catalog import as_document, scan

    catalog = scan(args.dir)
    local = as_target(args.dir).local_directory()
    log = _log_summary(None if local is None else local / "wal")
    windows = _windows(catalog, log)
    if args.json:
        doc = as_document(catalog)
        doc["log"] = log
        doc["restorable"] = windows
        doc["lineages"] = {str(tl.number): tl.lineage for tl in catalog.history.timelines.values()}
        print(dump(doc), file=out)
        return EXIT_OK
    if not catalog.files and not catalog.unreadable and not catalog.legacy and log is None:
        print(f"{args.dir}: no backups", file=out)
    history = catalog.history
    newest = history.newest()
    n = 0
    header = f"{'KIND':<5} {'FIRST LSN':>10} {'LAST LSN':>10}  {'LAST OPERATION (UTC)':<25} "
    header += f"{'SIZE':>9}  FILE"
    for tl in sorted(history.timelines.values(), key=lambda t: t.number):
        chains = [c for c in catalog.chains if catalog.timeline_of(c.full) == tl.number]
        fork = (
            ""
            if tl.parent is None
            else f", forked from timeline {tl.parent} after LSN {tl.fork_lsn}"
        )
        mark = " (newest)" if newest is not None and tl.number == newest.number else ""
        lineage = "" if tl.lineage is None else f", lineage {tl.lineage[:12]}"
        depth = _depth(history, tl.number)
        print(f"{'  ' * depth}timeline {tl.number}{mark}{fork}{lineage}", file=out)
        for chain in chains:
            n += 1
            pad = "  " * (depth + 1)
            print(
                f"{pad}chain {n}: LSN {chain.full.last_lsn}..{chain.last_lsn}, "
                f"{len(chain.deltas)} deltas, {human_size(chain.size)}",
                file=out,
            )
            print(f"{pad}  {header}", file=out)
            for f in chain.files:
                first = "-" if f.is_full else str(f.first_lsn)
                print(
                    f"{pad}  {f.kind:<5} {first:>10} {f.last_lsn:>10}  "
                    f"{_utc(f.last_op_ts):<25} {human_size(f.size):>9}  {f.path.name}",
                    file=out,
                )
    if catalog.legacy:
        print("reference DictDB 1.x files (no LSN, no checksum; restorable by time):", file=out)
        print(f"  {'KIND':<5} {'WRITTEN (UTC, from the name)':<28} {'SIZE':>9}  FILE", file=out)
        for lf in catalog.legacy:
            print(
                f"  {lf.kind:<5} {_utc(lf.stamp):<28} {human_size(lf.size):>9}  {lf.path.name}",
                file=out,
            )
    for f in catalog.orphans:
        print(f"orphan delta {f.first_lsn}..{f.last_lsn} {f.path.name}", file=out)
    for path, reason in catalog.unreadable:
        print(f"unreadable {path.name}: {reason}", file=out)
    for path, reason in (*catalog.ignored, *catalog.strays):
        print(f"ignored {path.name}: {reason}", file=out)
    if log is not None:
        last = "?" if log["last_lsn"] is None else str(log["last_lsn"])
        lineage = "" if log["lineage"] is None else f", lineage {log['lineage'][:12]}"
        print(
            f"log: {log['segments']} segment{'s' if log['segments'] != 1 else ''}, "
            f"LSN {log['first_lsn']}..{last}, "
            f"{human_size(log['size'])}{lineage}",
            file=out,
        )
    for w in windows:
        start = w["first_time"] or ("the beginning" if w["first_lsn"] == 0 else "?")
        print(
            f"restorable: LSN {w['first_lsn']}..{w['last_lsn']} ({start} .. {w['last_time']})",
            file=out,
        )
    return EXIT_OK


def _utc(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _log_summary(wal_dir: Path | None) -> dict[str, Any] | None:
    # What `ls` says of the durable log, from its names and its last segment only.
    from dictdb.storage.timeline import read_log_lineage
    from wal import last_operation, list_segments

    if wal_dir is None or not wal_dir.is_dir():
        return None
    segments = list_segments(wal_dir)
    if not segments:
        return None
    last = last_operation(wal_dir)
    try:
        recorded = read_log_lineage(wal_dir)
    except DictDBError:
        recorded = None
    return {
        "segments": len(segments),
        "first_lsn": segments[0][0],
        "last_lsn": None if last is None else last.lsn,
        "last_time": None if last is None else when(last.ts),
        "size": sum(p.stat().st_size for _, p in segments if p.exists()),
        "lineage": None if recorded is None else recorded[0],
    }


def _windows(catalog: Any, log: dict[str, Any] | None) -> list[dict[str, Any]]:
    # The LSN ranges the headers say can be rebuilt (verify reads the files to be sure):
    # each chain's, and the log's where it joins one or starts at LSN 1.
    ranges: list[tuple[int, int, float, float]] = [
        (c.full.last_lsn, c.last_lsn, c.full.last_op_ts, c.files[-1].last_op_ts)
        for c in catalog.chains
    ]
    if log is not None and log["last_lsn"] is not None:
        start = log["first_lsn"] - 1
        joined = [r for r in ranges if r[0] <= start <= r[1]]
        if start == 0 or joined:
            at = 0.0 if start == 0 else joined[0][3]
            ranges.append((start, log["last_lsn"], at, parse_time(log["last_time"])))
    merged: list[list[Any]] = []
    for lo, hi, lo_ts, hi_ts in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1][1], merged[-1][3] = hi, hi_ts
        else:
            merged.append([lo, hi, lo_ts, hi_ts])
    return [
        {
            "first_lsn": lo,
            "last_lsn": hi,
            "first_time": None if lo_ts == 0.0 and lo == 0 else when(lo_ts),
            "last_time": when(hi_ts),
        }
        for lo, hi, lo_ts, hi_ts in merged
    ]


def _depth(history: Any, number: int) -> int:
    # How many forks lie between timeline *number* and its root (the tree's indentation).
    depth, seen = 0, {number}
    parent = history.timelines[number].parent
    while parent is not None and parent in history.timelines and parent not in seen:
        seen.add(parent)
        depth += 1
        parent = history.timelines[parent].parent
    return depth


#: verify's exit code when nothing is damaged but something deserves a look (a torn log
#: tail: the normal trace of a crash, cut aside when the database reopens).
EXIT_WARNINGS = 3


def _cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.audit import verify

    report = verify(args.dir, progress=progress("verify", sys.stderr))
    if args.json:
        print(dump(report.as_document()), file=out)
    else:
        print(
            f"checked {report.files_checked} of {report.files_found} files, "
            f"{report.segments_checked} log segments",
            file=out,
        )
        for w in report.windows:
            span = f"{_point_time(w.first_ts)} .. {_point_time(w.last_ts)}"
            print(f"restorable: LSN {w.first}..{w.last} ({span})", file=out)
        for t in report.timelines:
            windows = ", ".join(f"LSN {lo}..{hi}" for lo, hi in t.restorable) or "nothing"
            mark = " (newest)" if t.newest else ""
            print(f"timeline {t.number}{mark}: restorable {windows}", file=out)
        for note in report.notes:
            print(f"note: {note}", file=out)
        for f in report.warnings:
            print(f"WARNING {f.path}: {f.reason}", file=out)
        for f in report.findings:
            print(f"FINDING {f.path}: {f.reason}", file=out)
        if not report.ok:
            n = len(report.findings)
            print(f"{n} finding{'s' if n != 1 else ''}", file=out)
        elif report.warnings:
            n = len(report.warnings)
            print(f"OK, with {n} warning{'s' if n != 1 else ''}", file=out)
        else:
            print("OK", file=out)
    if not report.ok:
        return EXIT_FINDINGS
    return EXIT_WARNINGS if report.warnings else EXIT_OK


def _point_time(ts: float | None) -> str:
    if ts is None:
        return "?"
    return "the empty database" if ts == 0.0 else when(ts)


def _cmd_restore(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.database import restore
    from dictdb.storage import persist
    from dictdb.storage.restore import plan_restore

    at = None if args.at is None else parse_time(args.at)
    if args.lsn is not None and args.lsn < 0:
        raise UsageError(f"--lsn must be >= 0, got {args.lsn}")
    target = {"at": at, "lsn": args.lsn, "timeline": args.timeline}
    options = {"exact": args.exact, "use_log": not args.no_log}
    if args.dry_run:
        plan = plan_restore(args.dir, **target, **options)
        doc = plan.as_document()
        if args.json:
            print(dump(doc), file=out)
        else:
            how = "" if plan.exact else " (the point before the target)"
            print(f"would restore LSN {plan.lsn} (time {when(plan.ts)}){how} from:", file=out)
            for name in doc["files"]:
                print(f"  {name}", file=out)
            if plan.log_from is not None:
                print(f"  then the log's operations {plan.log_from}..{plan.log_to}", file=out)
        return EXIT_OK
    if args.out is None:
        raise UsageError("--out FILE is required (or --dry-run)")
    out_path = check_out_path(args.out, args.force)  # before any work
    db = restore(args.dir, **target, **options, progress=progress("restore", sys.stderr))
    path = persist.save(db.engine, out_path, args.format, overwrite=args.force)
    message = {"out": str(path), "lsn": db.lsn, "tables": db.list_tables()}
    print(dump(message) if args.json else f"restored LSN {db.lsn} to {path}", file=out)
    return EXIT_OK


def check_out_path(out: str, force: bool) -> Path:
    """The file a command will write, checked before any work: not an existing file (unless
    *force*), not a directory, in a directory that exists and takes new files.

    Raises:
        UsageError: any of those.
    """
    path = Path(out)
    if path.is_dir():
        raise UsageError(f"{path} is a directory: give a file name")
    if path.exists() and not force:
        raise UsageError(f"{path} exists: choose another name, or --force to replace it")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"cannot write {path}: {parent} is not an existing directory")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.storage.persist import read_document
    from wal import parse_segment_name

    if parse_segment_name(Path(args.file).name) is not None:
        return _inspect_segment(args, out)
    doc = read_document(args.file)
    summary: dict[str, Any] = {
        k: v for k, v in doc.items() if k not in ("tables", "ddl", "digest", "checksum")
    }
    tables: dict[str, Any] = {}
    for name, tdoc in doc.get("tables", {}).items():
        if doc["type"] == "full":
            tables[name] = {
                "primary_key": tdoc.get("primary_key"),
                "schema": tdoc.get("schema"),
                "rows": len(tdoc.get("records", [])),
                "next_pk": tdoc.get("next_pk"),
            }
        else:
            tables[name] = {
                "upserts": len(tdoc.get("upserts", [])),
                "deletes": len(tdoc.get("deletes", [])),
            }
    summary["tables"] = tables
    if doc["type"] == "delta":
        summary["ddl"] = doc.get("ddl", [])
    summary["checksum"] = "verified"
    _print_summary(summary, args.json, out)
    return EXIT_OK


def _inspect_segment(args: argparse.Namespace, out: TextIO) -> int:
    # A log segment: its range, frames and operations per table and kind, read as far as
    # its frames are readable; a problem (torn or damaged frame) is said, exit 1.
    from wal import RecoveryError, read_segment

    try:
        report = read_segment(args.file)
    except RecoveryError as exc:
        raise DictDBError(f"{exc.segment}: offset {exc.offset}: {exc.reason}") from None
    per_table: dict[str, dict[str, int]] = {}
    for op in report.ops:
        counts = per_table.setdefault(str(op.table), {})
        counts[op.kind] = counts.get(op.kind, 0) + 1
    ops = report.ops
    summary: dict[str, Any] = {
        "type": "log segment",
        "first_lsn": report.first_lsn,
        "last_lsn": ops[-1].lsn if ops else None,
        "first_time": when(ops[0].ts) if ops else None,
        "last_time": when(ops[-1].ts) if ops else None,
        "frames": report.frames,
        "operations": len(ops),
        "size": report.size,
        "valid_size": report.valid_size,
        "tables": per_table,
        "problem": report.problem,
        "checksum": "verified" if report.problem is None else "verified up to valid_size",
    }
    _print_summary(summary, args.json, out)
    return EXIT_OK if report.problem is None else EXIT_FINDINGS


def _print_summary(summary: dict[str, Any], as_json: bool, out: TextIO) -> None:
    if as_json:
        print(dump(summary), file=out)
        return
    for k, v in summary.items():
        print(f"{k}: {v}", file=out)


def register(add: Add) -> None:
    """Add this module's commands to the parser."""
    p = add("ls", "list the chains, files, LSN and time ranges of a backup directory")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_ls)
    p = add("verify", "check every file, chain and log segment; exit 1 on findings")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_verify)
    p = add("restore", "rebuild the state at a time or LSN into a snapshot file")
    p.add_argument("dir")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--at", help="a time: ISO 8601 or epoch seconds")
    target.add_argument("--lsn", type=int, help="the state right after this operation")
    p.add_argument("--timeline", type=int, help="the timeline to follow (default: the newest)")
    p.add_argument("--out", help="the snapshot file to write")
    p.add_argument("--format", choices=("json", "pickle"), default="json")
    p.add_argument("--dry-run", action="store_true", help="print the plan; load nothing")
    p.add_argument("--exact", action="store_true", help="fail unless the target is reached exactly")
    p.add_argument(
        "--no-log", action="store_true", help="snapshots and deltas only, not the durable log"
    )
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_restore)
    p = add("inspect", "verify one snapshot, delta or log segment file and summarize it")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_inspect)

"""The ``dictdb`` command (also ``python -m dictdb``).

Exit codes: 0 success (``verify``: nothing found), 1 findings or a failed operation (the
file and the reason on stderr, one line), 2 usage errors, 130 interrupted (Ctrl-C).
Times are ISO 8601 (``2026-11-27T10:00:00+00:00``; naive means local time) or epoch seconds;
where a point may be an LSN, write ``lsn:N``. ``--json`` prints JSON (one object per line for
streams: ``history``, ``log``). Progress goes to stderr, and only when it is a terminal.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import math
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

import orjson

from dictdb.errors import DictDBError, UsageError
from dictdb.storage.target import as_target

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def parse_time(text: str) -> float:
    """Epoch seconds from ISO 8601 or a number.

    Raises:
        UsageError: neither.
    """
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise UsageError(f"not a time: {text!r}")
        return value
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"not a time (ISO 8601 or epoch seconds): {text!r}") from None
    return moment.timestamp()


def parse_point(text: str) -> Any:
    """A diff point: ``lsn:N`` or a time."""
    if text.startswith("lsn:"):
        try:
            n = int(text[4:])
        except ValueError:
            raise UsageError(f"not an LSN: {text!r}") from None
        if n < 0:
            raise UsageError(f"an LSN is >= 0: {text!r}")
        return text
    return parse_time(text)


def parse_key(text: str, key_type: str) -> Any:
    """A record key from the command line."""
    if key_type == "str":
        return text
    if key_type == "uuid":
        try:
            return uuid.UUID(text)
        except ValueError:
            raise UsageError(f"not a UUID: {text!r}") from None
    if key_type == "int" or (key_type == "auto" and text.lstrip("-").isdigit()):
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"not an int: {text!r}") from None
    return text


def _progress(label: str, stream: TextIO) -> Callable[[int, int], None] | None:
    if not stream.isatty():
        return None

    def show(done: int, total: int) -> None:
        stream.write(f"\r{label}: {done}/{total}")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return show


def _dump(obj: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def _when(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# Commands


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.database import DictDB

    db = DictDB()
    db.create_table("users", primary_key="id")
    users = db.get_table("users")
    alice = users.insert({"name": "Alice", "age": 30, "tags": ["admin"]})
    users.insert([{"name": "Bob", "age": 25}, {"name": "Chloé", "age": 41}])
    users.update({"age": 31}, where=users.id == alice)
    users.upsert({"id": 2, "city": "Lyon"})
    users.delete(where=users.name == "Chloé")
    print("rows:", file=out)
    for row in users.select(order_by="id"):
        print("  ", row, file=out)
    print(f"journal ({db.lsn} operations):", file=out)
    for op in db.journal.read(1):
        detail = op.after if op.kind != "delete" else {"before": op.before}
        print(f"  lsn={op.lsn:<3} {op.kind:<7} {op.table}/{op.key}  {detail}", file=out)
    replica = DictDB()
    replica.replay(db.journal.read(1))
    same = replica.to_dict() == db.to_dict()
    print(f"replaying the journal into an empty database gives an equal one: {same}", file=out)
    return EXIT_OK


def _cmd_ls(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.storage.catalog import as_document, scan

    catalog = scan(args.dir)
    if args.json:
        print(_dump(as_document(catalog)), file=out)
        return EXIT_OK
    if not catalog.files and not catalog.unreadable and not catalog.legacy:
        print(f"{args.dir}: no backups", file=out)
    history = catalog.history
    newest = history.newest()
    n = 0
    for tl in sorted(history.timelines.values(), key=lambda t: t.number):
        chains = [c for c in catalog.chains if catalog.timeline_of(c.full) == tl.number]
        fork = (
            ""
            if tl.parent is None
            else f", forked from timeline {tl.parent} after LSN {tl.fork_lsn}"
        )
        mark = " (newest)" if newest is not None and tl.number == newest.number else ""
        depth = _depth(history, tl.number)
        print(f"{'  ' * depth}timeline {tl.number}{mark}{fork}", file=out)
        for chain in chains:
            n += 1
            pad = "  " * (depth + 1)
            print(
                f"{pad}chain {n}: LSN {chain.full.last_lsn}..{chain.last_lsn}, "
                f"{len(chain.deltas)} deltas, {chain.size} bytes",
                file=out,
            )
            for f in chain.files:
                print(
                    f"{pad}  {f.kind:<5} {f.first_lsn if not f.is_full else f.last_lsn:>10}"
                    f"..{f.last_lsn:<10} {_when(f.last_op_ts)}  {f.size:>12}  {f.path.name}",
                    file=out,
                )
    if catalog.legacy:
        print("reference DictDB 1.x files (no LSN, no checksum; restorable by time):", file=out)
        for lf in catalog.legacy:
            print(f"  {lf.kind:<5} {_when(lf.stamp)}  {lf.size:>12}  {lf.path.name}", file=out)
    for f in catalog.orphans:
        print(f"orphan delta {f.first_lsn}..{f.last_lsn} {f.path.name}", file=out)
    for path, reason in catalog.unreadable:
        print(f"unreadable {path.name}: {reason}", file=out)
    for path, reason in (*catalog.ignored, *catalog.strays):
        print(f"ignored {path.name}: {reason}", file=out)
    from wal import list_segments

    local = as_target(args.dir).local_directory()
    segments = [] if local is None else list_segments(local / "wal")
    if segments:
        print(f"log: {len(segments)} segments from LSN {segments[0][0]}", file=out)
    return EXIT_OK


def _depth(history: Any, number: int) -> int:
    # How many forks lie between timeline *number* and its root (the tree's indentation).
    depth, seen = 0, {number}
    parent = history.timelines[number].parent
    while parent is not None and parent in history.timelines and parent not in seen:
        seen.add(parent)
        depth += 1
        parent = history.timelines[parent].parent
    return depth


def _cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.audit import verify

    report = verify(args.dir, progress=_progress("verify", sys.stderr))
    if args.json:
        print(
            _dump(
                {
                    "ok": report.ok,
                    "files_checked": report.files_checked,
                    "segments_checked": report.segments_checked,
                    "findings": [{"file": f.path, "reason": f.reason} for f in report.findings],
                    "restorable": [list(r) for r in report.restorable],
                    "timelines": [
                        {
                            "timeline": w.number,
                            "parent": w.parent,
                            "fork_lsn": w.fork_lsn,
                            "restorable": [list(r) for r in w.restorable],
                            "newest": w.newest,
                        }
                        for w in report.timelines
                    ],
                    "notes": list(report.notes),
                }
            ),
            file=out,
        )
    else:
        print(
            f"checked {report.files_checked} files, {report.segments_checked} log segments",
            file=out,
        )
        for lo, hi in report.restorable:
            print(f"restorable: LSN {lo}..{hi}", file=out)
        for w in report.timelines:
            windows = ", ".join(f"LSN {lo}..{hi}" for lo, hi in w.restorable) or "nothing"
            mark = " (newest)" if w.newest else ""
            print(f"timeline {w.number}{mark}: restorable {windows}", file=out)
        for note in report.notes:
            print(f"note: {note}", file=out)
        for f in report.findings:
            print(f"FINDING {f.path}: {f.reason}", file=out)
        print("OK" if report.ok else f"{len(report.findings)} findings", file=out)
    return EXIT_OK if report.ok else EXIT_FINDINGS


def _cmd_restore(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.database import restore
    from dictdb.storage.restore import plan_restore

    at = None if args.at is None else parse_time(args.at)
    if args.lsn is not None and args.lsn < 0:
        raise UsageError(f"--lsn must be >= 0, got {args.lsn}")
    if args.dry_run:
        plan = plan_restore(args.dir, at=at, lsn=args.lsn, timeline=args.timeline)
        doc = plan.as_document()
        if args.json:
            print(_dump(doc), file=out)
        else:
            print(f"would restore LSN {plan.lsn} (time {_when(plan.ts)}) from:", file=out)
            for name in doc["files"]:
                print(f"  {name}", file=out)
            if plan.log_from is not None:
                print(f"  then the log's operations {plan.log_from}..{plan.log_to}", file=out)
        return EXIT_OK
    if args.out is None:
        raise UsageError("--out FILE is required (or --dry-run)")
    db = restore(args.dir, at=at, lsn=args.lsn, timeline=args.timeline)
    path = db.save(args.out, file_format=args.format)
    message = {"out": str(path), "lsn": db.lsn, "tables": db.list_tables()}
    print(_dump(message) if args.json else f"restored LSN {db.lsn} to {path}", file=out)
    return EXIT_OK


def _cmd_migrate(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.storage.migrate import migrate

    report = migrate(
        args.src,
        args.dest,
        file_format=args.format,
        compression=args.compression,
        force=args.force,
        progress=_progress("migrate", sys.stderr),
    )
    if args.json:
        doc = {
            "written": [str(p) for p in report.written],
            "skipped": [{"file": str(p), "reason": r} for p, r in report.skipped],
            "lsn": report.lsn,
            "timeline": report.timeline,
        }
        print(_dump(doc), file=out)
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
    from pathlib import Path

    from dictdb.database import restore
    from dictdb.storage.legacy import save_legacy

    if not args.legacy:
        raise UsageError("export writes the reference DictDB's snapshot format: add --legacy")
    target = Path(args.out)
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists: choose another --out, or --force to replace it")
    if not target.parent.is_dir():
        raise UsageError(f"{target.parent} is not a directory")
    at = None if args.at is None else parse_time(args.at)
    if args.lsn is not None and args.lsn < 0:
        raise UsageError(f"--lsn must be >= 0, got {args.lsn}")
    db = restore(args.dir, at=at, lsn=args.lsn)
    path = save_legacy(db, target, args.format)
    message = {"out": str(path), "lsn": db.lsn, "tables": db.list_tables()}
    print(
        _dump(message) if args.json else f"wrote the reference DictDB snapshot {path}",
        file=out,
    )
    return EXIT_OK


def _cmd_history(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.audit import history

    key = parse_key(args.key, args.key_type)
    versions = history(args.dir, args.table, key)
    for v in versions:
        if args.json:
            print(_dump(v.as_document()), file=out)
            continue
        meta = f"  {v.meta}" if v.meta else ""
        print(
            f"{v.lsn:>10} {_when(v.ts)} {v.kind:<7} [{v.granularity}] {v.after!r}{meta}",
            file=out,
        )
    if not versions and not args.json:
        print(f"no history for {args.table}/{key!r}", file=out)
    return EXIT_OK


def _cmd_diff(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.audit import diff, missing_marker
    from wal import to_plain

    changes = diff(args.dir, parse_point(args.from_), parse_point(args.to))
    gone = missing_marker()

    def plain(v: Any) -> Any:
        return "<absent>" if v is gone else to_plain(v)

    if args.json:
        doc = {
            name: {
                "created": d.created,
                "dropped": d.dropped,
                "added": [to_plain(r) for r in d.added.values()],
                "removed": [to_plain(r) for r in d.removed.values()],
                "changed": [
                    {
                        "key": to_plain(c.key),
                        "fields": {f: [plain(a), plain(b)] for f, (a, b) in c.fields.items()},
                    }
                    for c in d.changed
                ],
            }
            for name, d in changes.items()
        }
        print(_dump(doc), file=out)
        return EXIT_OK
    if not changes:
        print("no changes", file=out)
    for name, d in changes.items():
        flags = " (created)" if d.created else " (dropped)" if d.dropped else ""
        print(
            f"{name}{flags}: +{len(d.added)} -{len(d.removed)} ~{len(d.changed)}",
            file=out,
        )
        for k, row in d.added.items():
            print(f"  + {k!r}: {row}", file=out)
        for k, row in d.removed.items():
            print(f"  - {k!r}: {row}", file=out)
        for c in d.changed:
            fields = ", ".join(
                f"{f}: {plain(a)!r} -> {plain(b)!r}" for f, (a, b) in c.fields.items()
            )
            print(f"  ~ {c.key!r}: {fields}", file=out)
    return EXIT_OK


def _bound(text: str | None) -> tuple[int | None, float | None]:
    # ``lsn:N`` or a time.
    if text is None:
        return None, None
    point = parse_point(text)
    if isinstance(point, str):
        return int(point[4:]), None
    return None, float(point)


def _cmd_log(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.audit import events

    start, after_ts = _bound(args.from_)
    end, until_ts = _bound(args.to)
    key = None if args.key is None else parse_key(args.key, args.key_type)
    kwargs: dict[str, Any] = {
        "start": None if start is None else start + 1,
        "end": end,
        "after_ts": after_ts,
        "until_ts": until_ts,
    }
    if args.table is not None:
        kwargs["table"] = args.table
    if key is not None:
        kwargs["keys"] = [key]
    for event in events(args.dir, progress=_progress("log", sys.stderr), **kwargs):
        if args.json:
            print(_dump(event.as_document()), file=out)
        else:
            meta = f"  {event.meta}" if event.meta else ""
            what = event.after if event.kind != "delete" else "(deleted)"
            print(
                f"{event.lsn:>10} {_when(event.ts)} {event.kind:<7} {event.table}/"
                f"{event.key!r} [{event.granularity}] {what}{meta}",
                file=out,
            )
    return EXIT_OK


def _cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.storage.persist import read_document

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
    if args.json:
        print(_dump(summary), file=out)
    else:
        for k, v in summary.items():
            print(f"{k}: {v}", file=out)
    return EXIT_OK


class _Parser(argparse.ArgumentParser):
    # Usage errors are one line on stderr (and exit 2), like every other error.
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"dictdb: error: {message} (see dictdb --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dictdb",
        description="dictdb: demo, and audit tools over backup directories.",
        epilog="Exit codes: 0 ok, 1 findings/failure, 2 usage, 130 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_)

    add("demo", "create a table, change it, and show the journal")
    p = add("ls", "list the chains, files, LSN and time ranges of a backup directory")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true")
    p = add("verify", "check every file, chain and log segment; exit 1 on findings")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true")
    p = add("restore", "rebuild the state at a time or LSN into a snapshot file")
    p.add_argument("dir")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--at", help="a time: ISO 8601 or epoch seconds")
    target.add_argument("--lsn", type=int, help="the state right after this operation")
    p.add_argument("--timeline", type=int, help="the timeline to follow (default: the newest)")
    p.add_argument("--out", help="the snapshot file to write")
    p.add_argument("--format", choices=("json", "pickle"), default="json")
    p.add_argument("--dry-run", action="store_true", help="print the plan; load nothing")
    p.add_argument("--json", action="store_true")
    p = add("history", "every version of one record")
    p.add_argument("dir")
    p.add_argument("table")
    p.add_argument("key")
    p.add_argument("--key-type", choices=("auto", "int", "str", "uuid"), default="auto")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p = add("diff", "rows added, removed and changed between two points")
    p.add_argument("dir")
    p.add_argument("--from", dest="from_", required=True, help="a time or lsn:N")
    p.add_argument("--to", required=True, help="a time or lsn:N")
    p.add_argument("--json", action="store_true")
    p = add("log", "the operations between two points, optionally for a table or key")
    p.add_argument("dir")
    p.add_argument("--from", dest="from_", help="a time or lsn:N (exclusive)")
    p.add_argument("--to", help="a time or lsn:N (inclusive)")
    p.add_argument("--table")
    p.add_argument("--key")
    p.add_argument("--key-type", choices=("auto", "int", "str", "uuid"), default="auto")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p = add("migrate", "convert a reference DictDB 1.x backup directory into a dictdb chain")
    p.add_argument("src", help="the directory of dictdb_backup_*/dictdb_delta_* files")
    p.add_argument("dest", help="an empty directory (created if missing)")
    p.add_argument("--format", choices=("json", "pickle"), default="json")
    p.add_argument("--compression", choices=("zstd",))
    p.add_argument("--force", action="store_true", help="write into a non-empty DEST")
    p.add_argument("--json", action="store_true")
    p = add("export", "write a state as a reference DictDB 1.x snapshot (--legacy)")
    p.add_argument("dir")
    p.add_argument("--legacy", action="store_true", help="the reference's format (required)")
    p.add_argument("--out", required=True, help="the file to write")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--at", help="a time: ISO 8601 or epoch seconds")
    target.add_argument("--lsn", type=int, help="the state right after this operation")
    p.add_argument("--format", choices=("json", "pickle"), default="json")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--json", action="store_true")
    p = add("inspect", "verify one snapshot or delta file and summarize it")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    return parser


_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "demo": _cmd_demo,
    "ls": _cmd_ls,
    "verify": _cmd_verify,
    "restore": _cmd_restore,
    "history": _cmd_history,
    "diff": _cmd_diff,
    "log": _cmd_log,
    "inspect": _cmd_inspect,
    "migrate": _cmd_migrate,
    "export": _cmd_export,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    out = sys.stdout
    # Warnings (a legacy file read unverified, a file set aside) reach the user on stderr.
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("dictdb: warning: %(message)s"))
    logger = logging.getLogger("dictdb")
    logger.addHandler(handler)
    try:
        return _COMMANDS[args.command](args, out)
    except UsageError as exc:
        print(f"dictdb: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dictdb: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except (DictDBError, OSError, ValueError, OverflowError) as exc:
        path = getattr(exc, "path", None) or getattr(exc, "filename", None)
        reason = getattr(exc, "reason", None) or str(exc)
        where = f"{path}: " if path and str(path) not in reason else ""
        print(f"dictdb: {where}{reason}".replace("\n", " "), file=sys.stderr)
        return EXIT_FINDINGS
    finally:
        logger.removeHandler(handler)

"""The audit commands: history, diff, log.

Points (``--from``, ``--to``) are ``lsn:N`` (the state right after operation N), an ISO 8601
time, or epoch seconds written ``@N`` (or with a decimal point); a bare integer is refused,
since it could be either. An unknown table or record is an error (exit 1), not an empty
answer.
"""

from __future__ import annotations

import argparse
import collections
import sys
import warnings
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from dictdb.cli._args import (
    EXIT_FINDINGS,
    EXIT_OK,
    Add,
    UsageError,
    dump,
    parse_key,
    parse_point,
    progress,
)

_POINT_HELP = "lsn:N, an ISO 8601 time, or epoch seconds as @N"


def _value(v: Any) -> str:
    from dictdb.audit import missing_marker

    return "<absent>" if v is missing_marker() else repr(v)


def _who(meta: Any) -> str:
    # Audit metadata as ``actor=bob reason="ticket 7"``: bare words stay bare.
    if not isinstance(meta, dict) or not meta:
        return ""
    parts = []
    for k, v in meta.items():
        bare = isinstance(v, str) and v and not any(c.isspace() or c in "\"'=" for c in v)
        parts.append(f"{k}={v if bare else dump(v)}")
    return "  " + " ".join(parts)


def _what(event: Any) -> str:
    # A version for people: the fields that changed, before -> after.
    if event.key is None:
        return f"table {event.table}"  # created or dropped
    if event.after is None:
        return "deleted"
    if event.before is None:
        return repr(event.after)
    changes = event.changes
    if not changes:
        return "(no change)"
    return ", ".join(f"{f}: {_value(a)} -> {_value(b)}" for f, (a, b) in changes.items())


def _line(event: Any, with_key: bool) -> str:
    where = ""
    if with_key:
        where = f" {event.table}" if event.key is None else f" {event.table}/{event.key!r}"
    what = "" if with_key and event.key is None else f"  {_what(event)}"
    return (
        f"{event.lsn:>8}  {event.time}  {event.kind:<6}{where}  [{event.granularity}]"
        f"{what}{_who(event.meta)}"
    )


def _missing(directory: str, table: str | None, key: Any) -> str | None:
    # Why nothing was found, if it is that nothing exists: no such table at all, or no such
    # record in it (or in any table); None when both exist.
    from dictdb.audit import events, table_names

    if table is not None:
        names = table_names(directory)
        if table not in names:
            known = ", ".join(sorted(names)) or "none"
            return f"no table {table!r} in {directory} (tables: {known})"
    if key is None:
        return None
    seen = events(directory, table=table, keys=[key], include_state=True)
    if any(e.key is not None for e in seen):
        return None
    where = f"{table}/{key!r}" if table is not None else f"with key {key!r}"
    return f"no record {where} in {directory}"


def _cmd_history(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.audit import history
    from wal import KeyIndexWarning

    key = parse_key(args.key, args.key_type)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", KeyIndexWarning)
        versions = history(args.dir, args.table, key, progress=progress("history", sys.stderr))
    for warning in caught:
        print(f"dictdb: warning: {warning.message}", file=sys.stderr)
    if not versions:
        why = _missing(args.dir, args.table, key) or f"no record {args.table}/{key!r}"
        print(f"dictdb: {why}", file=sys.stderr)
        return EXIT_FINDINGS
    for v in versions:
        print(dump(v.as_document()) if args.json else _line(v, with_key=False), file=out)
    return EXIT_OK


def _cmd_index(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.audit import index_log, index_snapshots

    done, fresh = index_log(args.dir)
    files, files_fresh = index_snapshots(args.dir)
    if args.json:
        document = {
            "indexed": done,
            "up_to_date": fresh,
            "files_indexed": files,
            "files_up_to_date": files_fresh,
        }
        print(dump(document), file=out)
        return EXIT_OK
    if done + fresh:
        print(f"log key indexes: {done} segments indexed, {fresh} already up to date", file=out)
    else:
        print(f"no log in {args.dir}", file=out)
    print(
        f"backup file key indexes: {files} files indexed, {files_fresh} already up to date",
        file=out,
    )
    return EXIT_OK


def _cmd_diff(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.audit import diff, missing_marker
    from wal import to_plain

    from_lsn, from_at = parse_point(args.from_)
    to_lsn, to_at = parse_point(args.to)
    changes = diff(
        args.dir,
        from_lsn=from_lsn,
        from_at=from_at,
        to_lsn=to_lsn,
        to_at=to_at,
        table=args.table,
        progress=progress("diff", sys.stderr),
    )
    gone = missing_marker()

    def plain(v: Any) -> Any:
        return "<absent>" if v is gone else to_plain(v)

    if args.stat:
        return _print_stat(changes, args.json, out)
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
        print(dump(doc), file=out)
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


def _print_stat(changes: Any, as_json: bool, out: TextIO) -> int:
    # Counts per table, like ``git diff --stat``.
    counts = {
        name: {
            "added": len(d.added),
            "removed": len(d.removed),
            "changed": len(d.changed),
            "created": d.created,
            "dropped": d.dropped,
        }
        for name, d in changes.items()
    }
    if as_json:
        print(dump(counts), file=out)
        return EXIT_OK
    for name, c in counts.items():
        flags = " (created)" if c["created"] else " (dropped)" if c["dropped"] else ""
        print(
            f"{name}{flags}: {c['added']} added, {c['removed']} removed, {c['changed']} changed",
            file=out,
        )
    total = [sum(c[k] for c in counts.values()) for k in ("added", "removed", "changed")]
    tables = "1 table" if len(counts) == 1 else f"{len(counts)} tables"
    print(f"{tables}: {total[0]} added, {total[1]} removed, {total[2]} changed", file=out)
    return EXIT_OK


def _cmd_log(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.audit import events

    for flag in ("limit", "tail"):
        if getattr(args, flag) is not None and getattr(args, flag) < 0:
            raise UsageError(f"--{flag} must be >= 0, got {getattr(args, flag)}")
    from_lsn, from_at = (None, None) if args.from_ is None else parse_point(args.from_)
    to_lsn, to_at = (None, None) if args.to is None else parse_point(args.to)
    key = None if args.key is None else parse_key(args.key, args.key_type)
    meter = progress("log", sys.stderr)
    reached = (0, -1)  # the last (done, total) reported

    def tracked(done: int, total: int) -> None:
        nonlocal reached
        reached = (done, total)
        assert meter is not None
        meter(done, total)

    found: Iterable[Any] = events(
        args.dir,
        from_lsn=from_lsn,
        from_at=from_at,
        to_lsn=to_lsn,
        to_at=to_at,
        table=args.table,
        keys=None if key is None else [key],
        actor=args.actor,
        progress=None if meter is None else tracked,
    )
    shown = _print_events(found, args, out)
    if 0 <= reached[0] < reached[1]:
        print(file=sys.stderr)  # stopped early (--limit): end the progress line where it is
    hits = [e for e in shown if key is None or e.key is not None]  # a drop has no key
    why = None if hits else _missing(args.dir, args.table, key)
    if why is not None:
        print(f"dictdb: {why}", file=sys.stderr)
        return EXIT_FINDINGS
    return EXIT_OK


def _print_events(found: Iterable[Any], args: argparse.Namespace, out: TextIO) -> list[Any]:
    # Prints the first --limit or last --tail of *found*; returns them.
    if args.tail is not None:
        found = collections.deque(found, maxlen=args.tail)
    render: Callable[[Any], str] = (
        (lambda e: dump(e.as_document())) if args.json else (lambda e: _line(e, with_key=True))
    )
    shown: list[Any] = []
    for event in found:
        if args.limit is not None and len(shown) >= args.limit:
            break
        print(render(event), file=out)
        shown.append(event)
    return shown


def register(add: Add) -> None:
    """Add this module's commands to the parser."""
    p = add("history", "every version of one record: changed fields, who, why, when")
    p.add_argument("dir")
    p.add_argument("table")
    p.add_argument("key")
    p.add_argument("--key-type", choices=("auto", "int", "str", "uuid"), default="auto")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(run=_cmd_history)
    p = add("index", "index the log and the backup files by key, for history (from cron)")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_index)
    p = add("diff", "rows added, removed and changed between two points")
    p.add_argument("dir")
    p.add_argument("--from", dest="from_", required=True, help=_POINT_HELP)
    p.add_argument("--to", required=True, help=_POINT_HELP)
    p.add_argument("--table", help="only this table")
    p.add_argument("--stat", action="store_true", help="counts per table only")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_diff)
    p = add("log", "the operations between two points, optionally for a table, key or actor")
    p.add_argument("dir")
    p.add_argument("--from", dest="from_", help=f"{_POINT_HELP} (exclusive)")
    p.add_argument("--to", help=f"{_POINT_HELP} (inclusive)")
    p.add_argument("--table", help="only this table")
    p.add_argument("--key", help="only this record key")
    p.add_argument("--key-type", choices=("auto", "int", "str", "uuid"), default="auto")
    p.add_argument("--actor", help="only operations recorded with this actor")
    many = p.add_mutually_exclusive_group()
    many.add_argument("--limit", type=int, metavar="N", help="the first N only")
    many.add_argument("--tail", type=int, metavar="N", help="the last N only")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(run=_cmd_log)

"""The audit commands: history, diff, log."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from dictdb.cli._args import (
    EXIT_OK,
    Add,
    dump,
    parse_key,
    parse_point,
    progress,
    when,
)


def _cmd_history(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.audit import history

    key = parse_key(args.key, args.key_type)
    versions = history(args.dir, args.table, key)
    for v in versions:
        if args.json:
            print(dump(v.as_document()), file=out)
            continue
        meta = f"  {v.meta}" if v.meta else ""
        print(
            f"{v.lsn:>10} {when(v.ts)} {v.kind:<7} [{v.granularity}] {v.after!r}{meta}",
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
    for event in events(args.dir, progress=progress("log", sys.stderr), **kwargs):
        if args.json:
            print(dump(event.as_document()), file=out)
        else:
            meta = f"  {event.meta}" if event.meta else ""
            what = event.after if event.kind != "delete" else "(deleted)"
            print(
                f"{event.lsn:>10} {when(event.ts)} {event.kind:<7} {event.table}/"
                f"{event.key!r} [{event.granularity}] {what}{meta}",
                file=out,
            )
    return EXIT_OK


def register(add: Add) -> None:
    """Add this module's commands to the parser."""
    p = add("history", "every version of one record")
    p.add_argument("dir")
    p.add_argument("table")
    p.add_argument("key")
    p.add_argument("--key-type", choices=("auto", "int", "str", "uuid"), default="auto")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(run=_cmd_history)
    p = add("diff", "rows added, removed and changed between two points")
    p.add_argument("dir")
    p.add_argument("--from", dest="from_", required=True, help="a time or lsn:N")
    p.add_argument("--to", required=True, help="a time or lsn:N")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_diff)
    p = add("log", "the operations between two points, optionally for a table or key")
    p.add_argument("dir")
    p.add_argument("--from", dest="from_", help="a time or lsn:N (exclusive)")
    p.add_argument("--to", help="a time or lsn:N (inclusive)")
    p.add_argument("--table")
    p.add_argument("--key")
    p.add_argument("--key-type", choices=("auto", "int", "str", "uuid"), default="auto")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(run=_cmd_log)

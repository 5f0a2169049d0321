"""The demo: a durable database with audited changes, its backups, a point-in-time restore,
a record's history, a diff and a verification, in a directory left for the other commands.

The scenario: a small customer table changed by named people for stated reasons, backed up
by a `BackupManager` into the database's own directory (a full snapshot, then deltas beside
the log), until a bulk script resets every customer's plan by mistake. The demo then shows
how the audit tools find the mistake and bring back the state just before it. Everything is
read back through the public APIs (`dictdb.restore`, `dictdb.audit`, `dictdb.storage.*`),
and the tables are formatted here (plain text, aligned).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TextIO

from dictdb.cli._args import EXIT_OK, Add, UsageError

#: The file that marks a directory as the demo's (so a later run may replace its contents).
MARKER: Final = "DICTDB_DEMO.txt"

_MARKER_TEXT: Final = """\
This directory was made by `python -m dictdb demo`: a durable dictdb database (wal/) with
its backups (dictdb_backup_*/dictdb_delta_*). Running the demo again with --dir here
replaces everything in it.
"""

_TABLE: Final = "customers"
_KEY: Final = 1  # the record whose history is shown
_PAUSE: Final = 0.02  # seconds between the steps, so that each has a time of its own


# -- formatting ------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else repr(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ") -> str:
    """*rows* under *headers*, columns aligned (numbers to the right), as plain text."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [
        bool(rows) and all(isinstance(r[i], int | float) or r[i] is None for r in rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return (indent + "  ".join(parts)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def _value(value: Any) -> str:
    return repr(value)


def _moment(ts: float) -> str:
    """*ts* as a short UTC time for tables (to the millisecond)."""
    moment = _dt.datetime.fromtimestamp(ts, _dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _iso(ts: float) -> str:
    """*ts* as ISO 8601 in UTC to the microsecond: what ``--at`` takes back exactly."""
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat(timespec="microseconds")


def _changes(before: Any, after: Any, absent: object) -> str:
    # "field: before -> after; ..." for the fields that differ.
    if before is None and after is None:
        return ""
    if before is None:
        return "new: " + ", ".join(f"{k}={_value(v)}" for k, v in after.items())
    if after is None:
        return "deleted"
    parts = []
    for name in sorted(before.keys() | after.keys()):
        a, b = before.get(name, absent), after.get(name, absent)
        if a is absent or b is absent or type(a) is not type(b) or a != b:
            shown_a = "(absent)" if a is absent else _value(a)
            shown_b = "(absent)" if b is absent else _value(b)
            parts.append(f"{name}: {shown_a} -> {shown_b}")
    return "; ".join(parts) or "(no field changed)"


# -- the directory ---------------------------------------------------------------------------


def _prepare(given: str | None) -> tuple[Path, str]:
    """The directory to build in, and a sentence saying where it is and why.

    Raises:
        UsageError: *given* is not a directory, or is neither empty nor a previous demo's.
    """
    if given is None:
        path = Path(tempfile.mkdtemp(prefix="dictdb-demo-"))
        return path, f"a new temporary directory (--dir DIR to choose one): {path}"
    path = Path(given)
    shown = given if given.isprintable() else repr(given)  # an error is one line
    if path.exists() and not path.is_dir():
        raise UsageError(f"--dir {shown}: not a directory")
    if not path.exists():
        path.mkdir(parents=True)
        return path, f"{path} (created)"
    entries = list(path.iterdir())
    if not entries:
        return path, f"{path} (empty)"
    if not (path / MARKER).is_file():
        raise UsageError(
            f"--dir {shown}: not empty and not a previous demo's directory (no {MARKER}); "
            "give a new or empty directory"
        )
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return path, f"{path} (a previous demo's directory: replaced)"


# -- the scenario ----------------------------------------------------------------------------


class _Story:
    """The demo's writes, with the points it shows later."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.before_mistake_ts = 0.0
        self.before_mistake_lsn = 0
        self.first_lsn_after_setup = 0
        self.backups: list[Path] = []

    def run(self) -> None:
        from dictdb import BackupManager, DictDB

        (self.directory / MARKER).write_text(_MARKER_TEXT, encoding="utf-8")
        db = DictDB.open(self.directory, fsync="always")
        try:
            manager = BackupManager(db, self.directory, incremental=True)
            try:
                self._write(db, manager)
            finally:
                manager.stop(final_backup=False)
        finally:
            db.close()

    def _backup(self, write: Callable[[], Path | None]) -> None:
        path = write()
        if path is None:
            raise OSError(f"the demo's backup into {self.directory} failed")
        self.backups.append(path)

    def _write(self, db: Any, manager: Any) -> None:
        with db.audit(actor="alice", reason="onboarding, ticket 101"):
            customers = db.create_table(_TABLE, primary_key="id")
            customers.insert(
                [
                    {"name": "Ada", "plan": "free", "credit": 0},
                    {"name": "Grace", "plan": "free", "credit": 0},
                    {"name": "Alan", "plan": "team", "credit": 50},
                ]
            )
        self._backup(manager.backup_full)
        self.first_lsn_after_setup = db.lsn
        self._pause()
        with db.audit(actor="bob", reason="upgrade to pro, ticket 102"):
            customers.update({"plan": "pro", "credit": 100}, where=customers.id == 1)
        self._backup(manager.backup_delta)
        self._pause()
        with db.audit(actor="billing-job", reason="monthly invoices"):
            invoices = db.create_table("invoices", primary_key="id")
            invoices.insert({"customer": 1, "amount": 30})
            invoices.insert({"customer": 3, "amount": 90})
            customers.update({"credit": 70}, where=customers.id == 1)
        self._backup(manager.backup_delta)
        self._pause()
        with db.audit(actor="carol", reason="erasure request, ticket 107"):
            customers.delete(where=customers.id == 2)
        with db.audit(actor="carol", reason="new e-mail, ticket 108"):
            customers.update({"email": "ada@example.org"}, where=customers.id == 1)
        self._pause()
        self.before_mistake_lsn = db.lsn
        self.before_mistake_ts = time.time()
        self._pause()
        with db.audit(actor="dave", reason="plan migration script v1"):
            customers.update({"plan": "free"})  # every row: the mistake
        self._backup(manager.backup_delta)

    @staticmethod
    def _pause() -> None:
        time.sleep(_PAUSE)


# -- the sections ----------------------------------------------------------------------------


def _rows_of(db: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = db.get_table(_TABLE).select(order_by="id")
    return rows


def _state_table(rows: list[dict[str, Any]]) -> str:
    fields = ["id", "name", "plan", "credit", "email"]
    return _table(fields, [[row.get(f) for f in fields] for row in rows])


def _show_backups(directory: Path, out: TextIO) -> None:
    from dictdb.storage.catalog import scan

    catalog = scan(directory)
    rows = []
    for n, chain in enumerate(catalog.chains, 1):
        for f in chain.files:
            lsns = f"state at {f.last_lsn}" if f.is_full else f"{f.first_lsn}..{f.last_lsn}"
            rows.append([n, f.kind, lsns, _moment(f.last_op_ts), f.size, f.path.name])
    print(f"Backups in the directory (what `ls` shows): {len(catalog.files)} files", file=out)
    print(_table(["chain", "kind", "LSNs", "last operation", "bytes", "file"], rows), file=out)
    print(
        "  a full snapshot holds the state at its LSN; a delta, the changes from its first "
        "LSN\n  to its last; the log (wal/) holds every operation, one by one.",
        file=out,
    )


def _show_restore(story: _Story, now: Any, out: TextIO) -> tuple[Any, Any]:
    from dictdb import restore
    from dictdb.storage.restore import plan_restore

    directory = story.directory
    at = _iso(story.before_mistake_ts)
    by_time = restore(directory, at=at)
    by_lsn = restore(directory, lsn=story.before_mistake_lsn)
    plan = plan_restore(directory, at=at)
    print("Point-in-time restore: the state just before the mistake", file=out)
    print(
        _table(
            ["call", "reached LSN", "tables"],
            [
                [f'restore(dir, at="{at}")', by_time.lsn, ", ".join(by_time.list_tables())],
                [
                    f"restore(dir, lsn={story.before_mistake_lsn})",
                    by_lsn.lsn,
                    ", ".join(by_lsn.list_tables()),
                ],
            ],
        ),
        file=out,
    )
    print("  the plan (`restore --dry-run`): the files, then the log where it is needed", file=out)
    for f in plan.files:
        print(f"    {f.kind:<5} {f.path.name}", file=out)
    if plan.log_from is not None:
        print(f"    log   operations {plan.log_from}..{plan.log_to} (wal/)", file=out)
    same = by_time.to_dict() == by_lsn.to_dict()
    print(f"  the two restored states are equal: {same}", file=out)
    print(f"\n  {_TABLE} now (LSN {now.lsn}), before the restore:", file=out)
    print(_state_table(_rows_of(now)), file=out)
    print(f"\n  {_TABLE} restored (LSN {by_time.lsn}), after the restore:", file=out)
    print(_state_table(_rows_of(by_time)), file=out)
    return by_time, by_lsn


def _show_events(directory: Path, out: TextIO) -> None:
    from dictdb.audit import events

    rows = []
    for event in events(directory):
        meta = event.meta if isinstance(event.meta, dict) else {}
        what = event.table if event.key is None else f"{event.table}/{event.key!r}"
        rows.append(
            [event.lsn, _moment(event.ts), meta.get("actor"), meta.get("reason"), event.kind, what]
        )
    print("The audited operations, as the log recorded them (what `log` shows)", file=out)
    print(_table(["LSN", "time", "actor", "reason", "kind", "table/key"], rows), file=out)


def _show_history(directory: Path, out: TextIO) -> None:
    from dictdb.audit import history, missing_marker

    absent = missing_marker()
    rows = []
    for event in history(directory, _TABLE, _KEY):
        meta = event.meta if isinstance(event.meta, dict) else {}
        rows.append(
            [
                event.lsn,
                _moment(event.ts),
                event.kind,
                meta.get("actor"),
                meta.get("reason"),
                _changes(event.before, event.after, absent),
            ]
        )
    print(f"History of {_TABLE}/{_KEY}: who changed what, and why", file=out)
    print(_table(["LSN", "time", "kind", "actor", "reason", "change"], rows), file=out)


def _show_diff(story: _Story, out: TextIO) -> None:
    from dictdb.audit import diff, missing_marker

    absent = missing_marker()
    point = _iso(story.before_mistake_ts)
    changes = diff(story.directory, point, "lsn:" + str(_last_lsn(story.directory)))
    rows: list[list[Any]] = []
    for name, d in changes.items():
        if d.created or d.dropped:
            rows.append([name, None, "created" if d.created else "dropped", ""])
        for k, row in d.added.items():
            rows.append([name, k, "added", _changes(None, row, absent)])
        for k in d.removed:
            rows.append([name, k, "removed", ""])
        for c in sorted(d.changed, key=lambda c: repr(c.key)):
            fields = "; ".join(
                f"{f}: {'(absent)' if a is absent else _value(a)} -> "
                f"{'(absent)' if b is absent else _value(b)}"
                for f, (a, b) in c.fields.items()
            )
            rows.append([name, c.key, "changed", fields])
    print("Diff between just before the mistake and now (what the mistake did)", file=out)
    if rows:
        print(_table(["table", "key", "change", "fields: before -> after"], rows), file=out)
    else:
        print("  no changes", file=out)


def _last_lsn(directory: Path) -> int:
    from dictdb.storage.restore import plan_restore

    return plan_restore(directory).lsn


def _show_verify(directory: Path, out: TextIO) -> bool:
    from dictdb.audit import verify

    report = verify(directory)
    windows = ", ".join(f"{lo}..{hi}" for lo, hi in report.restorable) or "nothing"
    rows: list[list[Any]] = [
        ["files checked", report.files_checked],
        ["log segments checked", report.segments_checked],
        ["restorable LSNs", windows],
        ["findings", len(report.findings)],
        ["result", "OK" if report.ok else "FINDINGS"],
    ]
    print("Verification (every file's checksum, the chains, the log)", file=out)
    print(_table(["check", "result"], rows), file=out)
    for finding in report.findings:
        print(f"  FINDING {finding.path}: {finding.reason}", file=out)
    return report.ok


def commands(directory: Path, story_at: str, lsn: int, last_lsn: int) -> list[str]:
    """The commands the demo suggests, each runnable on *directory* as printed."""
    d = shlex.quote(str(directory))
    at = shlex.quote(story_at)
    out_at = shlex.quote(str(directory / "restored-at.json"))
    out_lsn = shlex.quote(str(directory / "restored-lsn.json"))
    return [
        f"python -m dictdb ls {d}",
        f"python -m dictdb verify {d}",
        f"python -m dictdb restore {d} --dry-run --at {at}",
        f"python -m dictdb restore {d} --at {at} --out {out_at}",
        f"python -m dictdb restore {d} --lsn {lsn} --out {out_lsn}",
        f"python -m dictdb history {d} {_TABLE} {_KEY}",
        f"python -m dictdb diff {d} --from {at} --to lsn:{last_lsn}",
        f"python -m dictdb log {d} --from lsn:{lsn} --table {_TABLE}",
    ]


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb import restore

    started = time.monotonic()
    directory, where = _prepare(args.dir)
    print(f"dictdb demo: a durable database, its backups and its audit trail, in {where}", file=out)
    story = _Story(directory)
    story.run()
    now = restore(directory)
    print(
        f"\nWrote {now.lsn} operations with DictDB.open({str(directory)!r}, fsync='always'), "
        "each\ninside `with db.audit(actor=..., reason=...)`; a BackupManager wrote into the "
        "same\ndirectory. The last change (by dave) reset every customer's plan by mistake.\n",
        file=out,
    )
    _show_events(directory, out)
    print(file=out)
    _show_backups(directory, out)
    print(file=out)
    _show_restore(story, now, out)
    print(file=out)
    _show_history(directory, out)
    print(file=out)
    _show_diff(story, out)
    print(file=out)
    ok = _show_verify(directory, out)
    print(
        f"\nThe directory is yours to explore (kept; delete it when done): {directory}\n"
        "Try each command on it:",
        file=out,
    )
    for command in commands(
        directory, _iso(story.before_mistake_ts), story.before_mistake_lsn, now.lsn
    ):
        print(f"  {command}", file=out)
    print(f"\n(demo took {time.monotonic() - started:.1f} s)", file=out)
    return EXIT_OK if ok else 1


def register(add: Add) -> None:
    """Add this module's commands to the parser."""
    p = add(
        "demo",
        "build a durable database with audited changes and backups, then show ls, a "
        "point-in-time restore, a history, a diff and verify on it",
    )
    p.add_argument(
        "--dir",
        help="where to build it: a new or empty directory, or a previous demo's "
        "(replaced); default: a new temporary directory",
    )
    p.set_defaults(run=_cmd_demo)
